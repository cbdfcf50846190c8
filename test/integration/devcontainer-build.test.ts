/**
 * The editor's workspace container against a real helper, kernel and
 * registry, driven through the extension's own code (extension/
 * workspaceLifecycle.ts, the part without the vscode module): a
 * devcontainer.json `build` builds through the helper's builder (args,
 * target, the workspace's image name), a second build is served from the
 * cache, a broken Dockerfile reports its step, a stopped workspace container
 * is started again with what the user wrote in it, a changed configuration
 * offers a rebuild, and Rebuild Container recreates it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import {
  ContainerListRequest,
  ContainerRemoveRequest,
  ContainerStopRequest,
  ImageListRequest,
  ImagePullRequest,
  VersionRequest,
  StreamExitNotification,
  StreamOutputNotification,
  type StreamExitParams,
  type StreamOutputParams,
} from '../../server/protocol';
import { loadDevcontainer, workspaceImageName } from '../../extension/devcontainer';
import { WorkspaceBuildError } from '../../extension/workspaceBuild';
import { WorkspaceLifecycle, type Workspace } from '../../extension/workspaceLifecycle';
import { connectProtocol, fileRegistry, testHelper } from '../helpers/capsa';

const registry = fileRegistry();

interface Host {
  lifecycle: WorkspaceLifecycle;
  conn: MessageConnection;
  build: string[];
  logs: string[];
  offers: string[];
  /** The answer to the next rebuild offers. */
  answer: boolean;
  /** Checks that the helper the test started still answers. */
  alive(): Promise<void>;
}

/** The extension's lifecycle on a protocol connection of the test's own helper. */
async function session(t: { after: (fn: () => Promise<void>) => void }): Promise<Host> {
  const helper = await testHelper(t, registry.url);
  const conn = await connectProtocol(helper.socket);
  t.after(async () => conn.dispose());

  const sinks = new Map<string, { output(p: StreamOutputParams): void; exit(p: StreamExitParams): void }>();
  conn.onNotification(StreamOutputNotification.type, (p) => sinks.get(p.attachId)?.output(p));
  conn.onNotification(StreamExitNotification.type, (p) => sinks.get(p.attachId)?.exit(p));
  const host: Host = {
    conn,
    build: [],
    logs: [],
    offers: [],
    answer: false,
    alive: async () => assert.equal((await conn.sendRequest(VersionRequest.type)).pid, helper.process.pid, 'the helper is the one the test started'),
    lifecycle: undefined as unknown as WorkspaceLifecycle,
  };
  host.lifecycle = new WorkspaceLifecycle({
    connection: conn,
    attach(id, sink) {
      sinks.set(id, sink);
      return { dispose: () => sinks.delete(id) };
    },
    pull: (reference) => conn.sendRequest(ImagePullRequest.type, { reference }),
    buildOutput: (text) => host.build.push(text),
    offerRebuild: async (_folder, why) => {
      host.offers.push(why);
      return host.answer;
    },
    log: (line) => host.logs.push(line),
  });
  return host;
}

/** A workspace folder with `.devcontainer/` holding these files. */
function workspace(t: { after: (fn: () => void) => void }, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-devc-build-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  write(dir, files);
  return dir;
}

function write(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
}

function open(folder: string, env: NodeJS.ProcessEnv = {}): Workspace {
  return { folder, config: loadDevcontainer({ folder, defaultImage: 'busybox', env }), pinImages: false };
}

async function sh(h: Host, id: string, script: string): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const code = await h.lifecycle.execAndWait({ container: id, cmd: ['sh', '-c', script] }, (l) => lines.push(l));
  return { code, out: lines.join('\n') };
}

const noProgress = (): void => undefined;

/** The last build's figures, from the lifecycle's log line. */
function lastBuild(h: Host): { ran: number; cached: number; ms: number } {
  const line = [...h.logs].reverse().find((l) => l.startsWith('built '));
  const m = line && /: (\d+) steps run, (\d+) cached, (\d+) ms$/.exec(line);
  assert.ok(m, `a build was logged: ${h.logs.join('\n')}`);
  return { ran: Number(m[1]), cached: Number(m[2]), ms: Number(m[3]) };
}

const STAGED = [
  'FROM busybox AS base',
  'ARG GREETING=unset',
  'RUN echo "greeting=$GREETING" > /greeting',
  'COPY hello.txt /hello.txt',
  'FROM base AS dev',
  'RUN echo dev > /stage',
  'FROM base AS prod',
  'RUN echo prod > /stage',
  '',
].join('\n');

const BUILD_CONFIG = JSON.stringify({
  build: { dockerfile: 'Dockerfile', context: '..', args: { GREETING: '${localEnv:CAPSA_TEST_GREETING}-${localWorkspaceFolderBasename}' }, target: 'dev' },
  runArgs: ['--network', 'none'],
  postCreateCommand: 'echo created >> /var/created',
  postStartCommand: 'echo started >> /var/started',
});

test('a Dockerfile config builds through the helper (args substituted, the target stage, the context from build.context), is tagged vsc-<folder>-<hash> and runs the workspace container; a second open is served from the cache', { timeout: 300_000 }, async (t) => {
  const h = await session(t);
  const folder = workspace(t, { '.devcontainer/devcontainer.json': BUILD_CONFIG, '.devcontainer/Dockerfile': STAGED, 'hello.txt': 'from the context\n' });
  const ws = open(folder, { CAPSA_TEST_GREETING: 'hi' });
  const { id, outcome } = await h.lifecycle.ensure(ws, noProgress);
  assert.equal(outcome, 'created');
  const r = await sh(h, id, 'cat /greeting /stage /hello.txt; cat /var/created');
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out, `greeting=hi-${path.basename(folder)}\ndev\nfrom the context\ncreated`, 'build.args reached the build, build.target picked the stage');
  assert.match(h.build.join(''), /Step \d+\/\d+ : RUN echo dev > \/stage/, 'the build output shows the steps');
  assert.doesNotMatch(h.build.join(''), /echo prod/, 'the stage the target does not need is not built');

  const name = workspaceImageName(folder);
  assert.match(name, /^vsc-capsa-devc-build-[a-z0-9]+-[0-9a-f]{32}$/);
  const images = await h.conn.sendRequest(ImageListRequest.type);
  assert.ok(images.some((i) => i.names.some((n) => n === `${name}:latest` || n.endsWith(`/${name}:latest`))), `the image is tagged ${name}: ${JSON.stringify(images.map((i) => i.names))}`);
  const first = lastBuild(h);
  assert.ok(first.ran > 0, 'the first build ran its steps');

  // the container goes (removed outside the editor): the next open builds again, all from the cache
  await h.conn.sendRequest(ContainerRemoveRequest.type, { container: id, force: true });
  const reopened = await h.lifecycle.ensure(open(folder, { CAPSA_TEST_GREETING: 'hi' }), noProgress);
  assert.equal(reopened.outcome, 'created');
  assert.equal((await sh(h, reopened.id, 'cat /stage')).out, 'dev');
  const second = lastBuild(h);
  assert.equal(second.ran, 0, 'nothing ran again');
  assert.ok(second.cached > 0, 'every step came from the cache');
  t.diagnostic(`first build ${first.ms} ms (${first.ran} steps run), cached rebuild ${second.ms} ms`);
  assert.ok(second.ms < 1000, `a cached rebuild takes well under a second (${second.ms} ms)`);
  await h.alive();
});

test('a broken Dockerfile stops with the failing step and its error, and leaves no container', { timeout: 300_000 }, async (t) => {
  const h = await session(t);
  const folder = workspace(t, {
    '.devcontainer/devcontainer.json': JSON.stringify({ build: { dockerfile: 'Dockerfile' }, runArgs: ['--network', 'none'] }),
    '.devcontainer/Dockerfile': 'FROM busybox\nRUN echo fine\nRUN echo about to fail && exit 7\nRUN echo never\n',
  });
  const err = await h.lifecycle.ensure(open(folder), noProgress).then(
    () => assert.fail('the build should fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof WorkspaceBuildError, String(err));
  assert.match(err.step ?? '', /^Step 3\/4 : RUN echo about to fail && exit 7$/);
  assert.match(err.message, /failed at Step 3\/4 : RUN echo about to fail && exit 7: .*7/);
  const out = h.build.join('');
  assert.match(out, /^about to fail$/m, "the step's own output is in the build output");
  assert.match(out, /The build failed at Step 3\/4/);
  assert.doesNotMatch(out, /^never$/m);
  assert.deepEqual(await h.conn.sendRequest(ContainerListRequest.type, { all: true }), []);
  await h.alive();
});

test('a stopped workspace container is started again, not recreated: what the user wrote in it is there, postCreateCommand does not run again, postStartCommand does', { timeout: 300_000 }, async (t) => {
  const h = await session(t);
  const folder = workspace(t, { '.devcontainer/devcontainer.json': BUILD_CONFIG, '.devcontainer/Dockerfile': STAGED, 'hello.txt': 'x\n' });
  const ws = open(folder);
  const { id } = await h.lifecycle.ensure(ws, noProgress);
  assert.equal((await sh(h, id, 'mkdir -p /opt/tool && echo installed > /opt/tool/bin')).code, 0);
  await h.conn.sendRequest(ContainerStopRequest.type, { container: id, timeout: 2 });
  const again = await h.lifecycle.ensure(open(folder), noProgress);
  assert.deepEqual(again, { id, outcome: 'started' }, 'the same container, started');
  const r = await sh(h, id, 'cat /opt/tool/bin; wc -l < /var/created; wc -l < /var/started');
  assert.equal(r.out.replace(/ +/g, ''), 'installed\n1\n2', 'the file survived; postCreateCommand ran once, postStartCommand twice');
  assert.deepEqual(h.offers, [], 'the same configuration offers no rebuild');
  assert.deepEqual(await h.lifecycle.ensure(open(folder), noProgress), { id, outcome: 'running' });
  await h.alive();
});

test('a changed configuration (devcontainer.json or the Dockerfile) offers a rebuild; declined, the container is kept and not asked about again; accepted, it is recreated', { timeout: 300_000 }, async (t) => {
  const h = await session(t);
  const folder = workspace(t, { '.devcontainer/devcontainer.json': BUILD_CONFIG, '.devcontainer/Dockerfile': STAGED, 'hello.txt': 'x\n' });
  const { id } = await h.lifecycle.ensure(open(folder), noProgress);
  await sh(h, id, 'echo mine > /root/mine');

  write(folder, { '.devcontainer/Dockerfile': STAGED.replace('echo dev', 'echo dev2') });
  h.answer = false;
  assert.deepEqual(await h.lifecycle.ensure(open(folder), noProgress), { id, outcome: 'running' }, 'declined: the container is kept');
  assert.equal(h.offers.length, 1, 'a changed Dockerfile offers a rebuild');
  assert.match(h.offers[0], /configuration changed/);
  await h.lifecycle.ensure(open(folder), noProgress);
  assert.equal(h.offers.length, 1, 'a declined offer is not repeated for the same configuration');

  write(folder, { '.devcontainer/devcontainer.json': BUILD_CONFIG.replace('"runArgs"', '"containerEnv":{"COLOR":"blue"},"runArgs"') });
  h.answer = true;
  const rebuilt = await h.lifecycle.ensure(open(folder), noProgress);
  assert.equal(h.offers.length, 2, 'a changed devcontainer.json offers a rebuild');
  assert.equal(rebuilt.outcome, 'created');
  assert.notEqual(rebuilt.id, id);
  const r = await sh(h, rebuilt.id, 'cat /stage; echo "$COLOR"; cat /root/mine 2>/dev/null || echo gone');
  assert.equal(r.out, 'dev2\nblue\ngone', 'the new container has the new configuration, not the old one\'s files');
  assert.equal((await h.conn.sendRequest(ContainerListRequest.type, { all: true })).length, 1, 'the old container was removed');
  await h.alive();
});

test('Rebuild Container recreates the workspace container from the cache; Rebuild Without Cache runs every step again', { timeout: 300_000 }, async (t) => {
  const h = await session(t);
  const folder = workspace(t, { '.devcontainer/devcontainer.json': BUILD_CONFIG, '.devcontainer/Dockerfile': STAGED, 'hello.txt': 'x\n' });
  const ws = open(folder);
  const { id } = await h.lifecycle.ensure(ws, noProgress);
  await sh(h, id, 'echo mine > /root/mine');
  const rebuilt = await h.lifecycle.rebuild(ws, noProgress);
  assert.notEqual(rebuilt, id);
  assert.equal(lastBuild(h).ran, 0, 'Rebuild Container builds from the cache');
  const r = await sh(h, rebuilt, 'cat /root/mine 2>/dev/null || echo gone; wc -l < /var/created');
  assert.equal(r.out.replace(/ +/g, ''), 'gone\n1', 'a fresh container: postCreateCommand ran in it');
  const all = await h.conn.sendRequest(ContainerListRequest.type, { all: true });
  assert.deepEqual(all.map((c) => c.id), [rebuilt]);

  const fresh = await h.lifecycle.rebuild(ws, noProgress, { noCache: true });
  assert.notEqual(fresh, rebuilt);
  const b = lastBuild(h);
  assert.equal(b.cached, 0, 'Rebuild Without Cache takes nothing from the cache');
  assert.ok(b.ran > 0);
  await h.alive();
});
