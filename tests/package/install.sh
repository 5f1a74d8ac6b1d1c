#!/usr/bin/env bash
# An installed tree serves its own web files: `cmake --install BUILD --prefix
# TMP`, then TMP/bin/duplex serve answers / and /duplex.js from
# TMP/share/duplex/web (an edited copy there is what is served, not the
# build tree's web/). The lookup order: --web-root over the installed
# directory over the build tree's web/ (when the installed one is missing),
# whose files are links to the source tree's: an edit there is served at once.
#   tests/package/install.sh BUILD
set -euo pipefail
BUILD=$(realpath "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
. "$HERE/lib.sh"
PREFIX=$(mktemp -d)
RUN=$(mktemp -d)
SERVE_PID=
trap 'stop_serve > /dev/null 2>&1 || true; rm -rf "$PREFIX" "$RUN"' EXIT

cmake --install "$BUILD" --prefix "$PREFIX" > /dev/null
for f in bin/duplex share/duplex/web/index.html share/duplex/web/duplex.js share/duplex/duplex.toml \
  share/doc/duplex/README.md share/doc/duplex/docs/OPERATIONS.md; do
  [ -e "$PREFIX/$f" ] || { echo "cmake --install did not install $f"; exit 1; }
done
# The unit and /etc/duplex are the Debian package's alone (absolute paths).
if [ -e "$PREFIX/etc" ] || [ -e "$PREFIX/lib/systemd" ]; then
  echo "cmake --install put system files under the prefix:"; find "$PREFIX/etc" "$PREFIX/lib/systemd" 2> /dev/null; exit 1
fi

WEB="$PREFIX/share/duplex/web"
marker="<!-- the installed copy, $$ -->"
echo "$marker" >> "$WEB/index.html"

echo "--- installed layout: $PREFIX/bin/duplex serves $WEB"
start_serve "$RUN" "$PREFIX/bin/duplex" --engine memory --log-level info
expect_log "$RUN" "serving web files dir=$WEB from=\"install prefix\""
served / > "$RUN/index.html"
cmp "$RUN/index.html" "$WEB/index.html"
grep -qF "$marker" "$RUN/index.html"
served /duplex.js | cmp - "$WEB/duplex.js"
stop_serve

echo "--- --web-root wins over the installed directory"
mkdir "$RUN/site"
echo "<p>site $$</p>" > "$RUN/site/index.html"
start_serve "$RUN" "$PREFIX/bin/duplex" --engine memory --web-root "$RUN/site"
expect_log "$RUN" "serving web files dir=$RUN/site from=web.root"
[ "$(served /)" = "<p>site $$</p>" ]
stop_serve

echo "--- without the installed directory: the build tree's web/ (a developer build)"
mv "$WEB" "$RUN/moved-web"
start_serve "$RUN" "$PREFIX/bin/duplex" --engine memory
expect_log "$RUN" "serving web files dir=$BUILD/web from=\"build tree\""
served / | cmp - "$SOURCE/web/demo/index.html"
served /duplex.js | cmp - "$SOURCE/web/client/duplex.js"
stop_serve

echo "install: the installed tree serves share/duplex/web; --web-root and the build tree in that order"
