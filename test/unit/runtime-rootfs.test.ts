/**
 * Root filesystem decisions in the plan: how many layers an image may
 * stack, that the plan carries every layer whatever the length of the
 * overlay's option string (the shim shortens it), that read-only binds are
 * recursive and the container's own files stay on their container paths.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildRunPlan, overlayData, type SpecInput } from '../../server/runtime/spec';
import { encodePlan, MS } from '../../server/runtime/plan';
import { specInput } from '../helpers/spec';
import { TooManyLayersError } from '../../server/image/errors';
import { MAX_IMAGE_LAYERS } from '../../server/image/types';

function layers(n: number): string[] {
  // as long as real store paths: 64 hex digits under a root
  return Array.from({ length: n }, (_, i) => `/var/lib/capsa/layers/sha256/${i.toString(16).padStart(64, '0')}`);
}

const input = (over: Partial<SpecInput> = {}): SpecInput => specInput({ layerDirs: layers(2), image: { Cmd: ['sh'] }, ...over });

test("the layer ceiling is overlayfs's own stacking limit, 500", () => {
  assert.equal(MAX_IMAGE_LAYERS, 500);
});

test('an image of 500 layers is planned with every layer, even past the one-page mount option limit', () => {
  const data = overlayData(layers(500), '/c/upper', '/c/work');
  assert.ok(data.length > 4096, 'the option string is longer than mount(2) copies');
  const lower = /^lowerdir=([^,]*),upperdir=\/c\/upper,workdir=\/c\/work$/.exec(data);
  assert.ok(lower);
  assert.deepEqual(lower[1].split(':'), layers(500));
  const plan = buildRunPlan(input({ layerDirs: layers(500) }));
  assert.ok(encodePlan(plan).includes(Buffer.from(data)), 'the shim receives the whole list');
});

test('an image of more layers than overlayfs can stack is refused with the limit named', () => {
  for (const n of [501, 20_000]) {
    assert.throws(
      () => buildRunPlan(input({ layerDirs: layers(n) })),
      (err: unknown) =>
        err instanceof TooManyLayersError &&
        err.code === 'E_TOO_MANY_LAYERS' &&
        err.layers === n &&
        err.limit === 500 &&
        err.message === `the image has ${n} layers, more than the 500 Capsa can stack (the overlay filesystem's limit)`,
    );
  }
});

test('read-only binds, volumes included, are recursive binds made read-only; read-write ones stay recursive', () => {
  const plan = buildRunPlan(
    input({
      binds: [
        { source: '/src', target: '/ro', readOnly: true },
        { type: 'volume', name: 'v', source: '/vol/_data', target: '/vro', readOnly: true },
        { source: '/src', target: '/rw', readOnly: false },
      ],
    }),
  );
  const flags = (target: string): number => plan.mounts.find((m) => m.target === target)!.flags;
  assert.equal(flags('/ro'), MS.BIND | MS.REC | MS.RDONLY);
  assert.equal(flags('/vro'), MS.BIND | MS.REC | MS.RDONLY);
  assert.equal(flags('/rw'), MS.BIND | MS.REC);
});

test("Capsa's resolv.conf, hosts and hostname are bound at their container paths, left for the shim to resolve inside the root", () => {
  const plan = buildRunPlan(input());
  for (const [target, source] of [
    ['/etc/resolv.conf', '/c/resolv.conf'],
    ['/etc/hosts', '/c/hosts'],
    ['/etc/hostname', '/c/hostname'],
  ]) {
    const m = plan.mounts.find((x) => x.target === target);
    assert.deepEqual(m, { source, target, fstype: 'none', flags: MS.BIND, data: '' });
  }
  // after the root overlay: they are resolved in the container's filesystem, never the host's
  assert.ok(plan.mounts.findIndex((m) => m.target === '/etc/hosts') > plan.mounts.findIndex((m) => m.target === '/'));
});

test('--read-only remounts the root alone read-only, not the binds below it', () => {
  const plan = buildRunPlan(input({ readOnly: true, binds: [{ source: '/src', target: '/rw', readOnly: false }] }));
  assert.equal(plan.readonlyPaths[0], '/');
  assert.equal(plan.mounts.find((m) => m.target === '/rw')!.flags & MS.RDONLY, 0);
});
