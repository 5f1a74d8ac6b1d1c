#!/usr/bin/python3
"""Run the Autobahn testsuite's `wstest` with a few fixes applied at run time.

usage: autobahn_launcher.py [--free-port] [--] WSTEST-ARGS...

The testsuite itself (https://github.com/ricardo-valero/autobahn-testsuite,
the Python 3 port) is not part of this repository and is not modified: it is
imported from AUTOBAHN_DIR (or PYTHONPATH) and patched in memory:

  * JSON reports: case results can hold bytes (e.g. the close reasons of cases
    7.3.x), which json.dumps rejects; the exception is raised while the reports
    are written and leaves wstest hanging. Bytes are written as text instead
    (UTF-8, invalid bytes as \\xNN escapes).
  * A report-writing error of any other kind stops wstest with exit status 3
    instead of hanging.
  * Listening sockets bind to 127.0.0.1 unless an interface is given.
  * --free-port (fuzzingserver): listen on a port picked by the kernel instead
    of the one in the spec's "url", and print "listening on ws://127.0.0.1:PORT"
    once listening.

Run with /usr/bin/python3 (Debian's python3-twisted, -autobahn, ... are needed).
"""

import json
import os
import sys
import traceback


def patch_json():
    original_default = json.JSONEncoder.default

    def default(self, o):
        if isinstance(o, (bytes, bytearray, memoryview)):
            return bytes(o).decode("utf-8", "backslashreplace")
        return original_default(self, o)

    # Instances look the method up on the class, including the module-level
    # default encoder and the pure-Python encoder used with indent=...
    json.JSONEncoder.default = default


def patch_reactor(reactor):
    listen_tcp = reactor.listenTCP
    listen_ssl = reactor.listenSSL

    def listenTCP(port, factory, backlog=50, interface=""):
        return listen_tcp(port, factory, backlog, interface or "127.0.0.1")

    def listenSSL(port, factory, contextFactory, backlog=50, interface=""):
        return listen_ssl(port, factory, contextFactory, backlog, interface or "127.0.0.1")

    reactor.listenTCP = listenTCP
    reactor.listenSSL = listenSSL


def patch_fuzzing(fuzzing, reactor, free_port):
    failed = {"reports": False}
    create_reports = fuzzing.FuzzingFactory.createReports

    def createReports(self, *args, **kwargs):
        try:
            return create_reports(self, *args, **kwargs)
        except Exception:  # noqa: BLE001 - report and stop instead of hanging
            traceback.print_exc()
            print("autobahn_launcher: writing the reports failed; stopping", file=sys.stderr, flush=True)
            failed["reports"] = True
            if reactor.running:
                reactor.callLater(0, reactor.stop)
            raise

    fuzzing.FuzzingFactory.createReports = createReports

    listen_ws = fuzzing.listenWS

    def listenWS(factory, contextFactory=None, backlog=50, interface=""):
        host = interface or "127.0.0.1"
        if free_port:
            factory.port = 0
        listener = listen_ws(factory, contextFactory, backlog, host)
        if free_port:
            factory.port = listener.getHost().port
            scheme = "wss" if factory.isSecure else "ws"
            print(f"listening on {scheme}://{host}:{factory.port}", flush=True)
        return listener

    fuzzing.listenWS = listenWS
    return failed


def main():
    args = sys.argv[1:]
    free_port = False
    while args and args[0] in ("--free-port", "--"):
        if args.pop(0) == "--":
            break
        free_port = True

    autobahn_dir = os.environ.get("AUTOBAHN_DIR")
    if autobahn_dir:
        sys.path.insert(0, os.path.join(autobahn_dir, "autobahntestsuite"))

    try:
        sys.stdout.reconfigure(line_buffering=True)
    except AttributeError:
        pass

    patch_json()
    # wstest installs the reactor on import (autobahntestsuite.choosereactor).
    from autobahntestsuite import wstest, fuzzing
    from twisted.internet import reactor

    patch_reactor(reactor)
    failed = patch_fuzzing(fuzzing, reactor, free_port)

    sys.argv = ["wstest"] + args
    wstest.run()
    if failed["reports"]:
        sys.exit(3)


if __name__ == "__main__":
    main()
