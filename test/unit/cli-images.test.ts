import { test } from 'node:test';
import assert from 'node:assert/strict';
import { shownImages } from '../../server/cli/images';
import type { ImageSummary } from '../../server/protocol';

function img(id: string, names: string[], parent?: string, owner?: number): ImageSummary {
  return { id, references: [], names, manifestDigest: '', repoDigests: [], size: 0, os: 'linux', architecture: 'amd64', ...(parent ? { parent } : {}), ...(owner !== undefined ? { owner } : {}) };
}

test('images hides untagged images that are another image\'s parent (a build\'s intermediate steps), keeps dangling leaves, and -a shows all', () => {
  const list = [img('sha256:final', ['app:latest'], 'sha256:step2'), img('sha256:step2', [], 'sha256:step1'), img('sha256:step1', [], 'sha256:base'), img('sha256:base', ['busybox:latest']), img('sha256:leaf', [], 'sha256:base')];
  assert.deepEqual(shownImages(list, { all: false }).map((i) => i.id), ['sha256:final', 'sha256:base', 'sha256:leaf']);
  assert.deepEqual(shownImages(list, { all: true }).map((i) => i.id), list.map((i) => i.id));
});

test("images: a parent relation in another user's namespace does not hide root's own untagged image", () => {
  const list = [img('sha256:a', [], undefined, 0), img('sha256:b', ['x:1'], 'sha256:a', 1001)];
  assert.deepEqual(shownImages(list, { all: false }).map((i) => i.id), ['sha256:a', 'sha256:b']);
});

test('images REPOSITORY[:TAG] shows only images with a matching name, in the short or the full form', () => {
  const list = [img('sha256:1', ['busybox:latest', 'busybox:1']), img('sha256:2', ['app:latest']), img('sha256:3', [])];
  assert.deepEqual(shownImages(list, { all: false, repository: 'busybox' }).map((i) => i.id), ['sha256:1']);
  assert.deepEqual(shownImages(list, { all: false, repository: 'docker.io/library/busybox:1' }).map((i) => i.id), ['sha256:1']);
  assert.deepEqual(shownImages(list, { all: false, repository: 'app:2' }).map((i) => i.id), []);
});
