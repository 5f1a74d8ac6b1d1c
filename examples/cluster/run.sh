#!/usr/bin/env bash
# The example deployment on loopback: Redis (and NATS with `nats`; NATS
# with JetStream and no Redis with `jetstream`), 3 duplex nodes and haproxy
# in front of them. Ctrl-C stops everything.
#
#   examples/cluster/run.sh [redis|nats|jetstream]    (after `make build`)
#
# Clients connect to ws://127.0.0.1:8100/connection/websocket (haproxy);
# the nodes listen on 8101-8103, Redis on 6390, NATS on 4232.
# Environment: DUPLEX (the binary, default build/duplex), BASE_PORT (8100).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENGINE=${1:-redis}
case "$ENGINE" in redis|nats|jetstream) ;; *) echo "usage: $0 [redis|nats|jetstream]" >&2; exit 2 ;; esac
DUPLEX=${DUPLEX:-build/duplex}
BASE=${BASE_PORT:-8100}
REDIS_PORT=${REDIS_PORT:-6390}
NATS_PORT=${NATS_PORT:-4232}
SECRET=${SECRET:-example-cluster-secret}
API_KEY=${API_KEY:-example-api-key}
TOOLS=(haproxy "$DUPLEX")
[ "$ENGINE" = jetstream ] || TOOLS+=(redis-server)
for tool in "${TOOLS[@]}"; do
  command -v "$tool" >/dev/null || { echo "$0: $tool not found (run scripts/deps and make build)" >&2; exit 1; }
done
[ "$ENGINE" != redis ] && { command -v nats-server >/dev/null || { echo "$0: nats-server not found" >&2; exit 1; }; }

DIR=$(mktemp -d /tmp/duplex-cluster.XXXXXX)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs and data in $DIR"
}
trap stop EXIT
trap 'exit 0' INT TERM

render() {  # render TEMPLATE OUTPUT KEY=VALUE...
  local text
  text=$(cat "$1")
  shift
  local out=$1
  shift
  for kv in "$@"; do text=${text//@${kv%%=*}@/${kv#*=}}; done
  printf '%s\n' "$text" > "$out"
}

if [ "$ENGINE" != jetstream ]; then
  render examples/cluster/redis.conf.in "$DIR/redis.conf" REDIS_PORT="$REDIS_PORT" DIR="$DIR"
  redis-server "$DIR/redis.conf" & pids+=($!)
fi
case "$ENGINE" in
  nats) nats-server -a 127.0.0.1 -p "$NATS_PORT" > "$DIR/nats.log" 2>&1 & pids+=($!) ;;
  jetstream) nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/jetstream" > "$DIR/nats.log" 2>&1 & pids+=($!) ;;
esac
case "$ENGINE" in
  redis) BROKER=redis HISTORY=redis ;;
  nats) BROKER=nats HISTORY=redis ;;
  jetstream) BROKER=nats HISTORY=jetstream ;;
esac
for i in 1 2 3; do
  render examples/cluster/node.toml.in "$DIR/n$i.toml" NODE="n$i" PORT=$((BASE + i)) BROKER="$BROKER" \
    HISTORY="$HISTORY" REDIS_PORT="$REDIS_PORT" NATS_PORT="$NATS_PORT" SECRET="$SECRET" API_KEY="$API_KEY"
  "$DUPLEX" serve --config "$DIR/n$i.toml" > "$DIR/n$i.log" 2>&1 & pids+=($!)
done
render examples/cluster/haproxy.cfg.in "$DIR/haproxy.cfg" LISTEN_PORT="$BASE" \
  PORT1=$((BASE + 1)) PORT2=$((BASE + 2)) PORT3=$((BASE + 3))
haproxy -db -f "$DIR/haproxy.cfg" > "$DIR/haproxy.log" 2>&1 & pids+=($!)

echo "engine $ENGINE; files and logs in $DIR"
echo "clients:  ws://127.0.0.1:$BASE/connection/websocket  (haproxy, round robin over 3 nodes)"
echo "nodes:    http://127.0.0.1:$((BASE + 1))/ .. http://127.0.0.1:$((BASE + 3))/"
echo "publish:  curl -H 'X-API-Key: $API_KEY' -d '{\"channel\":\"chat:room\",\"data\":{\"text\":\"hi\"}}' http://127.0.0.1:$BASE/api/publish"
echo "tokens:   $DUPLEX token --secret $SECRET --user alice"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}" || true
echo "a process exited; stopping the rest" >&2
