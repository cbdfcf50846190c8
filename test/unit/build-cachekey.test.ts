/**
 * Cache keys: which edits change which steps' keys. A table over one
 * Dockerfile and one project, each row an edit and the steps whose keys it
 * must change (every step from the first affected one on; none before).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDockerfile } from '../../server/build/stages';
import { graphFor, planBuild, type PlanOptions } from '../../server/build/expand';
import { readContextDir } from '../../server/build/context';
import { readDockerignore } from '../../server/build/dockerignore';
import { canonicalJson, planKeys } from '../../server/build/cachekey';
import type { BaseImage } from '../../server/build/plan';

const AMD64 = { os: 'linux', architecture: 'amd64' };

const DOCKERFILE = `FROM node:20 AS build
WORKDIR /app
COPY package.json ./
RUN npm install
COPY src/ ./src/
RUN npm run build
FROM nginx
COPY --from=build /app/dist /usr/share/nginx/html
COPY conf/nginx.conf /etc/nginx/
`;
// Steps of the last stage come after those of `build`: keys are listed build (0..4), then final (5..6).
const FILES: Record<string, string> = {
  'package.json': '{"name":"x"}',
  'src/index.ts': 'console.log(1)',
  'src/util.ts': 'export {}',
  'conf/nginx.conf': 'server {}',
  'notes.log': 'ignored',
  '.dockerignore': '*.log\n',
};

function project(t: { after: (fn: () => void) => void }, files = FILES): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-key-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [p, c] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    fs.writeFileSync(path.join(dir, p), c);
  }
  return dir;
}

function base(ref: string): BaseImage {
  return { digest: 'sha256:' + createHash('sha256').update(ref).digest('hex'), config: {} };
}

async function keys(dir: string, dockerfile = DOCKERFILE, opts: Partial<PlanOptions> = {}, bases: Record<string, string> = {}): Promise<string[]> {
  const df = loadDockerfile(dockerfile);
  const o: PlanOptions = { platform: AMD64, buildPlatform: AMD64, ...opts };
  const g = graphFor(df, o);
  const resolved = new Map(g.images.map((r) => [r, bases[r] ? { ...base(r), digest: bases[r] } : base(r)]));
  const plan = planBuild(df, o, g, resolved);
  const ignore = readDockerignore(fs.readFileSync(path.join(dir, '.dockerignore')));
  const ctx = await readContextDir(dir, { ignore });
  const k = planKeys(plan, resolved, ctx);
  return plan.stages.flatMap((s) => k.steps.get(s.index) as string[]);
}

/** Indices of the keys that differ. */
const changed = (a: string[], b: string[]): number[] => a.flatMap((k, i) => (k !== b[i] ? [i] : []));

const EDITS: { name: string; edit: (dir: string) => void; changes: number[] }[] = [
  { name: 'nothing', edit: () => undefined, changes: [] },
  { name: 'an ignored file edited', edit: (d) => fs.writeFileSync(path.join(d, 'notes.log'), 'other'), changes: [] },
  { name: 'an ignored file added', edit: (d) => fs.writeFileSync(path.join(d, 'more.log'), 'x'), changes: [] },
  { name: 'a file no COPY reads added', edit: (d) => fs.writeFileSync(path.join(d, 'README'), 'x'), changes: [] },
  { name: 'mtimes touched', edit: (d) => fs.utimesSync(path.join(d, 'src/index.ts'), new Date(0), new Date(0)), changes: [] },
  { name: 'the file only the late COPY reads (conf)', edit: (d) => fs.writeFileSync(path.join(d, 'conf/nginx.conf'), 'server { listen 81; }'), changes: [6] },
  { name: 'a source file (COPY src/)', edit: (d) => fs.writeFileSync(path.join(d, 'src/util.ts'), 'export const a = 1'), changes: [3, 4, 5, 6] },
  { name: 'a file added under src/', edit: (d) => fs.writeFileSync(path.join(d, 'src/new.ts'), ''), changes: [3, 4, 5, 6] },
  { name: 'a mode changed under src/', edit: (d) => fs.chmodSync(path.join(d, 'src/util.ts'), 0o755), changes: [3, 4, 5, 6] },
  { name: 'package.json', edit: (d) => fs.writeFileSync(path.join(d, 'package.json'), '{"name":"y"}'), changes: [1, 2, 3, 4, 5, 6] },
  { name: 'a symlink added under src/', edit: (d) => fs.symlinkSync('index.ts', path.join(d, 'src/link')), changes: [3, 4, 5, 6] },
];

for (const e of EDITS) {
  test(`cache keys: ${e.name} changes ${e.changes.length ? `steps ${e.changes.join(', ')}` : 'no step'}`, async (t) => {
    const dir = project(t);
    const before = await keys(dir);
    assert.equal(before.length, 7);
    assert.equal(new Set(before).size, 7, 'every step has its own key');
    e.edit(dir);
    assert.deepEqual(changed(before, await keys(dir)), e.changes);
  });
}

test('cache keys: the same instructions and inputs in two projects (other paths, other lines) give the same keys', async (t) => {
  const a = await keys(project(t));
  const b = await keys(project(t), '# a comment moves every line\n\n' + DOCKERFILE.replace('RUN npm install', 'run   npm install'));
  assert.deepEqual(b, a);
});

test('cache keys: another base digest changes every key of that stage and of stages that read it', async (t) => {
  const dir = project(t);
  const a = await keys(dir);
  assert.deepEqual(changed(a, await keys(dir, DOCKERFILE, {}, { 'node:20': 'sha256:' + '1'.repeat(64) })), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(changed(a, await keys(dir, DOCKERFILE, {}, { nginx: 'sha256:' + '2'.repeat(64) })), [5, 6]);
});

test('cache keys: a build arg changes the keys of the steps in its scope only; a proxy arg changes none', async (t) => {
  const dir = project(t);
  const df = DOCKERFILE.replace('RUN npm run build', 'ARG MODE=prod\nRUN npm run build');
  const a = await keys(dir, df);
  assert.deepEqual(changed(a, await keys(dir, df, { buildArgs: { MODE: 'dev' } })), [4, 5, 6]);
  assert.deepEqual(changed(a, await keys(dir, df, { buildArgs: { HTTPS_PROXY: 'http://proxy:3128' } })), []);
});

test('cache keys: --chown and --chmod are part of a COPY\'s key', async (t) => {
  const dir = project(t);
  const a = await keys(dir);
  assert.deepEqual(changed(a, await keys(dir, DOCKERFILE.replace('COPY src/ ./src/', 'COPY --chown=1000:1000 src/ ./src/'))), [3, 4, 5, 6]);
  assert.deepEqual(changed(a, await keys(dir, DOCKERFILE.replace('COPY src/ ./src/', 'COPY --chmod=644 src/ ./src/'))), [3, 4, 5, 6]);
});

test('cache keys: another target platform changes every key', async (t) => {
  const dir = project(t);
  const a = await keys(dir, 'FROM scratch\nCOPY package.json /\n');
  const b = await keys(dir, 'FROM scratch\nCOPY package.json /\n', { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  assert.deepEqual(changed(a, b), [0]);
});

test('canonical JSON sorts keys and drops undefined', () => {
  assert.equal(canonicalJson({ b: 1, a: [{ d: undefined, c: 'x' }] }), '{"a":[{"c":"x"}],"b":1}');
});
