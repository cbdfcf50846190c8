/**
 * The networks' records (server/runtime/network/records.ts) on their own, no
 * kernel involved: what `network create` plans, the owner-scoped lookups, and
 * networks.json across a load.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ConflictError, InvalidArgumentError } from '../../server/errors';
import { NetworkNotFoundError, NetworkRecords, builtinRecord } from '../../server/runtime/network/records';

function records(t: { after: (fn: () => void) => void }): { recs: NetworkRecords; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-netrec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'network', 'networks.json');
  return { recs: new NetworkRecords(file, builtinRecord('capsa0', '10.88.0.0/16')), file };
}

test('the built-in record takes its gateway from the subnet and refuses a bridge name longer than IFNAMSIZ', () => {
  const b = builtinRecord('capsa0', '10.88.0.0/16');
  assert.equal(b.gateway, '10.88.0.1');
  assert.equal(b.builtin, true);
  assert.throws(() => builtinRecord('a-bridge-name-too-long', '10.88.0.0/16'), InvalidArgumentError);
});

test('plan picks the next free 10.89.N.0/24 and an owner-tagged record only for a non-root owner', (t) => {
  const { recs } = records(t);
  const a = recs.plan({ name: 'a' }, { uid: 0 });
  recs.add(a);
  const b = recs.plan({ name: 'b' }, { uid: 1001 });
  assert.equal(a.subnet, '10.89.0.0/24');
  assert.equal(a.owner, undefined);
  assert.equal(b.subnet, '10.89.1.0/24');
  assert.equal(b.owner, 1001);
  assert.equal(b.bridge, `capsa-${b.id.slice(0, 8)}`);
});

test('plan refuses reserved names, a name the same owner already has, and an overlapping subnet', (t) => {
  const { recs } = records(t);
  assert.throws(() => recs.plan({ name: 'host' }, { uid: 0 }), InvalidArgumentError);
  recs.add(recs.plan({ name: 'a' }, { uid: 1001 }));
  assert.throws(() => recs.plan({ name: 'a' }, { uid: 1001 }), ConflictError);
  assert.doesNotThrow(() => recs.plan({ name: 'a' }, { uid: 1002 }));
  assert.throws(() => recs.plan({ name: 'c', subnet: '10.88.5.0/24' }, { uid: 0 }), /overlaps with network bridge/);
  assert.throws(() => recs.plan({ name: 'c', subnet: '10.89.0.0/24' }, { uid: 1002 }), /a network of another user/);
});

test('resolveForRun finds only the caller\'s own network, and the built-in one for everyone', (t) => {
  const { recs } = records(t);
  const mine = recs.plan({ name: 'net' }, { uid: 1001 });
  recs.add(mine);
  assert.equal(recs.resolveForRun({ uid: 1001 }, 'net').id, mine.id);
  assert.equal(recs.resolveForRun({ uid: 1002 }, 'bridge').builtin, true);
  assert.throws(() => recs.resolveForRun({ uid: 1002 }, 'net'), NetworkNotFoundError);
  assert.throws(() => recs.resolveForRun({ uid: 0 }, 'net'), NetworkNotFoundError);
});

test('saved records come back on load, and a missing networks.json loads as none', async (t) => {
  const { recs, file } = records(t);
  await recs.load();
  assert.deepEqual(recs.userDefined(), []);
  const n = recs.plan({ name: 'kept' }, { uid: 1001 });
  recs.add(n);
  await recs.save();
  const again = new NetworkRecords(file, builtinRecord('capsa0', '10.88.0.0/16'));
  await again.load();
  assert.deepEqual(again.userDefined(), [n]);
  assert.equal(again.network('kept', { uid: 1001 }).id, n.id);
  recs.delete(n);
  assert.deepEqual(recs.networks().map((x) => x.name), ['bridge']);
});
