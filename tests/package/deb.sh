#!/usr/bin/env bash
# make deb, end to end: builds the package from BUILD (scripts/deb), checks
# its contents and control data, installs it with dpkg -i, runs the installed
# /usr/bin/duplex (--version, serve --version, the unit through
# systemd-analyze verify), serves with /etc/duplex/duplex.toml on a free
# loopback port with SQLite in a temp dir and an API key, publishes through
# the HTTP API, checks / is the installed index.html, stops it, then removes
# (dpkg -r: the conffile stays) and purges (dpkg --purge: nothing stays) the
# package. Needs root; leaves the machine as it found it.
#   tests/package/deb.sh BUILD
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD=$(realpath "$1")
. "$HERE/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "deb: SKIPPED: dpkg -i needs root (CI runs as root on Debian 12); the package is still built"
  "$SOURCE/scripts/deb" "$BUILD" | tail -1
  exit 0
fi
# Never replace what is already there: the test would remove it afterwards.
status=$(dpkg-query -W -f='${Status}' duplex 2> /dev/null || true)
if [ -n "$status" ] && [ "$status" != "unknown ok not-installed" ]; then
  echo "deb: SKIPPED: dpkg knows a duplex package here ($status); not replacing it"
  exit 0
fi
for f in /usr/bin/duplex /usr/share/duplex /usr/share/doc/duplex /etc/duplex /lib/systemd/system/duplex.service; do
  if [ -e "$f" ]; then
    echo "deb: SKIPPED: $f exists (not from a package); not overwriting it"
    exit 0
  fi
done

VERSION=$(sed -n 's/^project(duplex VERSION \([0-9.]*\).*/\1/p' "$SOURCE/CMakeLists.txt")
RUN=$(mktemp -d)
SERVE_PID=
installed=no
cleanup() {
  stop_serve > /dev/null 2>&1 || true
  if [ "$installed" = yes ]; then dpkg --purge duplex > /dev/null 2>&1 || true; fi
  rm -rf "$RUN"
}
trap cleanup EXIT

DEB=$("$SOURCE/scripts/deb" "$BUILD" | tail -1)
echo "--- $DEB"
fail() { echo "deb: $*"; exit 1; }

# Contents: the server, not the library.
dpkg-deb -c "$DEB" | awk '{print $NF}' > "$RUN/contents"
for f in ./usr/bin/duplex ./usr/share/duplex/web/index.html ./usr/share/duplex/web/duplex.js \
  ./usr/share/duplex/duplex.toml ./etc/duplex/duplex.toml ./lib/systemd/system/duplex.service \
  ./usr/share/doc/duplex/README.md ./usr/share/doc/duplex/docs/OPERATIONS.md \
  ./usr/share/doc/duplex/docs/grafana/duplex-dashboard.json; do
  grep -qxF "$f" "$RUN/contents" || fail "$f is not in the package"
done
if grep -E '^\./usr/(include|lib/.*\.a$|lib/.*/cmake|lib/.*/pkgconfig)' "$RUN/contents"; then
  fail "the package holds the library's development files (above)"
fi
# Control data: the project's version, shared-library dependencies, the conffile.
[ "$(dpkg-deb -f "$DEB" Package)" = duplex ] || fail "Package is not duplex"
[ "$(dpkg-deb -f "$DEB" Version)" = "$VERSION-1" ] || fail "Version $(dpkg-deb -f "$DEB" Version), not $VERSION-1"
depends=$(dpkg-deb -f "$DEB" Depends)
for lib in libc6 libssl3 libsqlite3-0 libstdc++6; do
  [[ "$depends" == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qxF /etc/duplex/duplex.toml ||
  fail "/etc/duplex/duplex.toml is not a conffile"

echo "--- dpkg -i"
installed=yes
dpkg -i "$DEB" > "$RUN/dpkg.log" 2>&1 || { cat "$RUN/dpkg.log"; fail "dpkg -i failed"; }
[ "$(/usr/bin/duplex --version)" = "duplex $VERSION" ] || fail "/usr/bin/duplex --version: $(/usr/bin/duplex --version)"
[ "$(/usr/bin/duplex serve --version)" = "duplex $VERSION" ] || fail "duplex serve --version: $(/usr/bin/duplex serve --version)"
grep -q '^data_dir = "/var/lib/duplex" ' /etc/duplex/duplex.toml || fail "/etc/duplex/duplex.toml: engine.data_dir is not /var/lib/duplex"
if command -v systemd-analyze > /dev/null; then
  systemd-analyze verify /lib/systemd/system/duplex.service || fail "systemd-analyze verify duplex.service"
  echo "systemd-analyze verify: duplex.service is valid"
else
  echo "systemd-analyze is not installed: the unit is not verified"
fi

echo "--- /usr/bin/duplex serve --config /etc/duplex/duplex.toml"
mkdir "$RUN/data"
start_serve "$RUN" /usr/bin/duplex --config /etc/duplex/duplex.toml --data-dir "$RUN/data" --api-key deb-test-key
expect_log "$RUN" 'serving web files dir=/usr/share/duplex/web from="install prefix"'
expect_log "$RUN" "engine=sqlite"
answer=$(curl -sS --max-time 5 -o "$RUN/publish" -w '%{http_code}' -XPOST -H 'X-API-Key: deb-test-key' \
  "http://127.0.0.1:$SERVE_PORT/api/publish" -d '{"channel":"deb:smoke","data":{"text":"hello from the package"}}')
[ "$answer" = 200 ] || fail "POST /api/publish answered $answer: $(cat "$RUN/publish")"
grep -q '"offset":1' "$RUN/publish" || fail "POST /api/publish: $(cat "$RUN/publish")"
[ -s "$RUN/data/duplex.db" ] || fail "no SQLite database in --data-dir"
served / | cmp - /usr/share/duplex/web/index.html || fail "/ is not /usr/share/duplex/web/index.html"
echo "<!-- edited $$ -->" >> /usr/share/duplex/web/index.html
served / | grep -qF "<!-- edited $$ -->" || fail "/ is not served from /usr/share/duplex/web"
served /duplex.js | cmp - /usr/share/duplex/web/duplex.js || fail "/duplex.js is not /usr/share/duplex/web/duplex.js"
stop_serve

echo "--- dpkg -r, dpkg --purge"
dpkg -r duplex > "$RUN/dpkg.log" 2>&1 || { cat "$RUN/dpkg.log"; fail "dpkg -r failed"; }
[ ! -e /usr/bin/duplex ] || fail "dpkg -r left /usr/bin/duplex"
[ ! -e /usr/share/duplex ] || fail "dpkg -r left /usr/share/duplex"
[ -f /etc/duplex/duplex.toml ] || fail "dpkg -r removed the conffile /etc/duplex/duplex.toml"
dpkg --purge duplex > "$RUN/dpkg.log" 2>&1 || { cat "$RUN/dpkg.log"; fail "dpkg --purge failed"; }
installed=no
for f in /etc/duplex /lib/systemd/system/duplex.service /usr/share/doc/duplex; do
  [ ! -e "$f" ] || fail "dpkg --purge left $f"
done
status=$(dpkg-query -W -f='${Status}' duplex 2> /dev/null || true)
[ -z "$status" ] || [ "$status" = "unknown ok not-installed" ] || fail "dpkg still knows duplex: $status"
echo "deb: built, installed, served and published, removed and purged"
