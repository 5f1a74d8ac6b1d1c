#!/usr/bin/env python3
"""Writes fuzz/corpus/connection/: seed inputs for fuzz_connection (layout at
the top of fuzz_connection.cpp): a valid handshake followed by frames, with
handler actions chosen to reach the re-entrant paths of issue 13."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "connection")

SLOTS = ["upgrade", "open", "message", "ping", "pong", "drain", "close", "http"]
ACTIONS = {"nothing": 0, "send": 1, "large": 2, "close": 3, "terminate": 4, "throw": 5, "ping": 6}
SMALL, DROP, READS, DEFLATE_DEDICATED, DEFLATE_SHARED, HTTP = 1, 2, 4, 8, 16, 32

UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def upgrade(extra=b""):
    return UPGRADE + extra + b"\r\n"


def frame(first, payload, key=b"\x11\x22\x33\x44"):
    n = len(payload)
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def text(s):
    return frame(0x81, s)


def ping(s=b"p"):
    return frame(0x89, s)


def pong(s=b"p"):
    return frame(0x8A, s)


def close(code=1000, reason=b""):
    return frame(0x88, struct.pack(">H", code) + reason)


def seed(actions, options, steps):
    out = bytearray()
    for slot in SLOTS:
        name = actions.get(slot, "nothing")
        every = name.endswith("*")
        out.append(ACTIONS[name.rstrip("*")] | (0x10 if every else 0))
    out.append(options)
    for step in steps:
        if isinstance(step, bytes):
            out += b"\x00" + struct.pack(">H", len(step)) + step
        else:
            out.append({"run": 1, "read": 2, "shutdown": 3}[step])
    return bytes(out)


SEEDS = {
    "echo_ping_close": seed({"message": "send*"}, READS,
                            [upgrade(), "run", text(b"hello") + ping() + close(), "run", "read"]),
    "terminate_then_ping": seed({"message": "terminate"}, READS,
                                [upgrade(), "run", text(b"bye") + ping(b"after"), "run", "read"]),
    "terminate_in_ping": seed({"ping": "terminate"}, READS, [upgrade(), "run", ping(b"1") + ping(b"2"), "run"]),
    "over_limit_then_ping": seed({"message": "large"}, SMALL,
                                 [upgrade(), "run", text(b"a"), "run", text(b"b") + ping(), "run"]),
    "over_limit_in_open": seed({"open": "large"}, SMALL, [upgrade() + ping(), "run"]),
    "throw_in_message": seed({"message": "throw"}, READS, [upgrade(), "run", text(b"x") + ping(), "run", "read"]),
    "throw_in_open": seed({"open": "throw"}, READS, [upgrade() + text(b"x"), "run", "read"]),
    "close_in_message": seed({"message": "close", "close": "send"}, READS,
                             [upgrade(), "run", text(b"x") + text(b"y") + close(), "run", "read"]),
    "reject_upgrade": seed({"upgrade": "close"}, READS, [upgrade() + text(b"x"), "run", "read"]),
    "terminate_in_upgrade": seed({"upgrade": "terminate"}, READS, [upgrade() + ping(), "run", "read"]),
    "pong_send": seed({"pong": "send*"}, READS, [upgrade(), "run", pong() + pong(b"2") + ping(), "run", "read"]),
    "drain_terminate": seed({"open": "large", "drain": "terminate"}, DROP | READS,
                            [upgrade(), "run", "read", "run", "read", "run", ping(), "read", "run"]),
    "deflate_offer": seed({"message": "send*"}, READS | DEFLATE_DEDICATED,
                          [upgrade(b"Sec-WebSocket-Extensions: permessage-deflate\r\n"), "run",
                           text(b"compress me"), "run", "read"]),
    "deflate_shared": seed({"message": "large"}, READS | DEFLATE_SHARED,
                           [upgrade(b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
                            "run", text(b"x") + ping(), "run", "read"]),
    "peer_shutdown": seed({"message": "send*", "close": "send"}, READS,
                          [upgrade(), "run", text(b"x"), "shutdown", "run", "read"]),
    "http_pipelined": seed({"http": "send*"}, READS | HTTP,
                           [b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", "run", "read", "run", "read"]),
    "http_stream": seed({"http": "close"}, READS | HTTP, [b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n", "run", "read"]),
    "http_large_unread": seed({"http": "large*"}, SMALL | HTTP,
                              [b"GET /l HTTP/1.1\r\nHost: x\r\n\r\n" * 4, "run", "run"]),
    "http_post_terminate": seed({"http": "terminate"}, READS | HTTP,
                                [b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
                                 "run", "read"]),
}

if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")
