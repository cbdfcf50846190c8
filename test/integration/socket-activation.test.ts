/**
 * Starting the helper as a service: under systemd-socket-activate (what
 * systemd does for capsa.socket) the helper serves on the socket it is
 * passed as fd 3 rather than making its own, and leaves that socket in
 * place when it stops. The shipped units pass `systemd-analyze verify`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync, appendFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { HELPER_MAIN, REPO_ROOT, connectProtocol, runCli, until } from '../helpers/capsa';
import { ContainerListRequest, VersionRequest } from '../../server/protocol';

const has = (cmd: string): boolean => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

test('under systemd-socket-activate the helper serves on the socket it was passed, and leaves it when it stops', { skip: !has('systemd-socket-activate') && 'systemd-socket-activate is not installed (Debian package systemd)' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-activate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'capsa.sock');
  const env = { PATH: process.env.PATH, CAPSA_ROOT: path.join(dir, 'root'), CAPSA_CONFIG: path.join(dir, 'config.json'), CAPSA_AUTOSTART: '0' };
  writeFileSync(env.CAPSA_CONFIG, '{}');
  const vars = Object.entries(env).flatMap(([k, v]) => ['-E', `${k}=${v}`]);
  const child = spawn('systemd-socket-activate', ['-l', socket, ...vars, process.execPath, HELPER_MAIN], { stdio: ['ignore', 'ignore', 'pipe'] });
  const logFile = path.join(dir, 'helper.log');
  child.stderr.on('data', (d: Buffer) => appendFileSync(logFile, d));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
  await until('systemd-socket-activate to listen', async () => existsSync(socket));
  const inode = statSync(socket).ino;

  // the first connection starts the helper, which takes the socket as fd 3 in the same process
  const conn = await connectProtocol(socket);
  t.after(() => conn.dispose());
  const version = await conn.sendRequest(VersionRequest.type);
  assert.equal(version.pid, child.pid, 'the activated process is the helper');
  assert.deepEqual(await conn.sendRequest(ContainerListRequest.type, { all: true }), []);
  assert.match(log(), new RegExp(`listening on ${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(passed by systemd\\)`));
  assert.equal(statSync(socket).ino, inode, 'the helper made no socket of its own');
  // what the helper starts (a warm CLI process) is not told it was activated
  await until('a warm CLI process', async () => /warm CLI \d+ started/.test(log()));
  const warmPid = Number(/warm CLI (\d+) started/.exec(log())![1]);
  assert.doesNotMatch(readFileSync(`/proc/${warmPid}/environ`, 'utf8'), /LISTEN_(FDS|PID)=/, 'LISTEN_* not handed on');

  // the warm CLI follows the passed socket's path, and a CLI call goes through
  const ps = await runCli(['ps'], { ...env, CAPSA_SOCKET: socket });
  assert.equal(ps.code, 0, ps.stderr);

  conn.dispose();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  assert.ok(existsSync(socket), "the unit's socket stays for the next activation");
  assert.doesNotMatch(log(), /unhandled rejection|fatal/);
});

test('the shipped units, as install-service.sh writes them, pass systemd-analyze verify', { skip: !has('systemd-analyze') && 'systemd-analyze is not installed' }, (t) => {
  const dest = mkdtempSync(path.join(tmpdir(), 'capsa-units-'));
  t.after(() => rmSync(dest, { recursive: true, force: true }));
  execFileSync(path.join(REPO_ROOT, 'scripts', 'install-service.sh'), ['--dest', dest], { stdio: 'pipe' });
  const service = readFileSync(path.join(dest, 'capsa.service'), 'utf8');
  assert.match(service, new RegExp(`^ExecStart=${process.execPath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} /\\S+/(out/server/main|dist/server)\\.js$`, 'm'));
  assert.doesNotMatch(service, /@[A-Z]+@/, 'every placeholder filled');
  // every local user reaches the socket, as the helper's own default (server/config.ts DEFAULT_SOCKET_MODE): each acts as itself
  assert.match(readFileSync(path.join(dest, 'capsa.socket'), 'utf8'), /^SocketMode=0666$/m);
  let out = '';
  try {
    out = execFileSync('systemd-analyze', ['verify', path.join(dest, 'capsa.socket'), path.join(dest, 'capsa.service')], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    assert.fail(`systemd-analyze verify failed: ${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
  assert.doesNotMatch(out, /capsa\.(socket|service).*(error|invalid|unknown)/i);
});
