# Shared by tests/package/*.sh: start `duplex serve` on a free loopback port
# and stop it.

# start_serve DIR BINARY ARGS...: runs BINARY serve ARGS... --listen
# 127.0.0.1:0 with stdout in DIR/out and the log in DIR/log; sets SERVE_PID
# and SERVE_PORT (from the first stdout line, "duplex serve: http://HOST:PORT/ ...").
start_serve() {
  local dir=$1 binary=$2
  shift 2
  : > "$dir/out"
  "$binary" serve "$@" --listen 127.0.0.1:0 > "$dir/out" 2> "$dir/log" &
  SERVE_PID=$!
  SERVE_PORT=
  for _ in $(seq 100); do
    SERVE_PORT=$(sed -n 's|^duplex serve: http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$dir/out")
    [ -n "$SERVE_PORT" ] && return 0
    kill -0 "$SERVE_PID" 2> /dev/null || break
    sleep 0.1
  done
  echo "duplex serve did not start ($binary serve $*):"
  cat "$dir/out" "$dir/log"
  stop_serve
  return 1
}

# stop_serve: SIGTERM (graceful), and the exit status must be 0.
stop_serve() {
  [ -n "${SERVE_PID:-}" ] || return 0
  local rc=0
  kill -TERM "$SERVE_PID" 2> /dev/null || true
  wait "$SERVE_PID" || rc=$?
  SERVE_PID=
  if [ "$rc" -ne 0 ]; then
    echo "duplex serve exited $rc after SIGTERM"
    return 1
  fi
}

# expect_log DIR TEXT: the log of the running server holds TEXT.
expect_log() {
  if ! grep -qF -- "$2" "$1/log"; then
    echo "expected in the log: $2"
    cat "$1/log"
    return 1
  fi
}

# served PATH: the body of GET http://127.0.0.1:$SERVE_PORT/PATH (fails on a non-2xx).
served() {
  curl -sS --fail --max-time 5 "http://127.0.0.1:$SERVE_PORT$1"
}
