#!/usr/bin/env bash
# The JS client as a package: web/client/duplex.d.ts type-checks (tsc, strict) with
# usage.ts, and `npm pack` of web/client/ gives a tarball that installs into a scratch
# project, imports by name (ESM exports) and type-checks there too.
#   tests/types/run.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TSC="$HERE/node_modules/.bin/tsc"
[ -x "$TSC" ] || { echo "tests/types: typescript missing: (cd tests/types && npm ci)" >&2; exit 1; }

echo "--- tsc: web/client/duplex.d.ts with tests/types/usage.ts"
"$TSC" -p "$HERE"

work=$(mktemp -d "${TMPDIR:-/tmp}/duplex-pack.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "--- npm pack web/client/"
tarball=$(cd "$work" && npm pack "$ROOT/web/client" --silent --loglevel=error | tail -1)
tar -tzf "$work/$tarball" | sort > "$work/contents"
expected=$(printf 'package/duplex.d.ts\npackage/duplex.js\npackage/package.json\n')
if [ "$(cat "$work/contents")" != "$expected" ]; then
  echo "tests/types: the package holds:" >&2; cat "$work/contents" >&2; exit 1
fi

echo "--- install $tarball into a scratch project"
mkdir "$work/app"
cd "$work/app"
printf '{"name":"scratch","private":true,"type":"module"}\n' > package.json
npm install --offline --no-audit --no-fund --loglevel=error "$work/$tarball" > /dev/null
node --input-type=module -e "
import Duplex, { Duplex as Named, DuplexError, ErrorCode } from 'duplex-client';
if (Duplex !== Named || typeof Duplex !== 'function') throw new Error('default export is not Duplex');
if (ErrorCode.ALREADY_SUBSCRIBED !== 105 || !(new DuplexError(105, 'x') instanceof Error)) throw new Error('exports');
const client = new Duplex('ws://127.0.0.1:9/connection/websocket', { WebSocket: class {}, network: null });
if (client.state !== 'disconnected' || client.reconnectNow() !== false) throw new Error('client');
console.log('imported duplex-client by name');
"
cat > check.ts <<'TS'
import { Duplex, type Publication } from 'duplex-client';
const client = new Duplex('ws://127.0.0.1:8080/connection/websocket', { token: 't' });
client.subscribe('chat:lobby', { onMessage: (m: Publication) => console.log(m.offset, m.data) });
// @ts-expect-error: the types came with the package (this would be `any` without them)
client.publish(1, {});
TS
"$TSC" --strict --noEmit --module NodeNext --moduleResolution NodeNext --target ES2022 --lib ES2022,DOM check.ts
echo "tests/types: declarations and package OK"
