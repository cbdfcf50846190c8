/** Containers by owner: which container a name, id or id prefix finds for each viewer (runtime/container/entry.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContainerNotFoundError, ContainerTable, type Entry } from '../../server/runtime/container/entry';
import { RECORD_VERSION } from '../../server/runtime/container/record';

function entry(id: string, name: string, owner: number): Entry {
  return { record: { version: RECORD_VERSION, id: id.padEnd(64, '0'), owner, name } as Entry['record'], state: { state: 'running' } };
}

/** Root's `web` (ab…), user 1000's `web` (ac…) and `db` (ad…), user 2000's `cache` (ae…). */
function table(): ContainerTable {
  const t = new ContainerTable();
  for (const e of [entry('ab1', 'web', 0), entry('ac1', 'web', 1000), entry('ad1', 'db', 1000), entry('ae1', 'cache', 2000)]) t.set(e);
  return t;
}

function notFound(t: ContainerTable, ref: string, viewer: number): string {
  let message = '';
  assert.throws(() => t.find(ref, viewer), (e: unknown) => {
    assert.ok(e instanceof ContainerNotFoundError, `${ref} for ${viewer}: ${String(e)}`);
    message = e.message;
    return true;
  });
  return message;
}

test("a user's name finds that user's container, even when another owner has one of the same name", () => {
  const t = table();
  assert.equal(t.find('web', 1000).record.id, 'ac1'.padEnd(64, '0'));
  assert.equal(t.find('db', 1000).record.owner, 1000);
});

test("another owner's container is not found by name, full id or id prefix, with the text of a missing one", () => {
  const t = table();
  const missing = notFound(t, 'nosuch', 1000);
  assert.equal(missing, 'no such container: nosuch');
  assert.equal(notFound(t, 'cache', 1000), 'no such container: cache');
  assert.equal(notFound(t, 'ae1'.padEnd(64, '0'), 1000), `no such container: ${'ae1'.padEnd(64, '0')}`);
  assert.equal(notFound(t, 'ae', 1000), 'no such container: ae');
  assert.equal(notFound(t, 'ab1', 1000), 'no such container: ab1', "root's container is another owner's too");
  assert.equal(notFound(t, 'web', 2000), 'no such container: web');
});

test("an id prefix shared by the viewer's container and another owner's is the viewer's; ambiguity counts only the viewer's", () => {
  const t = table();
  assert.equal(t.find('ae', 2000).record.name, 'cache');
  assert.equal(t.find('ab', 0).record.owner, 0, 'root: the only one starting ab');
  assert.throws(() => t.find('a', 1000), /container id prefix a is ambiguous: 2 containers match/, 'two of its own');
  assert.equal(t.find('a', 2000).record.name, 'cache', "user 2000 has one container starting a: the others' do not count");
});

test("root finds every owner's container; a name is root's own first, else the only owner's; one several others use is refused listing the ids", () => {
  const t = table();
  assert.equal(t.find('cache', 0).record.owner, 2000);
  assert.equal(t.find('ac1'.padEnd(64, '0'), 0).record.name, 'web');
  assert.equal(t.find('web', 0).record.owner, 0, "root's own web, though user 1000 has one too");
  t.set(entry('af1', 'db', 2000));
  assert.throws(() => t.find('db', 0), (e: unknown) => {
    assert.match((e as Error).message, /container name db is used by 2 owners, none of them root: name one by id: ad1000000000 \(uid 1000\), af1000000000 \(uid 2000\)/);
    return true;
  });
});

test('names are taken per owner', () => {
  const t = table();
  assert.equal(t.nameTaken('web', 1000), true);
  assert.equal(t.nameTaken('cache', 1000), false);
  assert.equal(t.nameTaken('cache', 2000), true);
  assert.equal(t.nameTaken('db'), false, "root has no db, though user 1000 has");
});
