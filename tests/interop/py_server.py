#!/usr/bin/python3
"""Echo server built on Python websockets (Debian's 10.x), used as a peer for
duplex client interop tests.

Usage: py_server.py [--host 127.0.0.1] [--port 0] [--tls-cert F --tls-key F] [--deflate]
                    [--no-context-takeover] [--window-bits N]
                    [--server-window-bits N] [--client-window-bits N]

The deflate options shape how permessage-deflate is accepted (they imply
--deflate): --no-context-takeover answers server_ and client_no_context_takeover,
--server-window-bits / --client-window-bits answer server_ / client_max_window_bits=N
(the client must have advertised client_max_window_bits), --window-bits N sets
both. Python's zlib cannot compress with an 8-bit window (compressobj wbits=-8
raises "Invalid initialization option"), so --server-window-bits 8 fails on the
first message; --client-window-bits 8 works (decompressing is fine).

Prints exactly one line, "listening on ws://HOST:PORT" (or wss://), once ready.
Echoes text as text and binary as binary. The text message "close-me 4002"
makes it close the connection with code 4002 and reason "server bye".
If the client offers subprotocols, the first one offered is selected.
Stops on SIGTERM/SIGINT.

Run with /usr/bin/python3 (Debian's interpreter, which has python3-websockets).
"""

import argparse
import asyncio
import signal
import ssl
import sys

import websockets
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

MAX_SIZE = 64 * 1024 * 1024  # comfortably above the 16 MiB test messages


async def echo(ws, path=None):  # path: websockets < 10.1 passes it
    try:
        async for msg in ws:
            if msg == "close-me 4002":
                await ws.close(4002, "server bye")
                return
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass


def first_offered(client_subprotocols, server_subprotocols):
    return client_subprotocols[0] if client_subprotocols else None


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--deflate", action="store_true", help="enable permessage-deflate")
    ap.add_argument("--no-context-takeover", action="store_true",
                    help="require server_no_context_takeover and client_no_context_takeover")
    ap.add_argument("--window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="same as --server-window-bits N --client-window-bits N")
    ap.add_argument("--server-window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="answer server_max_window_bits=N")
    ap.add_argument("--client-window-bits", type=int, choices=range(8, 16), metavar="N",
                    help="answer client_max_window_bits=N")
    args = ap.parse_args()
    if args.window_bits:
        args.server_window_bits = args.server_window_bits or args.window_bits
        args.client_window_bits = args.client_window_bits or args.window_bits
    factory = None
    if args.no_context_takeover or args.server_window_bits or args.client_window_bits:
        args.deflate = True
        factory = ServerPerMessageDeflateFactory(
            server_no_context_takeover=args.no_context_takeover,
            client_no_context_takeover=args.no_context_takeover,
            server_max_window_bits=args.server_window_bits,
            client_max_window_bits=args.client_window_bits,
            compress_settings={"memLevel": 5},
        )

    ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            ap.error("--tls-cert and --tls-key go together")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))

    async with websockets.serve(
        echo,
        args.host,
        args.port,
        ssl=ctx,
        compression="deflate" if args.deflate and factory is None else None,
        extensions=[factory] if factory is not None else None,
        max_size=MAX_SIZE,
        max_queue=4,
        # the selector is only consulted when this list is non-empty
        subprotocols=["duplex-interop"],
        select_subprotocol=first_offered,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        scheme = "wss" if ctx else "ws"
        print(f"listening on {scheme}://{args.host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.exit(0)
