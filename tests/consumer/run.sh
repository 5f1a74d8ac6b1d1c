#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds a consumer against it
# with find_package(duplex), then with pkg-config; then a client-only program
# (find_package(duplex COMPONENTS client), duplex::client; pkg-config
# duplex-client) that must neither need nor link SQLite, hiredis, libnats or
# toml++.
set -euo pipefail
BUILD=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=$(mktemp -d)
WORK=$(mktemp -d)
trap 'rm -rf "$PREFIX" "$WORK"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" > /dev/null
cmake -S "$HERE" -B "$WORK/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" > /dev/null
cmake --build "$WORK/cmake" > /dev/null
"$WORK/cmake/consumer"
# pkg-config: the same program, compiled by hand.
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
g++ -std=c++20 "$HERE/main.cpp" $(pkg-config --cflags --libs duplex) -o "$WORK/consumer-pc"
"$WORK/consumer-pc"

# The client-only program. The server's packages are disabled, so the
# configure fails if find_package(duplex COMPONENTS client) looks for them.
cmake -S "$HERE/client" -B "$WORK/client" -G Ninja -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON -DCMAKE_DISABLE_FIND_PACKAGE_tomlplusplus=ON > /dev/null
cmake --build "$WORK/client" > /dev/null
g++ -std=c++20 "$HERE/client/client.cpp" $(pkg-config --cflags --libs duplex-client) -o "$WORK/client-pc"
for program in "$WORK/client/client_consumer" "$WORK/client-pc"; do
  "$program"
  if ldd "$program" | grep -Ei 'libsqlite3|libhiredis|libnats|libtomlplusplus'; then
    echo "consumer: $program links a server library (above)" >&2
    exit 1
  fi
  if nm -C "$program" | grep -Ei ' (sqlite3_|redis[A-Z]|natsConnection|toml::)' | head -5 | grep .; then
    echo "consumer: $program contains server library symbols (above)" >&2
    exit 1
  fi
done
echo "consumer: find_package and pkg-config builds passed (full and client-only)"
