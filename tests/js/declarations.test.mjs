// web/client/duplex.d.ts names only what web/client/duplex.js has: every method and
// property it declares on Duplex and Subscription, every ErrorCode entry and
// value. (tsc in tests/types checks the declarations themselves.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as duplex from '../../web/client/duplex.js';
import { makeClient } from './harness.mjs';

const declarations = readFileSync(new URL('../../web/client/duplex.d.ts', import.meta.url), 'utf8');

// Member names declared in `export declare class NAME ... { ... }` (one level of braces).
function membersOf(className) {
  const start = declarations.search(new RegExp(`export declare class ${className}\\b`));
  assert.ok(start >= 0, `class ${className} is declared`);
  const body = declarations.slice(declarations.indexOf('{', start) + 1, declarations.indexOf('\n}', start));
  const names = new Set();
  for (const line of body.split('\n')) {
    const m = /^\s{2}(?:readonly\s+)?([A-Za-z_]\w*)\s*[<(?:]/.exec(line);
    if (m && m[1] !== 'constructor') names.add(m[1]);
  }
  return [...names];
}

test('every member declared on Duplex exists on a client', () => {
  const { client } = makeClient();
  const members = membersOf('Duplex');
  assert.ok(members.length > 20, `parsed ${members.length} members`);
  for (const name of members) assert.ok(name in client, `Duplex.${name} is declared but does not exist`);
});

test('every member declared on Subscription exists on a subscription', () => {
  const { client } = makeClient();
  const sub = client.subscribe('chat:declared', {});
  const members = membersOf('Subscription');
  assert.ok(members.length > 8, `parsed ${members.length} members`);
  for (const name of members) assert.ok(name in sub, `Subscription.${name} is declared but does not exist`);
});

test('ErrorCode: the declared entries are the real ones, with the same values', () => {
  const block = declarations.slice(declarations.indexOf('export declare const ErrorCode'), declarations.indexOf('}>;'));
  const declared = Object.fromEntries([...block.matchAll(/^\s+([A-Z_]+): (\d+|'[a-z_]+');/gm)]
    .map(([, key, value]) => [key, value.startsWith("'") ? value.slice(1, -1) : Number(value)]));
  assert.deepEqual(declared, { ...duplex.ErrorCode });
});

test('the declared exports are the module\'s exports', () => {
  const declared = [...declarations.matchAll(/^export declare (?:class|const) (\w+)/gm)].map((m) => m[1]).sort();
  const real = Object.keys(duplex).filter((k) => k !== 'default').sort();
  assert.deepEqual(declared, real);
  assert.equal(duplex.default, duplex.Duplex);
});
