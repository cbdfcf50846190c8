/**
 * `capsa login`, `logout`, `pull` and `push` run as created users against a
 * helper started as root: credentials are checked by the helper, stored in
 * the user's own Docker config (the user's file, 0600) or credential helper,
 * sent with that user's pulls and pushes only; root's configured
 * credentials never serve a user. A push ends when its client goes away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLI, connectProtocol, startHelper, until, type TestHelper } from '../helpers/capsa';
import { ImagePushRequest } from '../../server/protocol';
import { startFaultProxy, startRegistry, type TestRegistry } from '../helpers/registry';
import { seedBusybox, type PushedImage } from '../helpers/oci';
import { asUser, createUser, type TestUser } from '../helpers/users';

interface Ctx {
  after: (fn: () => Promise<void> | void) => void;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

const CREDS = { user: 'alice', password: 'h7passw-s3cret' };

async function setup(t: Ctx): Promise<{ h: TestHelper; reg: TestRegistry; busybox: PushedImage; userEnv: string }> {
  // root's configured credentials are the very ones the users log in with: still never lent to a user
  const reg = await startRegistry({ htpasswd: CREDS });
  t.after(() => reg.stop());
  const busybox = await seedBusybox({ url: reg.url, auth: CREDS });
  const h = await startHelper({ env: { CAPSA_SOCKET_MODE: '0666' }, config: { credentials: { [reg.host]: { username: CREDS.user, password: CREDS.password } } } });
  t.after(() => h.stop());
  fs.chmodSync(h.dir, 0o711);
  fs.chmodSync(h.env.CAPSA_CONFIG!, 0o600); // root's credentials are root's to read
  // what the users' CLIs read: the socket only
  const userEnv = path.join(h.dir, 'user-config.json');
  fs.writeFileSync(userEnv, JSON.stringify({ socket: h.socket }), { mode: 0o644 });
  return { h, reg, busybox, userEnv };
}

/** A Docker config directory of the user's own, 0700. */
function dockerDir(t: Ctx, user: TestUser, initial?: object): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-dockercfg-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  if (initial) fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(initial), { mode: 0o600 });
  for (const p of [dir, ...(initial ? [path.join(dir, 'config.json')] : [])]) fs.chownSync(p, user.uid, user.gid);
  return dir;
}

function capsaAs(user: TestUser, userEnv: string, dir: string, args: string[], input?: string, extraPath?: string): Promise<Run> {
  const argv = asUser(user, [CLI, ...args]);
  return new Promise((resolve) => {
    const child = execFile(argv[0], argv.slice(1), {
      env: { PATH: `${extraPath ? `${extraPath}:` : ''}${process.env.PATH}`, CAPSA_CONFIG: userEnv, CAPSA_AUTOSTART: '0', DOCKER_CONFIG: dir, HOME: '/nonexistent' },
      timeout: 60_000,
      maxBuffer: 4 << 20,
    }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}

test("login checks the password at the registry and writes the user's own 0600 config (other keys kept); the user's pull and push then work, another user's pull fails without root's credentials; logout removes the entry", async (t) => {
  const { h, reg, busybox, userEnv } = await setup(t);
  const a = createUser(t);
  const b = createUser(t);
  const aDir = dockerDir(t, a, { detachKeys: 'ctrl-x,x', auths: { 'other.example:5000': { auth: 'eDp5' } } });
  const bDir = dockerDir(t, b);
  const aConfig = path.join(aDir, 'config.json');
  const before = fs.readFileSync(aConfig, 'utf8');
  const image = `${reg.host}/library/busybox:latest`;

  const wrong = await capsaAs(a, userEnv, aDir, ['login', '-u', CREDS.user, '--password-stdin', reg.host], 'not-the-password\n');
  assert.notEqual(wrong.code, 0, wrong.stdout);
  assert.match(wrong.stderr, /login to registry .* refused|username or password/i);
  assert.doesNotMatch(wrong.stderr + wrong.stdout, /not-the-password|h7passw-s3cret/);
  assert.equal(fs.readFileSync(aConfig, 'utf8'), before, 'nothing written on a refused login');

  const bad = await capsaAs(a, userEnv, aDir, ['login', '-u', 'x', '--password-stdin', 'bad host!/x'], 'p\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /invalid registry/);
  const huge = await capsaAs(a, userEnv, aDir, ['login', '-u', 'x', '--password-stdin', reg.host], 'p'.repeat(1 << 20));
  assert.notEqual(huge.code, 0);
  assert.match(huge.stderr, /longer than 16384/);
  assert.equal(fs.readFileSync(aConfig, 'utf8'), before);

  const ok = await capsaAs(a, userEnv, aDir, ['login', '-u', CREDS.user, '-p', CREDS.password, reg.host]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /Login Succeeded/);
  assert.match(ok.stderr, /WARNING! Using --password via the CLI is insecure/);
  const st = fs.statSync(aConfig);
  assert.equal(st.uid, a.uid, "the config is the user's");
  assert.equal(st.mode & 0o777, 0o600);
  const written = JSON.parse(fs.readFileSync(aConfig, 'utf8'));
  assert.equal(written.detachKeys, 'ctrl-x,x', 'other keys kept');
  assert.equal(written.auths['other.example:5000'].auth, 'eDp5');
  assert.equal(Buffer.from(written.auths[reg.host].auth, 'base64').toString(), `${CREDS.user}:${CREDS.password}`);
  assert.deepEqual(fs.readdirSync(aDir).sort(), ['config.json'], 'no temporary file left');

  // a run's implicit pull: refused anonymously, then sent again with the user's own login
  const ran = await capsaAs(a, userEnv, aDir, ['run', '--rm', '--network', 'none', image, 'echo', 'ran']);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(ran.stdout.trim(), 'ran');
  const pulled = await capsaAs(a, userEnv, aDir, ['pull', image]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const pushed = await capsaAs(a, userEnv, aDir, ['push', image]);
  assert.equal(pushed.code, 0, pushed.stderr);
  assert.match(pushed.stdout, /: Layer already exists\n/);
  assert.match(pushed.stdout, new RegExp(`latest: digest: ${busybox.manifestDigest} size: ${busybox.manifest.length}\n`));

  // b never logged in: root's configured credentials (the same user, even) are not lent
  const bPull = await capsaAs(b, userEnv, bDir, ['pull', image]);
  assert.notEqual(bPull.code, 0, bPull.stdout);
  assert.match(bPull.stderr, /authentication required|requires a username and password/);
  const bRun = await capsaAs(b, userEnv, bDir, ['create', image]);
  assert.notEqual(bRun.code, 0, bRun.stdout);
  assert.match(bRun.stderr, /authentication required|requires a username and password/, 'no login, no retry: the refusal as it came');
  const bPush = await capsaAs(b, userEnv, bDir, ['push', image]);
  assert.notEqual(bPush.code, 0);
  assert.match(bPush.stderr, /no image named/, "b has no such name: a's image is a's");

  // root still pulls with its configured credentials
  const rootPull = await h.cli(['pull', image]);
  assert.equal(rootPull.code, 0, rootPull.stderr);

  const out = await capsaAs(a, userEnv, aDir, ['logout', reg.host]);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, new RegExp(`Removing login credentials for ${reg.host.replace(/\./g, '\\.')}`));
  const after = JSON.parse(fs.readFileSync(aConfig, 'utf8'));
  assert.equal(after.auths[reg.host], undefined);
  assert.equal(after.detachKeys, 'ctrl-x,x');
  assert.match((await capsaAs(a, userEnv, aDir, ['logout', reg.host])).stdout, /Not logged in/);
  const again = await capsaAs(a, userEnv, aDir, ['pull', image]);
  assert.notEqual(again.code, 0, 'logged out: the pull is anonymous again');
  assert.equal(h.process.exitCode, null, 'the helper still runs');
});

test('a credsStore credential helper gets the secret (store, get, erase) and the config file only the empty auths entry', async (t) => {
  const { reg, userEnv } = await setup(t);
  const a = createUser(t);
  const aDir = dockerDir(t, a, { credsStore: 'capsatest' });
  // a credential helper of the user's: keeps one JSON per server in its own directory
  const bin = fs.mkdtempSync(path.join(os.tmpdir(), 'capsa-credbin-'));
  t.after(() => fs.rmSync(bin, { recursive: true, force: true }));
  fs.chmodSync(bin, 0o755);
  const store = path.join(aDir, 'store');
  // `store` gets JSON on stdin, `get` and `erase` the server URL (one server here)
  fs.writeFileSync(
    path.join(bin, 'docker-credential-capsatest'),
    `#!/bin/sh\nin=$(cat)\ncase "$1" in\n` +
      `store) printf %s "$in" > "${store}" ;;\n` +
      `get) if [ -f "${store}" ]; then sed 's/"ServerURL":"[^"]*",//' "${store}"; else echo "credentials not found in native keychain"; exit 1; fi ;;\n` +
      `erase) if [ -f "${store}" ]; then rm -f "${store}"; else echo "credentials not found in native keychain"; exit 1; fi ;;\nesac\n`,
    { mode: 0o755 },
  );
  const login = await capsaAs(a, userEnv, aDir, ['login', '-u', CREDS.user, '--password-stdin', reg.host], `${CREDS.password}\n`, bin);
  assert.equal(login.code, 0, login.stderr);
  assert.doesNotMatch(login.stderr, /stored unencrypted/);
  const cfg = JSON.parse(fs.readFileSync(path.join(aDir, 'config.json'), 'utf8'));
  assert.deepEqual(cfg.auths, { [reg.host]: {} });
  assert.equal(cfg.credsStore, 'capsatest');
  assert.equal(JSON.parse(fs.readFileSync(store, 'utf8')).Secret, CREDS.password);
  const pulled = await capsaAs(a, userEnv, aDir, ['pull', `${reg.host}/library/busybox:latest`], undefined, bin);
  assert.equal(pulled.code, 0, pulled.stderr);
  const out = await capsaAs(a, userEnv, aDir, ['logout', reg.host], undefined, bin);
  assert.equal(out.code, 0, out.stderr);
  assert.equal(fs.existsSync(store), false, 'erased from the helper');
});

test('a push whose client goes away is cancelled in the helper: nothing more is sent to the registry, and the helper serves the next push', async (t) => {
  const source = await startRegistry();
  t.after(() => source.stop());
  await seedBusybox(source);
  const target = await startRegistry();
  t.after(() => target.stop());
  // the first HEAD of each blob is told to come back in 3 s: the push waits there when its client leaves
  const proxy = await startFaultProxy(target, { match: /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/, tooManyRequests: 1, retryAfter: 3 });
  t.after(() => proxy.stop());
  const h = await startHelper({ config: { registries: { mirrors: { [proxy.host]: [source.url] } } } });
  t.after(() => h.stop());
  const image = `${proxy.host}/library/busybox:latest`;
  const pulled = await h.cli(['pull', image]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const conn = await connectProtocol(h.socket);
  void conn.sendRequest(ImagePushRequest.type, { reference: image }).catch(() => undefined);
  await until('the push to reach the registry', async () => proxy.count(/^HEAD /) > 0);
  conn.dispose();
  await new Promise((r) => setTimeout(r, 4500));
  assert.equal(proxy.count(/^(POST|PATCH|PUT) /), 0, 'no upload after the client left');
  proxy.setFault({ match: /^$/ });
  const again = await h.cli(['push', image]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /: Pushed\n/);
});
