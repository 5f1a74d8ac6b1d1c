#!/usr/bin/env bash
# Interop tests: duplex against Python websockets and Node ws, both directions.
#
# usage: tests/interop/run.sh BUILD_DIR
#
# Needs BUILD_DIR/duplex and BUILD_DIR/tests/interop_client (a missing binary
# is a failure, not a skip), openssl, /usr/bin/python3 with python3-websockets
# (override with PYTHON=...), node with ws in tests/interop/node_modules
# (override with NODE=...). All traffic stays on 127.0.0.1.
#
# Section 4 is an RFC 7692 parameter matrix (context takeover, window bits)
# over plain ws:// with the peers' --quick mode.
#
# Prints one PASS/FAIL line per check and finally "interop: N passed, M failed";
# exits non-zero if anything failed. KEEP_TMP=1 keeps the scratch directory
# (certificates, logs).
set -u

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
if [ ! -d "$1" ]; then
  echo "$0: build directory '$1' does not exist" >&2
  exit 2
fi

HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$1" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
NODE=${NODE:-node}
DUPLEX="$BUILD/duplex"
INTEROP_CLIENT="$BUILD/tests/interop_client"
STEP_TIMEOUT=60      # per client run
SERVER_LIFETIME=600  # hard cap for any server we start
STARTUP_WAIT=10      # seconds to wait for the "listening on" line

TMP=$(mktemp -d "${TMPDIR:-/tmp}/duplex-interop.XXXXXX")
PIDS=()
passed=0
failed=0

cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null
  done
  for p in "${PIDS[@]}"; do
    wait "$p" 2>/dev/null
  done
  PIDS=()
  if [ "${KEEP_TMP:-0}" = 1 ]; then
    echo "interop: scratch files kept in $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'echo "interop: interrupted" >&2; exit 130' INT TERM HUP

forget_pid() {
  local p keep=()
  for p in "${PIDS[@]}"; do
    [ "$p" = "$1" ] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

pass() {
  passed=$((passed + 1))
  echo "PASS $1"
}

# fail NAME DETAIL [LOGFILE...]
fail() {
  local name=$1 detail=$2 f
  shift 2
  failed=$((failed + 1))
  echo "FAIL $name: $detail"
  for f in "$@"; do
    if [ -s "$f" ]; then
      echo "  --- $(basename "$f") (last 40 lines) ---"
      tail -n 40 "$f" | sed 's/^/  | /'
    fi
  done
}

# ---- throwaway CA and server certificate for 127.0.0.1 / localhost ---------
make_certs() {
  local d=$TMP/pki
  mkdir -p "$d"
  cat >"$d/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
      -keyout "$d/ca.key" -out "$d/ca.pem" -subj "/CN=duplex interop test CA" \
      -addext "basicConstraints = critical, CA:TRUE" \
      -addext "keyUsage = critical, keyCertSign, cRLSign" &&
  openssl req -new -newkey rsa:2048 -nodes -sha256 \
      -keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=localhost" &&
  openssl x509 -req -sha256 -days 2 -in "$d/server.csr" \
      -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -extfile "$d/server.ext" -out "$d/server.pem"
}
if ! make_certs >"$TMP/openssl.log" 2>&1; then
  fail "create test CA and server certificate" "openssl failed" "$TMP/openssl.log"
  echo "interop: $passed passed, $failed failed"
  exit 1
fi
CA="$TMP/pki/ca.pem"
CERT="$TMP/pki/server.pem"
KEY="$TMP/pki/server.key"

# ---- servers -----------------------------------------------------------------
# start_server LABEL SCHEME CMD... : runs CMD in the background and waits for its
# "listening on SCHEME://HOST:PORT" line. Sets SERVER_PID, SERVER_URL,
# SERVER_OUT, SERVER_ERR; returns non-zero (with SERVER_PROBLEM set) on failure.
start_server() {
  local label=$1 scheme=$2 line="" i
  shift 2
  SERVER_OUT="$TMP/$label.server.out"
  SERVER_ERR="$TMP/$label.server.err"
  SERVER_URL=""
  SERVER_PROBLEM=""
  timeout -k 5 "$SERVER_LIFETIME" "$@" >"$SERVER_OUT" 2>"$SERVER_ERR" </dev/null &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  for ((i = 0; i < STARTUP_WAIT * 10; i++)); do
    line=$(grep -m1 '^listening on ' "$SERVER_OUT" 2>/dev/null)
    [ -n "$line" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$line" ]; then
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      SERVER_PROBLEM="no 'listening on' line within ${STARTUP_WAIT} s"
    else
      wait "$SERVER_PID" 2>/dev/null
      SERVER_PROBLEM="server exited with status $? before printing 'listening on'"
    fi
    stop_server
    return 1
  fi
  SERVER_URL=${line#listening on }
  SERVER_URL=${SERVER_URL%$'\r'}
  case "$SERVER_URL" in
    "$scheme"://*:[0-9]*) ;;
    *)
      SERVER_PROBLEM="expected a $scheme:// URL, got '$line'"
      stop_server
      return 1
      ;;
  esac
  return 0
}

# stop_server: SIGTERM, wait up to 10 s (then SIGKILL). Sets STOP_STATUS to the
# exit status, or to "hung" if it had to be killed.
stop_server() {
  local i
  kill -TERM "$SERVER_PID" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    forget_pid "$SERVER_PID"
    STOP_STATUS=hung
    return
  fi
  wait "$SERVER_PID" 2>/dev/null
  STOP_STATUS=$?
  forget_pid "$SERVER_PID"
}

# wait_fg PID: wait for a background step (registered for cleanup meanwhile);
# sets WAIT_STATUS.
wait_fg() {
  PIDS+=("$1")
  wait "$1"
  WAIT_STATUS=$?
  forget_pid "$1"
}

server_alive() {
  kill -0 "$SERVER_PID" 2>/dev/null
}

# run_client NAME LOGFILE CMD... : one PASS/FAIL line for a client run.
run_client() {
  local name=$1 log=$2 rc
  shift 2
  # in the background + wait, so that a signal to this script is handled at once
  timeout -k 5 "$STEP_TIMEOUT" "$@" >"$log" 2>&1 </dev/null &
  wait_fg $!
  rc=$WAIT_STATUS
  if [ $rc -eq 0 ] && server_alive; then
    pass "$name"
  elif [ $rc -eq 0 ]; then
    fail "$name" "client passed but the server exited" "$log" "$SERVER_ERR"
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    fail "$name" "timed out after ${STEP_TIMEOUT} s" "$log" "$SERVER_ERR"
  else
    fail "$name" "exit status $rc" "$log" "$SERVER_ERR"
  fi
}

slug() {
  echo "$*" | tr -c 'A-Za-z0-9\n' '_'
}

echo "interop: build dir $BUILD"

# ---- 1. our server (duplex echo) x {py_client, node_client} -----------------
for tls in 0 1; do
  for deflate in 0 1; do
    scheme=ws; srv_args=(echo --listen 127.0.0.1:0 --max-send-buffer 17MiB); cli_args=()
    if [ $tls = 1 ]; then
      scheme=wss
      srv_args+=(--tls-cert "$CERT" --tls-key "$KEY")
      cli_args+=(--ca-file "$CA")
    fi
    if [ $deflate = 1 ]; then
      srv_args+=(--deflate)
      cli_args+=(--deflate)
    fi
    mode=$scheme$([ $deflate = 1 ] && echo ",deflate")
    clients=(py_client node_client)
    if [ ! -x "$DUPLEX" ]; then
      for c in "${clients[@]}"; do
        fail "duplex echo [$mode] <- $c" "$DUPLEX not found or not executable"
      done
      fail "duplex echo [$mode] stops on SIGTERM" "$DUPLEX not found or not executable"
      continue
    fi
    label=$(slug "duplex_echo_$mode")
    if ! start_server "$label" "$scheme" "$DUPLEX" "${srv_args[@]}"; then
      for c in "${clients[@]}"; do
        fail "duplex echo [$mode] <- $c" "$SERVER_PROBLEM" "$SERVER_OUT" "$SERVER_ERR"
      done
      fail "duplex echo [$mode] stops on SIGTERM" "server did not start"
      continue
    fi
    run_client "duplex echo [$mode] <- py_client" "$TMP/$label.py_client.log" \
      "$PYTHON" "$HERE/py_client.py" "$SERVER_URL" "${cli_args[@]}"
    run_client "duplex echo [$mode] <- node_client" "$TMP/$label.node_client.log" \
      "$NODE" "$HERE/node_client.js" "$SERVER_URL" "${cli_args[@]}"
    if ! server_alive; then
      wait "$SERVER_PID" 2>/dev/null
      st=$?
      forget_pid "$SERVER_PID"
      fail "duplex echo [$mode] stops on SIGTERM" "server had already exited (status $st)" "$SERVER_ERR"
      continue
    fi
    stop_server
    st=$STOP_STATUS
    case "$st" in
      0 | 143) pass "duplex echo [$mode] stops on SIGTERM" ;;
      hung) fail "duplex echo [$mode] stops on SIGTERM" "still running 10 s after SIGTERM (killed)" "$SERVER_ERR" ;;
      *) fail "duplex echo [$mode] stops on SIGTERM" "exit status $st" "$SERVER_ERR" ;;
    esac
  done
done

# ---- 2. our client (interop_client) x {py_server, node_server} --------------
for peer in py_server node_server; do
  for tls in 0 1; do
    for deflate in 0 1; do
      scheme=ws; srv_args=(--port 0); cli_args=()
      if [ $tls = 1 ]; then
        scheme=wss
        srv_args+=(--tls-cert "$CERT" --tls-key "$KEY")
        cli_args+=(--ca-file "$CA")
      fi
      if [ $deflate = 1 ]; then
        srv_args+=(--deflate)
        cli_args+=(--deflate)
      fi
      mode=$scheme$([ $deflate = 1 ] && echo ",deflate")
      name="interop_client [$mode] -> $peer"
      if [ ! -x "$INTEROP_CLIENT" ]; then
        fail "$name" "$INTEROP_CLIENT not found or not executable"
        continue
      fi
      label=$(slug "${peer}_$mode")
      if [ $peer = py_server ]; then
        cmd=("$PYTHON" "$HERE/py_server.py")
      else
        cmd=("$NODE" "$HERE/node_server.js")
      fi
      if ! start_server "$label" "$scheme" "${cmd[@]}" "${srv_args[@]}"; then
        fail "$name" "peer server: $SERVER_PROBLEM" "$SERVER_OUT" "$SERVER_ERR"
        continue
      fi
      run_client "$name" "$TMP/$label.interop_client.log" \
        "$INTEROP_CLIENT" "$SERVER_URL" "${cli_args[@]}"
      stop_server
    done
  done
done

# ---- 3. duplex connect smoke tests against py_server ------------------------
connect_steps=("duplex connect -> py_server: two lines echoed, exit 0"
               "duplex connect -> py_server: server close 4002 reported")
if [ ! -x "$DUPLEX" ]; then
  for s in "${connect_steps[@]}"; do
    fail "$s" "$DUPLEX not found or not executable"
  done
elif ! start_server py_server_connect ws "$PYTHON" "$HERE/py_server.py" --port 0; then
  for s in "${connect_steps[@]}"; do
    fail "$s" "peer server: $SERVER_PROBLEM" "$SERVER_OUT" "$SERVER_ERR"
  done
else
  # (a) two stdin lines come back as two stdout lines; EOF -> close 1000 -> exit 0.
  # stdin is held open until both echoes are on stdout (at most 10 s): the
  # websockets server stops echoing once it has seen the client's close frame,
  # so an immediate EOF would race the echoes.
  name=${connect_steps[0]}
  out="$TMP/connect1.out"; err="$TMP/connect1.err"
  printf 'hello duplex\nsecond line: wörld ✓\n' >"$TMP/connect1.expected"
  : >"$out"
  # shellcheck disable=SC2094 # the loop polls what duplex writes, on purpose
  {
    cat "$TMP/connect1.expected"
    for ((i = 0; i < 100; i++)); do
      [ "$(wc -l <"$out")" -ge 2 ] && break
      sleep 0.1
    done
  } | timeout -k 5 "$STEP_TIMEOUT" "$DUPLEX" connect "$SERVER_URL" >"$out" 2>"$err" &
  wait_fg $!
  rc=$WAIT_STATUS
  if [ $rc -ne 0 ]; then
    fail "$name" "exit status $rc" "$out" "$err"
  elif ! cmp -s "$out" "$TMP/connect1.expected"; then
    diff "$TMP/connect1.expected" "$out" >"$TMP/connect1.diff" 2>&1
    fail "$name" "stdout differs from the lines sent (diff expected actual)" "$TMP/connect1.diff" "$err"
  elif ! grep -Eq '^closed: 1000( |$)' "$err"; then
    fail "$name" "no 'closed: 1000' line on stderr" "$err"
  else
    pass "$name"
  fi

  # (b) the server closes with 4002 "server bye"; stdin stays open a while so
  # the client cannot race it with its own close 1000.
  name=${connect_steps[1]}
  out="$TMP/connect2.out"; err="$TMP/connect2.err"
  { printf 'close-me 4002\n'; sleep 3; } |
    timeout -k 5 "$STEP_TIMEOUT" "$DUPLEX" connect "$SERVER_URL" >"$out" 2>"$err" &
  wait_fg $!
  rc=$WAIT_STATUS
  if [ $rc -eq 124 ] || [ $rc -ge 128 ]; then
    fail "$name" "exit status $rc (timeout or crash)" "$out" "$err"
  elif ! grep -Eq '^closed: 4002 server bye$' "$err"; then
    fail "$name" "expected 'closed: 4002 server bye' on stderr" "$out" "$err"
  else
    pass "$name"
  fi
  stop_server
fi

# ---- 4. RFC 7692 parameter matrix (plain ws://, --quick) --------------------
# Context takeover on/off and window bits 8, 9, 12, 15, both directions.
# "--window-bits N" on a peer means server_max_window_bits=N and
# client_max_window_bits=N (offered by a client, answered by a server).
#
# Window bits 8: Python's zlib refuses to compress with an 8-bit raw window
# (zlib.compressobj(wbits=-8) -> "Invalid initialization option"), so Python
# websockets only works where Python *inflates* with 8 bits: py_client offers
# server_max_window_bits=8 only (not client_max_window_bits=8), and py_server
# answers client_max_window_bits=8 only (and our client does not offer
# server_max_window_bits=8, which py_server would adopt for its compressor).
# Node's zlib quietly uses a 9-bit window when asked for 8, which duplex
# tolerates (it never inflates with fewer than 9 bits), so Node gets 8 both ways.
MATRIX_BITS=(8 9 12 15)

# matrix_peer_bits PEER N: the window-bit options for a peer script.
matrix_peer_bits() {
  case "$1,$2" in
    py_client,8) echo "--server-window-bits 8" ;;
    py_server,8) echo "--client-window-bits 8" ;;
    *) echo "--window-bits $2" ;;
  esac
}
# matrix_our_client_bits PEER N: the window-bit options for interop_client.
matrix_our_client_bits() {
  case "$1,$2" in
    py_server,8) echo "--client-window-bits 8" ;;
    *) echo "--server-window-bits $2 --client-window-bits $2" ;;
  esac
}

# 4a. our server (duplex echo --deflate=MODE --deflate-window-bits N) x clients
for mode in dedicated shared; do
  for bits in "${MATRIX_BITS[@]}"; do
    for nct in 0 1; do
      tag="ws,deflate=$mode,bits=$bits$([ $nct = 1 ] && echo ",no-context-takeover")"
      clients=(py_client node_client)
      if [ ! -x "$DUPLEX" ]; then
        for c in "${clients[@]}"; do
          fail "matrix: duplex echo [$tag] <- $c" "$DUPLEX not found or not executable"
        done
        continue
      fi
      label=$(slug "matrix_duplex_echo_$tag")
      if ! start_server "$label" ws "$DUPLEX" echo --listen 127.0.0.1:0 \
          --deflate="$mode" --deflate-window-bits "$bits"; then
        for c in "${clients[@]}"; do
          fail "matrix: duplex echo [$tag] <- $c" "$SERVER_PROBLEM" "$SERVER_OUT" "$SERVER_ERR"
        done
        continue
      fi
      for c in "${clients[@]}"; do
        # shellcheck disable=SC2207 # word splitting of the option list is intended
        cli_args=(--quick $(matrix_peer_bits "$c" "$bits"))
        [ $nct = 1 ] && cli_args+=(--no-context-takeover)
        if [ "$c" = py_client ]; then
          cmd=("$PYTHON" "$HERE/py_client.py")
        else
          cmd=("$NODE" "$HERE/node_client.js")
        fi
        run_client "matrix: duplex echo [$tag] <- $c ${cli_args[*]}" "$TMP/$label.$c.log" \
          "${cmd[@]}" "$SERVER_URL" "${cli_args[@]}"
      done
      stop_server
    done
  done
done

# 4b. our client (interop_client --deflate --quick ...) x peer servers
for peer in py_server node_server; do
  for bits in "${MATRIX_BITS[@]}"; do
    for nct in 0 1; do
      # shellcheck disable=SC2207 # word splitting of the option lists is intended
      srv_args=(--port 0 $(matrix_peer_bits "$peer" "$bits"))
      # shellcheck disable=SC2207
      cli_args=(--deflate --quick $(matrix_our_client_bits "$peer" "$bits"))
      if [ $nct = 1 ]; then
        srv_args+=(--no-context-takeover)
        cli_args+=(--no-context-takeover)
      fi
      name="matrix: interop_client ${cli_args[*]} -> $peer ${srv_args[*]:2}"
      if [ ! -x "$INTEROP_CLIENT" ]; then
        fail "$name" "$INTEROP_CLIENT not found or not executable"
        continue
      fi
      label=$(slug "matrix_${peer}_${bits}_$nct")
      if [ $peer = py_server ]; then
        cmd=("$PYTHON" "$HERE/py_server.py")
      else
        cmd=("$NODE" "$HERE/node_server.js")
      fi
      if ! start_server "$label" ws "${cmd[@]}" "${srv_args[@]}"; then
        fail "$name" "peer server: $SERVER_PROBLEM" "$SERVER_OUT" "$SERVER_ERR"
        continue
      fi
      run_client "$name" "$TMP/$label.interop_client.log" \
        "$INTEROP_CLIENT" "$SERVER_URL" "${cli_args[@]}"
      stop_server
    done
  done
done

echo "interop: $passed passed, $failed failed"
[ $failed -eq 0 ]
