import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVolume } from '../../server/runtime/volumes';

test('HOST:CTR and HOST:CTR:ro parse into bind mounts', () => {
  assert.deepEqual(parseVolume('/srv/data:/data'), { source: '/srv/data', target: '/data', readOnly: false });
  assert.deepEqual(parseVolume('/srv/data:/data/../x:ro'), { source: '/srv/data', target: '/x', readOnly: true });
});

test('NAME:CTR names a volume', () => {
  assert.deepEqual(parseVolume('cache:/cache:ro'), { type: 'volume', name: 'cache', source: '', target: '/cache', readOnly: true });
});

const hostile: Array<[string, RegExp]> = [
  ['', /expected HOST:CONTAINER/],
  ['/only', /expected HOST:CONTAINER/],
  ['../etc:/data', /must be absolute, or a volume name without '\/'/],
  ['a/b:/data', /must be absolute, or a volume name without '\/'/],
  ['..:/data', /must be absolute, or a volume name/],
  ['-x:/data', /invalid volume name/],
  ['/a:relative', /container path "relative" must be absolute/],
  ['/a:/', /cannot mount over the container's \//],
  ['/a:/b/..', /cannot mount over/],
  ['/a:/b:rx', /unknown option "rx"/],
  ['/a:/b:ro:extra', /expected HOST:CONTAINER/],
];
for (const [spec, err] of hostile) {
  test(`volume ${JSON.stringify(spec)} is refused with a clear error`, () => {
    assert.throws(() => parseVolume(spec), err);
  });
}
