import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostPlatform, parsePlatform, selectManifest, formatPlatform } from '../../server/image/platform';
import { PlatformNotFoundError } from '../../server/image/errors';
import { InvalidArgumentError } from '../../server/errors';
import { MediaType, type Descriptor, type Index } from '../../server/image/types';

function entry(n: number, platform?: Descriptor['platform']): Descriptor {
  return { mediaType: MediaType.OciManifest, digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: 100 + n, platform };
}

test('host platform maps node arch names to OCI ones', () => {
  const cases: Array<[string, string]> = [
    ['x64', 'linux/amd64'],
    ['arm64', 'linux/arm64/v8'],
    ['arm', 'linux/arm/v7'],
    ['ia32', 'linux/386'],
    ['ppc64', 'linux/ppc64le'],
    ['s390x', 'linux/s390x'],
    ['riscv64', 'linux/riscv64'],
  ];
  for (const [arch, want] of cases) assert.equal(formatPlatform(hostPlatform(arch, 'linux')), want, arch);
  assert.equal(hostPlatform().os, 'linux');
});

test('platform strings parse and normalise', () => {
  const cases: Array<[string, string]> = [
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['Linux/AMD64', 'linux/amd64'],
    ['linux/aarch64', 'linux/arm64/v8'],
    ['linux/arm64', 'linux/arm64/v8'],
    ['linux/arm64/8', 'linux/arm64/v8'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/arm/6', 'linux/arm/v6'],
    ['linux/armhf', 'linux/arm/v7'],
    ['linux/i386', 'linux/386'],
    ['windows/amd64', 'windows/amd64'],
  ];
  for (const [input, want] of cases) assert.equal(formatPlatform(parsePlatform(input)), want, input);
  for (const bad of ['', 'linux', 'linux/', '/amd64', 'linux/amd64/v1/x', 'linux/am d64', '../x/y']) {
    assert.throws(() => parsePlatform(bad), InvalidArgumentError, JSON.stringify(bad));
  }
});

test('manifest selection picks the entry for the wanted platform', () => {
  const index: Index = {
    schemaVersion: 2,
    manifests: [
      entry(1, { os: 'linux', architecture: 'amd64' }),
      entry(2, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
      entry(3, { os: 'linux', architecture: 'arm', variant: 'v6' }),
      entry(4, { os: 'linux', architecture: 'arm', variant: 'v7' }),
      entry(5, { os: 'unknown', architecture: 'unknown' }),
      entry(6),
      entry(7, { os: 'windows', architecture: 'amd64', 'os.version': '10.0' }),
      entry(8, { os: 'linux', architecture: 's390x' }),
    ],
  };
  const cases: Array<[string, number]> = [
    ['linux/amd64', 1],
    ['linux/arm64', 2],
    ['linux/aarch64', 2],
    ['linux/arm/v7', 4],
    ['linux/arm/v6', 3],
    ['linux/arm/v8', 4], // nearest older variant
    ['windows/amd64', 7],
    ['linux/s390x', 8],
  ];
  for (const [want, n] of cases) assert.equal(selectManifest(index, parsePlatform(want)).size, 100 + n, want);
});

test('an arm64 entry without a variant matches arm64/v8, and vice versa', () => {
  const noVariant: Index = { schemaVersion: 2, manifests: [entry(1, { os: 'linux', architecture: 'arm64' })] };
  assert.equal(selectManifest(noVariant, parsePlatform('linux/arm64/v8')).size, 101);
  const v8: Index = { schemaVersion: 2, manifests: [entry(2, { os: 'linux', architecture: 'arm64', variant: 'v8' })] };
  assert.equal(selectManifest(v8, parsePlatform('linux/arm64')).size, 102);
  const exactWins: Index = {
    schemaVersion: 2,
    manifests: [entry(3, { os: 'linux', architecture: 'arm', variant: 'v5' }), entry(4, { os: 'linux', architecture: 'arm' })],
  };
  // `arm` without a variant normalises to v7, so it is the exact match for v7.
  assert.equal(selectManifest(exactWins, parsePlatform('linux/arm/v7')).size, 104);
});

test('no matching platform gives an error listing what the index offers', () => {
  const index: Index = {
    schemaVersion: 2,
    manifests: [entry(1, { os: 'linux', architecture: 'amd64' }), entry(2, { os: 'linux', architecture: 'arm', variant: 'v7' })],
  };
  assert.throws(
    () => selectManifest(index, parsePlatform('linux/arm64'), 'docker.io/library/busybox:latest'),
    (err: unknown) =>
      err instanceof PlatformNotFoundError &&
      err.message === 'no manifest for platform linux/arm64/v8 in docker.io/library/busybox:latest; it has linux/amd64, linux/arm/v7',
  );
  assert.throws(() => selectManifest(index, parsePlatform('linux/arm/v6')), PlatformNotFoundError);
  assert.throws(() => selectManifest({ schemaVersion: 2, manifests: [] }, parsePlatform('linux/amd64')), /lists no platforms/);
});
