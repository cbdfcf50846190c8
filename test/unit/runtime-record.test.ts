/** config.json's version: today's records carry one; older ones without it are version 1. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContainerRecordVersionError, parseRecord, RECORD_VERSION } from '../../server/runtime/container/record';

const fields = { id: 'a'.repeat(64), name: 'web', image: 'busybox', imageRef: 'docker.io/library/busybox:latest', imageId: 'sha256:b', created: '2026-01-01T00:00:00Z', hostname: 'aaaa', options: { image: 'busybox' }, plan: {}, binds: [] };

test('a record without a version reads as version 1: its fields unchanged, owned by root', () => {
  const r = parseRecord(JSON.stringify(fields));
  assert.equal(r.owner, 0);
  assert.deepEqual({ ...r, version: undefined, owner: undefined }, { ...fields, version: undefined, owner: undefined });
});

test('a version 1 record reads as owned by root, whatever owner field it carries', () => {
  assert.equal(parseRecord(JSON.stringify({ ...fields, version: 1, owner: 1000 })).owner, 0);
});

test('a record of this version reads as it is, with its owner', () => {
  assert.equal(RECORD_VERSION, 2);
  const r = parseRecord(JSON.stringify({ ...fields, version: 2, owner: 1000 }));
  assert.equal(r.version, 2);
  assert.equal(r.owner, 1000);
});

test('a version 2 record without a whole-number owner is an error, not a record of root', () => {
  assert.throws(() => parseRecord(JSON.stringify({ ...fields, version: 2 })), /owner undefined is not a uid/);
  assert.throws(() => parseRecord(JSON.stringify({ ...fields, version: 2, owner: -1 })), /is not a uid/);
});

test('a record of a version this helper does not know is refused, naming the file and the version', () => {
  assert.throws(() => parseRecord(JSON.stringify({ ...fields, version: 3 }), '/r/containers/x/config.json'), (e: unknown) => {
    assert.ok(e instanceof ContainerRecordVersionError);
    assert.equal(e.code, 'E_CONTAINER_RECORD_VERSION');
    assert.match(e.message, /\/r\/containers\/x\/config\.json: record version 3/);
    return true;
  });
});

test('a config.json that is not JSON or not an object is an error, not a record', () => {
  assert.throws(() => parseRecord('{'), SyntaxError);
  assert.throws(() => parseRecord('null'), SyntaxError);
});
