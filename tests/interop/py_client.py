#!/usr/bin/python3
"""Interop client built on Python websockets (Debian's 10.x): runs a fixed set
of checks against a WebSocket echo server.

Usage: py_client.py URL [--ca-file FILE] [--deflate] [--quick]
           [--no-context-takeover] [--window-bits N]
           [--server-window-bits N] [--client-window-bits N]

--quick skips the 16 MiB message. The deflate options shape the
permessage-deflate offer (they imply --deflate): --no-context-takeover offers
server_ and client_no_context_takeover, --server-window-bits /
--client-window-bits offer server_ / client_max_window_bits=N, --window-bits N
sets both. Python's zlib cannot compress with an 8-bit window (compressobj
wbits=-8 raises "Invalid initialization option"), so --client-window-bits 8
fails here by design; --server-window-bits 8 works (decompressing is fine).

Prints one line per check ("ok - ..."); on the first failure prints
"FAIL - ..." and exits 1. Exit 0 when every check passed.

Run with /usr/bin/python3 (Debian's interpreter, which has python3-websockets).
"""

import argparse
import asyncio
import os
import ssl
import sys
import time

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import OP_CONT, OP_TEXT

MAX_SIZE = 64 * 1024 * 1024
STEP_TIMEOUT = 15.0


class CheckFailed(Exception):
    pass


current = "start"  # the check in progress, for unexpected errors


def begin(name):
    global current
    current = name


def ok(name):
    print(f"ok - {name}", flush=True)


def describe(value):
    if isinstance(value, str):
        kind, n = "text", len(value.encode("utf-8"))
    elif isinstance(value, (bytes, bytearray)):
        kind, n = "binary", len(value)
    else:
        return repr(value)
    if n <= 40:
        return f"{kind} {value!r}"
    return f"{kind} of {n} bytes"


async def recv(ws, what):
    try:
        return await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed(f"{what}: no echo within {STEP_TIMEOUT:.0f} s")
    except websockets.ConnectionClosed as e:
        raise CheckFailed(f"{what}: connection closed while waiting for the echo "
                          f"(code {e.code}, reason {e.reason!r})")


def expect_echo(name, sent, got):
    if type(got) is not type(sent) or got != sent:
        if type(got) is not type(sent):
            detail = f"sent {describe(sent)}, got {describe(got)} (wrong message type)"
        else:
            detail = f"sent {describe(sent)}, got {describe(got)}"
        raise CheckFailed(f"{name}: {detail}")
    ok(name)


async def roundtrip(ws, name, payload):
    begin(name)
    try:
        await ws.send(payload)
    except websockets.ConnectionClosed as e:
        raise CheckFailed(f"{name}: connection closed while sending "
                          f"(code {e.code}, reason {e.reason!r})")
    expect_echo(name, payload, await recv(ws, name))


def deflate_factory(args):
    """A custom offer, or None for websockets' default deflate offer."""
    if not (args.no_context_takeover or args.server_window_bits or args.client_window_bits):
        return None
    return ClientPerMessageDeflateFactory(
        server_no_context_takeover=args.no_context_takeover,
        client_no_context_takeover=args.no_context_takeover,
        server_max_window_bits=args.server_window_bits,
        client_max_window_bits=args.client_window_bits or True,
        compress_settings={"memLevel": 5},
    )


async def run(url, ca_file, deflate, quick=False, factory=None):
    ctx = None
    if url.startswith("wss://"):
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()

    try:
        ws = await websockets.connect(
            url,
            ssl=ctx,
            compression="deflate" if deflate and factory is None else None,
            extensions=[factory] if factory is not None else None,
            max_size=MAX_SIZE,
            max_queue=4,
            ping_interval=None,
            open_timeout=STEP_TIMEOUT,
            close_timeout=STEP_TIMEOUT,
        )
    except Exception as e:  # noqa: BLE001 - any failure here is a failed check
        raise CheckFailed(f"connect to {url}: {type(e).__name__}: {e}")
    begin("extension negotiation")
    ok(f"connected to {url}")

    try:
        names = [getattr(ext, "name", type(ext).__name__) for ext in ws.extensions]
        if deflate and "permessage-deflate" not in names:
            raise CheckFailed(f"permessage-deflate was offered but not negotiated (extensions: {names})")
        if not deflate and names:
            raise CheckFailed(f"no extension was offered but the server negotiated {names}")
        ok("permessage-deflate negotiated" if deflate else "no extensions negotiated")

        await roundtrip(ws, "text message", "hello, wörld ✓ 🌍")
        await roundtrip(ws, "binary message", bytes(range(256)))
        await roundtrip(ws, "empty text message", "")
        await roundtrip(ws, "empty binary message", b"")
        for n in (125, 126, 65535, 65536):
            await roundtrip(ws, f"binary message of {n} bytes", os.urandom(n))
        if not quick:
            await roundtrip(ws, "binary message of 16 MiB", os.urandom(16 * 1024 * 1024))

        # Fragmented text through the public API: one frame per item.
        begin("fragmented text message")
        parts = ["fragmented ", "text ", "message ", "€ ✓ 🌍"]
        await ws.send(iter(parts))
        expect_echo("fragmented text message (4 frames)", "".join(parts),
                    await recv(ws, "fragmented text message"))

        # Fragmented binary through the public API.
        begin("fragmented binary message")
        bparts = [os.urandom(1000), b"", os.urandom(3000)]
        await ws.send(iter(bparts))
        expect_echo("fragmented binary message (3 frames, one empty)", b"".join(bparts),
                    await recv(ws, "fragmented binary message"))

        # Fragmented text whose multi-byte UTF-8 sequences are split across
        # frame boundaries. The public API cannot do that (it encodes each str
        # fragment on its own), so write the frames directly.
        begin("fragmented text with UTF-8 split across frames")
        text = "split: é € 🌍 ✓ done"
        raw = text.encode("utf-8")
        i_e = raw.index("é".encode()) + 1          # inside the 2-byte sequence
        i_euro = raw.index("€".encode()) + 2       # inside the 3-byte sequence
        i_globe = raw.index("🌍".encode()) + 1     # inside the 4-byte sequence
        chunks = [raw[:i_e], raw[i_e:i_euro], raw[i_euro:i_globe], raw[i_globe:]]
        await ws.write_frame(False, OP_TEXT, chunks[0])
        for c in chunks[1:-1]:
            await ws.write_frame(False, OP_CONT, c)
        await ws.write_frame(True, OP_CONT, chunks[-1])
        expect_echo("fragmented text with UTF-8 split across frames", text,
                    await recv(ws, "fragmented text with split UTF-8"))

        # Ping with a payload; websockets matches the pong by its payload.
        begin("ping")
        payload = b"duplex-ping-\x00\xff"
        pong = await ws.ping(payload)
        try:
            await asyncio.wait_for(pong, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise CheckFailed(f"ping: no pong with payload {payload!r} within {STEP_TIMEOUT:.0f} s")
        except websockets.ConnectionClosed as e:
            raise CheckFailed(f"ping: connection closed while waiting for the pong (code {e.code})")
        ok("ping with payload answered by a matching pong")
    except BaseException:
        ws.transport.abort()
        raise

    # Client-initiated close; an echo server replies with the same code.
    begin("close")
    await ws.close(4001, "bye")
    if ws.close_code != 4001:
        raise CheckFailed(f"close: sent 4001 'bye', peer answered code {ws.close_code} "
                          f"reason {ws.close_reason!r}")
    ok(f"close 4001 echoed by the server (reason {ws.close_reason!r})")


def main():
    ap = argparse.ArgumentParser(description="websockets interop client for duplex")
    ap.add_argument("url")
    ap.add_argument("--ca-file")
    ap.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    ap.add_argument("--quick", action="store_true", help="skip the 16 MiB message")
    ap.add_argument("--no-context-takeover", action="store_true",
                    help="offer server_no_context_takeover and client_no_context_takeover")
    ap.add_argument("--window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="same as --server-window-bits N --client-window-bits N")
    ap.add_argument("--server-window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="offer server_max_window_bits=N")
    ap.add_argument("--client-window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="offer client_max_window_bits=N")
    args = ap.parse_args()
    if args.window_bits:
        args.server_window_bits = args.server_window_bits or args.window_bits
        args.client_window_bits = args.client_window_bits or args.window_bits
    factory = deflate_factory(args)
    if factory is not None:
        args.deflate = True

    started = time.monotonic()
    try:
        asyncio.run(run(args.url, args.ca_file, args.deflate, args.quick, factory))
    except CheckFailed as e:
        print(f"FAIL - {e}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL - {current}: unexpected {type(e).__name__}: {e}", flush=True)
        return 1
    print(f"py_client: all checks passed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
