/**
 * The Docker Engine API through the real docker client (Debian's docker.io,
 * its daemon never started): DOCKER_HOST points at the test helper's
 * docker.sock, and the client's everyday flow — version, info, pull,
 * images, run (output, exit status, stdin), run -d, ps, logs, exec,
 * inspect, stop, rm, tag, rmi — works as against Docker, errors printed as
 * Docker's. A user created by the test reaches its own containers only.
 * Hostile requests are refused cleanly and the helper goes on serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, promises as fs, rmSync, statSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { startHelper, until, type TestHelper } from '../helpers/capsa';
import { seedBusybox } from '../helpers/oci';
import { startRegistry, type TestRegistry } from '../helpers/registry';
import { asUser, collect, createUser, type TestUser } from '../helpers/users';

/** Debian's client (docker.io) when installed, else whichever `docker` is on the PATH. */
const DOCKER = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';

let registry: TestRegistry;
let h: TestHelper;
let engineSocket: string;
/** A home for the client (its config directory), so nothing of the machine's user config is read. */
let home: string;

before(async () => {
  registry = await startRegistry();
  await seedBusybox(registry);
  h = await startHelper({ mirror: registry.url, env: { CAPSA_SOCKET_MODE: '0666' } });
  engineSocket = path.join(h.dir, 'docker.sock');
  // users reach sockets in the helper's directory, as the owner-containers tests do
  chmodSync(h.dir, 0o711);
  await until('the Engine API socket to be open to users', async () => existsSync(engineSocket) && (statSync(engineSocket).mode & 0o777) === 0o666);
  home = mkdtempSync(path.join(tmpdir(), 'capsa-docker-home-'));
  chmodSync(home, 0o755);
});

after(async () => {
  try {
    await h?.stop();
  } finally {
    await registry?.stop();
    if (home) rmSync(home, { recursive: true, force: true });
  }
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `docker ARGS` against the test helper, as root or as `user`, with `input` on its stdin. */
function docker(args: string[], opts: { input?: string; user?: TestUser; timeoutMs?: number } = {}): Promise<Result> {
  const userHome = opts.user ? path.join(home, opts.user.name) : path.join(home, 'root');
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: userHome, DOCKER_CONFIG: path.join(userHome, '.docker'), DOCKER_HOST: `unix://${engineSocket}` };
  const argv = opts.user ? asUser(opts.user, [DOCKER, ...args]) : [DOCKER, ...args];
  return collect(argv, { env, input: opts.input ?? '', timeoutMs: opts.timeoutMs, what: `docker ${args.join(' ')}` });
}

async function ok(args: string[], opts: { input?: string; user?: TestUser } = {}): Promise<string> {
  const r = await docker(args, opts);
  assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function userHome(user: TestUser): Promise<void> {
  const dir = path.join(home, user.name);
  await fs.mkdir(dir, { recursive: true });
  await fs.chown(dir, user.uid, user.gid);
}

/** One raw HTTP request on the Engine API socket. */
function request(method: string, urlPath: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: engineSocket, method, path: urlPath, headers: { ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The helper answers on both doors, and is the process the test started. */
async function helperServes(pid: number | undefined): Promise<void> {
  assert.equal(h.process.pid, pid, 'the same helper process');
  assert.equal(h.process.exitCode, null, 'the helper is still running');
  const ping = await request('GET', '/_ping');
  assert.equal(ping.status, 200);
  const v = await h.cli(['version']);
  assert.equal(v.code, 0, v.stderr);
}

test('_ping answers GET and HEAD with the API version headers, on versioned and unversioned paths', async () => {
  for (const [method, p] of [['GET', '/_ping'], ['HEAD', '/_ping'], ['GET', '/v1.41/_ping'], ['HEAD', '/v1.24/_ping']]) {
    const r = await request(method, p);
    assert.equal(r.status, 200, `${method} ${p}`);
    assert.equal(r.headers['api-version'], '1.43');
    assert.equal(r.headers.ostype, 'linux');
    assert.equal(r.body, method === 'GET' ? 'OK' : '');
  }
  assert.equal((await request('GET', '/v1.12/_ping')).status, 400, 'older than the oldest version served');
});

test('docker version and docker info report Capsa and the negotiated API version', async () => {
  const version = await ok(['version', '--format', '{{.Server.APIVersion}} {{.Server.Platform.Name}}']);
  assert.match(version, /^1\.43 Capsa /);
  const client = await ok(['version', '--format', '{{.Client.APIVersion}}']);
  // the client speaks the older of its version and the server's
  assert.match(client.trim(), /^1\.\d+$/);
  const info = await ok(['info', '--format', '{{.ServerVersion}} {{.OSType}} {{.Driver}}']);
  assert.match(info, /^\d+\.\d+\.\d+ linux overlay/);
});

test('docker pull streams Docker progress messages and docker images lists the image', async () => {
  const pulled = await ok(['pull', 'busybox']);
  assert.match(pulled, /Status: (Downloaded newer image|Image is up to date) for busybox:latest/);
  assert.match(pulled, /Digest: sha256:[0-9a-f]{64}/);
  const images = await ok(['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']);
  assert.match(images, /^busybox:latest [0-9a-f]{12}$/m);
  const inspected = await ok(['image', 'inspect', '--format', '{{.Os}}', 'busybox']);
  assert.equal(inspected.trim(), 'linux');
});

test('docker tag names the image again and docker rmi removes only that name', async () => {
  await ok(['pull', '-q', 'busybox']);
  await ok(['tag', 'busybox', 'mybox:1']);
  assert.match(await ok(['images', '--format', '{{.Repository}}:{{.Tag}}']), /^mybox:1$/m);
  assert.match(await ok(['rmi', 'mybox:1']), /Untagged: mybox:1/);
  const left = await ok(['images', '--format', '{{.Repository}}:{{.Tag}}']);
  assert.doesNotMatch(left, /mybox/);
  assert.match(left, /^busybox:latest$/m);
});

test('docker run --rm prints the output, exits with the command status and leaves no container', async () => {
  const hi = await docker(['run', '--rm', '--network', 'none', 'busybox', 'echo', 'hi']);
  assert.equal(hi.code, 0, hi.stderr);
  assert.equal(hi.stdout, 'hi\n');
  const three = await docker(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(three.code, 3, three.stderr);
  assert.equal(three.stdout, 'out\n');
  assert.match(three.stderr, /^err$/m);
  assert.equal((await ok(['ps', '-a', '-q'])).trim(), '', 'the --rm containers are gone');
});

test('docker run options reach the container: binds, mounts, env, workdir, user, entrypoint, labels, memory', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-engine-bind-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await fs.writeFile(path.join(dir, 'f'), 'from the host\n', { mode: 0o644 });
  // readable by the container's user 1234, which is host uid 1234 (no user namespace for root's containers)
  chmodSync(dir, 0o755);
  const r = await docker([
    'run', '--rm', '--network', 'none', '-v', `${dir}:/data:ro`, '--mount', 'type=tmpfs,target=/scratch', '-e', 'WHO=engine', '-w', '/data', '-u', '1234:5678',
    '--entrypoint', 'sh', 'busybox', '-c', 'cat f; echo $WHO $(pwd) $(id -u):$(id -g); grep -c " /scratch tmpfs" /proc/mounts; touch /data/x 2>/dev/null || echo read-only',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'from the host\nengine /data 1234:5678\n1\nread-only\n');
  const id = (await ok(['create', '--network', 'none', '-m', '64m', '--label', 'k=v', '--name', 'opts', 'busybox', 'true'])).trim();
  t.after(async () => void (await docker(['rm', '-f', id])));
  assert.equal((await ok(['inspect', '--format', '{{.HostConfig.Memory}} {{.Config.Labels.k}} {{.State.Status}}', 'opts'])).trim(), `${64 * 1024 * 1024} v created`);
});

test('docker top lists the processes and docker container prune removes only stopped containers', async (t) => {
  const running = (await ok(['run', '-d', '--network', 'none', 'busybox', 'sleep', '300'])).trim();
  t.after(async () => void (await docker(['rm', '-f', running])));
  const top = await ok(['top', running]);
  assert.match(top, /^UID\s+PID\s+PPID/m);
  assert.match(top, /sleep 300/);
  const stopped = (await ok(['create', '--network', 'none', 'busybox', 'true'])).trim();
  const pruned = await ok(['container', 'prune', '-f']);
  assert.match(pruned, new RegExp(stopped));
  assert.deepEqual((await ok(['ps', '-a', '-q', '--no-trunc'])).trim().split('\n'), [running]);
});

test('a command that cannot run exits 127 or 126 with Docker\'s message, and --rm removes its container', async () => {
  const missing = await docker(['run', '--rm', '--network', 'none', 'busybox', 'nosuchcmd']);
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /Error response from daemon: .*executable file not found/);
  const notExecutable = await docker(['run', '--rm', '--network', 'none', 'busybox', '/etc/passwd']);
  assert.equal(notExecutable.code, 126);
  assert.match(notExecutable.stderr, /permission denied/);
  assert.equal((await ok(['ps', '-a', '-q'])).trim(), '', 'no container is left');
});

test('docker run without --rm leaves an exited container that docker rm removes', async () => {
  const r = await docker(['run', '--name', 'once', '--network', 'none', 'busybox', 'sh', '-c', 'exit 7']);
  assert.equal(r.code, 7, r.stderr);
  assert.equal((await ok(['inspect', '--format', '{{.State.Status}} {{.State.ExitCode}}', 'once'])).trim(), 'exited 7');
  await ok(['rm', 'once']);
  assert.equal((await ok(['ps', '-a', '-q', '--filter', 'name=once'])).trim(), '');
});

test('docker run -i passes piped stdin to the container and its end closes it', async () => {
  const r = await docker(['run', '--rm', '-i', '--network', 'none', 'busybox', 'sh', '-c', 'cat; echo done'], { input: 'hello\nworld\n' });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'hello\nworld\ndone\n');
});

test('docker run -t gives the container a terminal and its output raw', async () => {
  const r = await docker(['run', '--rm', '-t', '--network', 'none', 'busybox', 'sh', '-c', '[ -t 1 ] && echo tty; exit 4']);
  assert.equal(r.code, 4, r.stderr);
  assert.equal(r.stdout.replace(/\r/g, ''), 'tty\n');
});

test('docker run -d, ps, logs, exec, inspect, stop and rm act on one running container', async () => {
  const id = (await ok(['run', '-d', '--name', 'web', '--label', 'app=demo', '--network', 'none', '-e', 'GREETING=hello', 'busybox', 'sh', '-c', 'echo started; echo warn >&2; exec sleep 300'])).trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  const ps = await ok(['ps', '--format', '{{.ID}} {{.Names}} {{.Image}} {{.Status}}']);
  assert.match(ps, new RegExp(`^${id.slice(0, 12)} web busybox Up `, 'm'));
  assert.match(await ok(['ps', '-q', '--filter', 'label=app=demo']), new RegExp(id.slice(0, 12)));
  assert.equal((await ok(['ps', '-q', '--filter', 'label=app=other'])).trim(), '');
  await until('the container to log', async () => (await docker(['logs', 'web'])).stdout.includes('started'));
  const logs = await docker(['logs', 'web']);
  assert.equal(logs.stdout, 'started\n');
  assert.equal(logs.stderr, 'warn\n', 'stderr comes back on stderr: the frames keep the streams apart');
  const exec = await docker(['exec', 'web', 'sh', '-c', 'echo $GREETING from exec']);
  assert.equal(exec.code, 0, exec.stderr);
  assert.equal(exec.stdout, 'hello from exec\n');
  assert.equal((await docker(['exec', 'web', 'sh', '-c', 'exit 5'])).code, 5);
  const piped = await docker(['exec', '-i', 'web', 'cat'], { input: 'through exec\n' });
  assert.equal(piped.stdout, 'through exec\n');
  assert.equal((await docker(['exec', '-d', 'web', 'sleep', '1'])).code, 0);
  assert.equal((await ok(['inspect', '--format', '{{.State.Status}}', 'web'])).trim(), 'running');
  assert.equal((await ok(['inspect', '--format', '{{.Config.Labels.app}} {{.Name}}', id])).trim(), 'demo /web');
  assert.match((await ok(['logs', '-t', 'web'])), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z started\n$/);
  // a follower of the log ends when the container does
  const following = docker(['logs', '-f', 'web']);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await ok(['stop', '-t', '1', 'web']);
  const followed = await following;
  assert.equal(followed.code, 0, followed.stderr);
  assert.equal(followed.stdout, 'started\n');
  assert.equal((await ok(['inspect', '--format', '{{.State.Status}}', 'web'])).trim(), 'exited');
  assert.match(await ok(['ps', '-a', '--format', '{{.Names}} {{.Status}}']), /^web Exited \(\d+\)/m);
  await ok(['start', 'web']);
  assert.equal((await ok(['inspect', '--format', '{{.State.Running}}', 'web'])).trim(), 'true');
  const started = (await ok(['inspect', '--format', '{{.State.StartedAt}}', 'web'])).trim();
  await ok(['restart', '-t', '1', 'web']);
  assert.equal((await ok(['inspect', '--format', '{{.State.Running}}', 'web'])).trim(), 'true');
  assert.notEqual((await ok(['inspect', '--format', '{{.State.StartedAt}}', 'web'])).trim(), started, 'restarted');
  const rm = await docker(['rm', 'web']);
  assert.notEqual(rm.code, 0, 'a running container is not removed without --force');
  assert.match(rm.stderr, /Error response from daemon: .*running/);
  await ok(['kill', 'web']);
  await until('the killed container to exit', async () => (await ok(['inspect', '--format', '{{.State.Status}}', 'web'])).trim() === 'exited');
  assert.equal((await ok(['inspect', '--format', '{{.State.ExitCode}}', 'web'])).trim(), '137');
  const again = await docker(['kill', 'web']);
  assert.match(again.stderr, /Error response from daemon: .*not running/);
  await ok(['rm', 'web']);
  assert.equal((await ok(['ps', '-a', '-q'])).trim(), '');
});

test('docker exec -it under a terminal gives the process that terminal, resized to the client\'s', async (t) => {
  await ok(['run', '-d', '--name', 'termed', '--network', 'none', 'busybox', 'sleep', '300']);
  t.after(async () => void (await docker(['rm', '-f', 'termed'])));
  // script(1) gives the client a pty of its own, sized by stty first; the client resizes the exec once it runs
  const line = `stty cols 91 rows 27; ${DOCKER} exec -it termed sh -c 'sleep 1; stty size; exit 6'`;
  const r = await new Promise<Result>((resolve) => {
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.join(home, 'root'), DOCKER_HOST: `unix://${engineSocket}` };
    const child = spawn('script', ['-qec', line, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end();
  });
  assert.equal(r.code, 6, r.stderr + r.stdout);
  assert.match(r.stdout, /27 91\r?\n/);
});

test('a missing container is a 404 and an unsupported field a 400, printed as the docker CLI prints them', async () => {
  const missing = await docker(['stop', 'nosuch']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /Error response from daemon: no such container: nosuch/i);
  const logs = await docker(['logs', 'nosuch']);
  assert.notEqual(logs.code, 0);
  assert.match(logs.stderr, /No such container: nosuch/i);
  const restart = await docker(['run', '--restart', 'always', '--network', 'none', 'busybox', 'true']);
  assert.equal(restart.code, 125);
  assert.match(restart.stderr, /Error response from daemon: Capsa does not support HostConfig\.RestartPolicy/);
  const volume = await docker(['run', '--rm', '-v', '/data', '--network', 'none', 'busybox', 'true']);
  assert.equal(volume.code, 125);
  assert.match(volume.stderr, /Capsa does not support Volumes/);
  assert.equal((await ok(['ps', '-a', '-q'])).trim(), '', 'nothing was created by a refused request');
});

test('a user reaches its own containers through the docker CLI, never root’s', async (t) => {
  const user = createUser(t);
  await userHome(user);
  const rootId = (await ok(['run', '-d', '--name', 'roots', '--network', 'none', 'busybox', 'sleep', '300'])).trim();
  t.after(async () => void (await docker(['rm', '-f', rootId])));

  // the user's own pull: names are per user
  const run = await docker(['run', '--rm', '--network', 'none', 'busybox', 'sh', '-c', 'echo as user; exit 2'], { user });
  assert.equal(run.code, 2, run.stderr);
  assert.equal(run.stdout, 'as user\n');
  const mine = (await ok(['run', '-d', '--name', 'mine', '--network', 'none', 'busybox', 'sleep', '300'], { user })).trim();
  const seen = (await ok(['ps', '-a', '-q', '--no-trunc'], { user })).trim().split('\n');
  assert.deepEqual(seen, [mine], 'the user lists its own container only');
  const exec = await docker(['exec', 'mine', 'id', '-u'], { user });
  assert.equal(exec.stdout.trim(), '0', 'root inside its own user namespace');

  for (const args of [['inspect', rootId], ['stop', rootId], ['logs', 'roots'], ['exec', 'roots', 'true'], ['rm', 'roots'], ['kill', 'roots']]) {
    const r = await docker(args, { user });
    assert.notEqual(r.code, 0, `docker ${args.join(' ')} as a user`);
    assert.match(r.stderr, /no such (container|object)/i, `docker ${args.join(' ')}: ${r.stderr}`);
  }
  const privileged = await docker(['run', '--rm', '--privileged', '--network', 'none', 'busybox', 'true'], { user });
  assert.equal(privileged.code, 125);
  assert.match(privileged.stderr, /Error response from daemon: .*privileged/i);
  const rootStopped = (await ok(['create', '--network', 'none', 'busybox', 'true'])).trim();
  t.after(async () => void (await docker(['rm', '-f', rootStopped])));
  await ok(['container', 'prune', '-f'], { user });
  assert.equal((await ok(['inspect', '--format', '{{.State.Status}}', rootStopped])).trim(), 'created', "a user's prune leaves root's stopped container");
  assert.equal((await ok(['inspect', '--format', '{{.State.Running}}', rootId])).trim(), 'true', "root's container is untouched");
  // root sees every user's
  assert.match(await ok(['ps', '-q', '--no-trunc']), new RegExp(mine));
  await ok(['rm', '-f', 'mine'], { user });
});

test('hostile requests are refused with Docker errors and the helper goes on serving', async () => {
  const pid = h.process.pid;
  await ok(['pull', '-q', 'busybox']);
  const fds = async (): Promise<number> => (await fs.readdir(`/proc/${pid}/fd`)).length;
  const before = await fds();

  const bad = await request('POST', '/v1.41/containers/create', '{"Image": "busybox", ');
  assert.equal(bad.status, 400);
  assert.match(JSON.parse(bad.body).message, /not valid JSON/);

  const notObject = await request('POST', '/containers/create', '[1, 2]');
  assert.equal(notObject.status, 400);

  const unknown = await request('GET', '/v1.41/nothing/here');
  assert.equal(unknown.status, 404);
  assert.deepEqual(JSON.parse(unknown.body), { message: 'page not found' });

  const tooNew = await request('GET', '/v9.99/_ping');
  assert.equal(tooNew.status, 400);
  assert.match(JSON.parse(tooNew.body).message, /too new/);

  // names that would be paths: refused by the same checks as the protocol's
  const dots = await request('POST', `/containers/create?name=${encodeURIComponent('../../etc')}`, JSON.stringify({ Image: 'busybox' }));
  assert.equal(dots.status, 400, dots.body);
  const imageDots = await request('GET', `/images/${encodeURIComponent('../../../etc/passwd')}/json`);
  assert.ok([400, 404].includes(imageDots.status), imageDots.body);
  assert.ok(JSON.parse(imageDots.body).message);

  const badQuery = await request('GET', `/containers/json?filters=${encodeURIComponent('{"bogus": ["x"]}')}`);
  assert.equal(badQuery.status, 400);

  // a body far past the limit: refused by its declared length, the connection closed after the answer
  const huge = await rawExchange(`POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${64 * 1024 * 1024}\r\n\r\n{"Image":"`, Buffer.alloc(1024 * 1024, 0x61));
  assert.match(huge, /^HTTP\/1\.1 413 /);
  // the same without a declared length (chunked): cut once it passes the limit
  const chunked = await rawExchange('POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', chunkedBody(20 * 1024 * 1024));
  assert.match(chunked, /^HTTP\/1\.1 413 /);

  // a body that ends before its declared length: the client goes away; nothing is created
  await rawExchange('POST /containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Image": "busy', undefined, true);

  // a hijack on an endpoint that has none, and a hijacked attach to a missing container
  const hijack = await rawExchange('POST /containers/json HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n');
  assert.match(hijack, /^HTTP\/1\.1 (400|404) /);
  const attach = await rawExchange('POST /containers/nosuch/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n');
  assert.match(attach, /^HTTP\/1\.1 404 [\s\S]*no such container/);

  // malformed request line and oversized headers: Node's parser refuses them
  assert.match(await rawExchange('NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400 /);
  assert.match(await rawExchange(`GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(128 * 1024)}\r\n\r\n`), /^HTTP\/1\.1 431 /);

  // input on an attachment after its AutoRemove container is gone: dropped, never thrown in a socket event
  const created = await request('POST', '/containers/create', JSON.stringify({ Image: 'busybox', Cmd: ['true'], OpenStdin: true, HostConfig: { AutoRemove: true, NetworkMode: 'none' } }));
  assert.equal(created.status, 201, created.body);
  const cid = JSON.parse(created.body).Id as string;
  const attached = net.connect(engineSocket);
  attached.on('error', () => undefined);
  attached.on('data', () => undefined);
  await new Promise((resolve) => attached.once('connect', resolve));
  attached.write(`POST /containers/${cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`);
  const waited = request('POST', `/containers/${cid}/wait?condition=removed`);
  assert.equal((await request('POST', `/containers/${cid}/start`)).status, 204);
  assert.equal(JSON.parse((await waited).body).StatusCode, 0);
  attached.write('late input\n');
  attached.end();
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal((await request('GET', '/_ping')).status, 200, 'the helper survived input for a removed container');
  attached.destroy();

  // many connections at once, each left open: more than the ceiling are dropped at accept, the rest served
  const sockets = await Promise.all(
    Array.from({ length: 600 }, () =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect(engineSocket);
        s.on('error', () => undefined);
        s.once('connect', () => resolve(s));
        s.once('close', () => resolve(s));
      }),
    ),
  );
  for (const s of sockets) s.destroy();
  await until('the connections to be closed on the helper side', async () => (await fds()) <= before + 8, 15_000);

  assert.equal((await ok(['ps', '-a', '-q'])).trim(), '', 'no refused request made a container');
  await helperServes(pid);
});

test('an attached client that stops reading is dropped, the container goes on and the helper stays bounded', async () => {
  const pid = h.process.pid;
  const rss = async (): Promise<number> => Number(/VmRSS:\s+(\d+)/.exec(await fs.readFile(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const total = 96 * 1024 * 1024;
  const id = (await ok(['run', '-d', '--network', 'none', 'busybox', 'sh', '-c', `sleep 1; head -c ${total} /dev/zero | tr '\\0' x; touch /done; exec sleep 300`])).trim();
  const before = await rss();
  // attached, and never read: the socket is not flowing until someone listens for data
  const s = net.connect(engineSocket);
  s.on('error', () => undefined);
  await new Promise((resolve) => s.once('connect', resolve));
  s.write(`POST /containers/${id}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`);
  await until('the container to write its output', async () => (await docker(['exec', id, 'test', '-e', '/done'])).code === 0, 60_000);
  const grown = (await rss()) - before;
  assert.ok(grown < 48 * 1024 * 1024, `the helper grew by ${grown} bytes while a client held ${total} unread`);
  // the helper dropped the connection: reading it now ends well before the whole output
  let read = 0;
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  s.on('data', (d: Buffer) => (read += d.length));
  await closed;
  assert.ok(read < total, `read ${read} of ${total} bytes: the connection was dropped`);
  assert.equal((await ok(['inspect', '--format', '{{.State.Running}}', id])).trim(), 'true', 'the container went on');
  await ok(['rm', '-f', id]);
  await helperServes(pid);
});

/** Writes `head` (then `body`) on a fresh connection; the answer read until the server closes it, or until one response arrived. */
function rawExchange(head: string, body?: Buffer, hangUp = false): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(engineSocket);
    let text = '';
    const done = (): void => {
      s.destroy();
      resolve(text);
    };
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      // one whole answer: its headers and its Content-Length of body
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) done();
    });
    s.on('error', () => done());
    s.on('close', () => done());
    s.write(head);
    if (body) s.write(body);
    if (hangUp) setTimeout(done, 200);
    setTimeout(done, 10_000);
  });
}

/** `total` bytes of a JSON string as chunked transfer encoding, never terminated. */
function chunkedBody(total: number): Buffer {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const parts: Buffer[] = [Buffer.from(`a\r\n{"Image":"\r\n`)];
  for (let n = 0; n < total; n += chunk.length) parts.push(Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n'));
  return Buffer.concat(parts);
}
