#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds a consumer against it
# with find_package(duplex), then with pkg-config.
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
echo "consumer: find_package and pkg-config builds passed"
