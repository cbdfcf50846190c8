import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  familiarReference,
  formatReference,
  normalizeReference,
  parseReference,
  withDigest,
  isIdPrefix,
  digestHex,
} from '../../server/image/reference';
import { InvalidReferenceError, InvalidDigestError } from '../../server/image/errors';

const D = 'sha256:' + 'a'.repeat(64);

test('references normalise the way docker does', () => {
  const cases: Array<[string, string, { registry: string; repository: string; tag?: string; digest?: string }]> = [
    ['busybox', 'docker.io/library/busybox:latest', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', { registry: 'docker.io', repository: 'library/busybox', tag: '1.36' }],
    ['library/busybox', 'docker.io/library/busybox:latest', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['user/repo', 'docker.io/user/repo:latest', { registry: 'docker.io', repository: 'user/repo', tag: 'latest' }],
    ['user/repo/sub', 'docker.io/user/repo/sub:latest', { registry: 'docker.io', repository: 'user/repo/sub', tag: 'latest' }],
    ['docker.io/busybox', 'docker.io/library/busybox:latest', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['index.docker.io/busybox', 'docker.io/library/busybox:latest', { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' }],
    ['127.0.0.1:5000/repo:tag', '127.0.0.1:5000/repo:tag', { registry: '127.0.0.1:5000', repository: 'repo', tag: 'tag' }],
    ['host:5000/a/b', 'host:5000/a/b:latest', { registry: 'host:5000', repository: 'a/b', tag: 'latest' }],
    ['localhost/x', 'localhost/x:latest', { registry: 'localhost', repository: 'x', tag: 'latest' }],
    ['localhost:5000/x:v1', 'localhost:5000/x:v1', { registry: 'localhost:5000', repository: 'x', tag: 'v1' }],
    ['quay.io/coreos/etcd', 'quay.io/coreos/etcd:latest', { registry: 'quay.io', repository: 'coreos/etcd', tag: 'latest' }],
    ['Example.COM/x', 'Example.COM/x:latest', { registry: 'Example.COM', repository: 'x', tag: 'latest' }],
    ['[::1]:5000/x', '[::1]:5000/x:latest', { registry: '[::1]:5000', repository: 'x', tag: 'latest' }],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`, { registry: 'docker.io', repository: 'library/busybox', digest: D }],
    [`busybox:1@${D}`, `docker.io/library/busybox:1@${D}`, { registry: 'docker.io', repository: 'library/busybox', tag: '1', digest: D }],
    [`h:1/r:t@${D}`, `h:1/r:t@${D}`, { registry: 'h:1', repository: 'r', tag: 't', digest: D }],
    ['a__b/c-d.e--f:_T.a-G', 'docker.io/a__b/c-d.e--f:_T.a-G', { registry: 'docker.io', repository: 'a__b/c-d.e--f', tag: '_T.a-G' }],
    ['x:' + 'a'.repeat(128), 'docker.io/library/x:' + 'a'.repeat(128), { registry: 'docker.io', repository: 'library/x', tag: 'a'.repeat(128) }],
  ];
  for (const [input, normal, fields] of cases) {
    const ref = parseReference(input);
    assert.equal(formatReference(ref), normal, input);
    assert.equal(normalizeReference(input), normal, input);
    assert.deepEqual({ ...ref }, { tag: undefined, digest: undefined, ...fields }, input);
    // Normalising is idempotent.
    assert.equal(normalizeReference(normal), normal, input);
  }
});

test('familiar form drops docker.io and library/', () => {
  const cases: Array<[string, string]> = [
    ['busybox', 'busybox:latest'],
    ['docker.io/library/busybox:1', 'busybox:1'],
    ['user/repo', 'user/repo:latest'],
    ['docker.io/library/a/b', 'library/a/b:latest'],
    ['127.0.0.1:5000/x:1', '127.0.0.1:5000/x:1'],
    [`busybox@${D}`, `busybox@${D}`],
  ];
  for (const [input, familiar] of cases) assert.equal(familiarReference(input), familiar, input);
});

test('broken references are refused with a clear error', () => {
  const cases: Array<[string, RegExp]> = [
    ['', /empty reference/],
    ['Busybox', /must be lowercase/],
    ['user/Repo', /must be lowercase/],
    ['busybox:', /bad tag ""/],
    ['busybox:-x', /bad tag "-x"/],
    ['busybox:.x', /bad tag/],
    ['busybox:a/b', /bad registry host "busybox:a"/],
    ['busybox:' + 'a'.repeat(129), /bad tag/],
    ['busybox@sha256:abc', /sha256 digest must be 64/],
    ['busybox@sha256:' + 'A'.repeat(64), /64 lowercase hex/],
    ['busybox@md5:' + 'a'.repeat(32), /unsupported digest algorithm "md5"/],
    ['busybox@sha256:' + 'g'.repeat(64), /64 lowercase hex/],
    ['busybox@sha2!56:' + 'a'.repeat(64), /not algorithm:hex/],
    ['busybox@', /bad digest/],
    [`busybox@${D}@${D}`, /more than one "@"/],
    ['../etc', /bad registry host ".."/],
    ['a/../b', /"\.\." component/],
    ['a//b', /empty/],
    ['/busybox', /empty|bad registry/],
    ['busybox/', /empty/],
    ['bus box', /whitespace/],
    ['busybox\n', /whitespace/],
    ['busy\u0000box', /control characters/],
    [':tag', /missing repository name/],
    [`@${D}`, /missing repository name/],
    ['-busybox', /lowercase letters and digits/],
    ['busybox-', /lowercase letters and digits/],
    ['bus$box', /lowercase letters and digits/],
    ['ho_st:5000/x', /bad registry host/],
    ['host:port/x', /bad registry host/],
    ['-host.io/x', /bad registry host/],
    ['a'.repeat(256), /longer than 255/],
    ['x.io/' + 'a'.repeat(251), /longer than 255/],
  ];
  for (const [input, why] of cases) {
    assert.throws(
      () => parseReference(input),
      (err: unknown) => {
        assert.ok(err instanceof InvalidReferenceError, `${JSON.stringify(input)}: ${String(err)}`);
        assert.equal(err.code, 'E_INVALID_ARGUMENT');
        assert.match(err.message, /^invalid reference format /);
        assert.match(err.message, why, JSON.stringify(input));
        return true;
      },
    );
  }
});

test('digest helpers accept only sha256 with 64 lowercase hex digits', () => {
  assert.equal(digestHex(D), 'a'.repeat(64));
  assert.throws(() => digestHex('sha256:../../etc/passwd'), InvalidDigestError);
  assert.throws(() => digestHex('sha512:' + 'a'.repeat(128)), InvalidDigestError);
  assert.throws(() => withDigest(parseReference('busybox'), 'sha256:x'), InvalidDigestError);
  assert.equal(formatReference(withDigest(parseReference('busybox:1'), D)), `docker.io/library/busybox@${D}`);
  assert.ok(isIdPrefix('abc123'));
  assert.ok(isIdPrefix('sha256:abc'));
  assert.ok(!isIdPrefix('busybox'));
  assert.ok(!isIdPrefix('ABC'));
});
