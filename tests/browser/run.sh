#!/usr/bin/env bash
# Starts `duplex serve` on a free port with a throwaway config, runs the
# browser tests (Chromium via playwright-core) and the Node client test
# against it, and always stops the server. Exit status: the tests' result.
#
#   tests/browser/run.sh                 # uses build/duplex
#   tests/browser/run.sh demo_chat.test.mjs   # only these test files
#   DUPLEX=/path/to/duplex tests/browser/run.sh
#   CHROMIUM=/usr/bin/chromium (default)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tests/browser"
DUPLEX=${DUPLEX:-$ROOT/build/duplex}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

fail() { echo "tests/browser: $*" >&2; exit 1; }
[ -x "$DUPLEX" ] || fail "no server binary at $DUPLEX (build it, or set DUPLEX)"
[ -x "$CHROMIUM" ] || fail "no Chromium at $CHROMIUM (apt-get install chromium)"
[ -d "$HERE/node_modules/playwright-core" ] || fail "playwright-core missing: (cd tests/browser && npm ci)"
[ -d "$ROOT/tests/interop/node_modules/ws" ] || fail "ws missing: (cd tests/interop && npm ci)"

work=$(mktemp -d "${TMPDIR:-/tmp}/duplex-browser.XXXXXX")
server_pid=""
tests_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$tests_pid" ]; then
    # The test runner's own process group: a browser left behind goes with it.
    if kill -TERM -- "-$tests_pid" 2>/dev/null; then
      sleep 1
      kill -KILL -- "-$tests_pid" 2>/dev/null || true
    fi
  fi
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -CONT "$server_pid" 2>/dev/null || true       # in case a test left it stopped
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "--- server log (last 40 lines) ---" >&2
    tail -n 40 "$work/server.log" >&2
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT INT TERM

api_key="browser-test-key-$(date +%s%N)"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
cat >"$work/duplex.toml" <<EOF
node_name = "browser-test"
stats_interval = "1s"

[server]
host = "127.0.0.1"
port = $port

[auth]
hmac_secret = "browser-test-secret-$(date +%s%N)"

[engine]
type = "memory"

[log]
level = "warn"

[web]
demo_tokens = true
demo_token_ttl = "1h"

[namespaces.chat]
history_size = 200
recovery = true
presence = true
join_leave = true
allow_publish = true
allow_subscribe = true

[namespaces.typing]
allow_publish = true
allow_subscribe = true

[namespaces.stats]
allow_subscribe = true
allow_publish = false
history_size = 300
history_ttl = "10m"

[namespaces.board]
history_size = 10000
history_ttl = "7d"
recovery = true
allow_publish = true
allow_subscribe = true

[namespaces.cursors]
presence = true
join_leave = true
allow_publish = true
allow_subscribe = true

[api]
key = "$api_key"
EOF

"$DUPLEX" serve --config "$work/duplex.toml" >"$work/server.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port"
ready=""
for _ in $(seq 100); do
  kill -0 "$server_pid" 2>/dev/null || fail "duplex serve exited at start"
  if python3 -c "import urllib.request, sys; urllib.request.urlopen('$url/duplex.js', timeout=1)" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || fail "duplex serve did not answer on $url within 10 s"

export DUPLEX_URL="$url" DUPLEX_SERVER_PID="$server_pid" DUPLEX_API_KEY="$api_key"
cd "$HERE"
# Own process group (setsid) so cleanup can end the runner and its browsers
# together; files run one at a time because one of them freezes the server.
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(demo_chat.test.mjs demo_layout.test.mjs demo_typing.test.mjs whiteboard.test.mjs heartbeat.test.mjs
                                 node_client.test.mjs fallback.test.mjs)
setsid --wait node --test --test-concurrency=1 --test-timeout=100000 "${files[@]}" &
tests_pid=$!
deadline=$((SECONDS + 175))
while kill -0 "$tests_pid" 2>/dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "tests/browser: over the 175 s budget, stopping" >&2
    exit 1
  fi
  sleep 0.2
done
wait "$tests_pid"
