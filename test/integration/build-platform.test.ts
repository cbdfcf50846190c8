/**
 * `capsa build --platform` and `FROM --platform`: the base image is the
 * index entry of the wanted platform (pulled again when the local image of
 * that name is another platform's), TARGETPLATFORM and BUILDPLATFORM are
 * what BuildKit gives, and one name wanted for two platforms in a build is
 * a clear error naming the line. The test registry's index has an amd64
 * and an arm64 entry whose files differ; both hold busybox's amd64
 * binaries, so the arm64 entry's RUN steps run on any x86-64 test machine.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startHelper, type TestHelper } from '../helpers/capsa';
import { busyboxLayer, pushImage, pushIndex, seedBusybox, tarLayer } from '../helpers/oci';
import { startRegistry, type TestRegistry } from '../helpers/registry';

let registry: TestRegistry;
let h: TestHelper;
let ref = '';

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  const entry = async (architecture: string) =>
    pushImage(registry, 'library/multi', undefined, {
      layers: [await busyboxLayer(), await tarLayer([{ type: 'file', path: 'which', content: `${architecture}\n` }])],
      architecture,
      config: { Cmd: ['sh'] },
    });
  const amd = await entry('amd64');
  const arm = await entry('arm64');
  await pushIndex(registry, 'library/multi', 'latest', [
    { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
    { image: arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ], 'oci');
  ref = `${registry.host}/library/multi:latest`;
  h = await startHelper({ mirror: registry.url });
});
after(async () => {
  await h?.stop();
  await registry?.stop();
});

function context(t: { after: (fn: () => void) => void }, dockerfile: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-build-platform-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
  return dir;
}

async function inspectImage(name: string): Promise<Record<string, any>> {
  const r = await h.cli(['image', 'inspect', name]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<Record<string, any>>)[0];
}

async function catIn(image: string, file: string): Promise<string> {
  const r = await h.cli(['run', '--rm', '--network', 'none', image, 'cat', file]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

test('build --platform takes the index entry of that platform, sets TARGETPLATFORM, and a later default build pulls the host\'s entry again', { skip: process.arch !== 'x64' && 'the test image holds x86-64 binaries' }, async (t) => {
  const dir = context(t, `FROM ${ref}\nARG TARGETPLATFORM\nARG BUILDPLATFORM\nRUN cat /which > /got && echo "$TARGETPLATFORM on $BUILDPLATFORM" > /platforms\n`);
  const arm = await h.cli(['build', '-q', '--platform', 'linux/arm64', '-t', 'plat:arm', dir], { timeoutMs: 240_000 });
  assert.equal(arm.code, 0, arm.stderr);
  assert.equal((await inspectImage('plat:arm')).Architecture, 'arm64');
  assert.equal(await catIn('plat:arm', '/got'), 'arm64\n');
  assert.equal(await catIn('plat:arm', '/platforms'), 'linux/arm64 on linux/amd64\n');

  const host = await h.cli(['build', '-q', '-t', 'plat:host', dir], { timeoutMs: 240_000 });
  assert.equal(host.code, 0, host.stderr);
  assert.equal((await inspectImage('plat:host')).Architecture, 'amd64', 'the local arm64 image under the name is not taken for the host');
  assert.equal(await catIn('plat:host', '/got'), 'amd64\n');
  assert.equal(await catIn('plat:host', '/platforms'), 'linux/amd64 on linux/amd64\n');
  assert.notEqual(arm.stdout.trim(), host.stdout.trim(), 'another platform is another cache key');
});

test('FROM --platform picks the stage\'s base ($BUILDPLATFORM too); one name for two platforms is an error naming the line; a bad platform is refused', { skip: process.arch !== 'x64' && 'the test image holds x86-64 binaries' }, async (t) => {
  const dir = context(t, `FROM --platform=linux/arm64 ${ref} AS other\nRUN cp /which /from-other\nFROM --platform=$BUILDPLATFORM busybox\nCOPY --from=other /from-other /\n`);
  const ok = await h.cli(['build', '-q', '-t', 'plat:stages', dir], { timeoutMs: 240_000 });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(await catIn('plat:stages', '/from-other'), 'arm64\n');
  assert.equal((await inspectImage('plat:stages')).Architecture, 'amd64');

  const twice = context(t, `FROM --platform=linux/arm64 ${ref} AS a\nRUN true\nFROM ${ref}\nCOPY --from=a /which /x\n`);
  const clash = await h.cli(['build', twice]);
  assert.notEqual(clash.code, 0);
  assert.match(clash.stderr, /Dockerfile:3: .*multi:latest is wanted for linux\/arm64 \(line 1\) and for linux\/amd64/);

  const bad = await h.cli(['build', '--platform', 'linux/../x', dir]);
  assert.equal(bad.code, 125);
  assert.match(bad.stderr, /--platform/);
  const badFrom = context(t, 'FROM --platform=windows-ish/x busybox\nRUN true\n');
  const r = await h.cli(['build', badFrom]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /Dockerfile:1: FROM --platform=windows-ish\/x: invalid platform/);
});
