import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { engineSocketPath, loadConfig, socketGroupId } from '../../server/config';

test('defaults apply when no config file exists', () => {
  const c = loadConfig({ CAPSA_CONFIG: undefined } as NodeJS.ProcessEnv);
  assert.equal(c.root, '/var/lib/capsa');
  assert.equal(c.socket, '/run/capsa/capsa.sock');
});

test('CAPSA_REGISTRY_MIRROR accepts host=url pairs and a bare URL for docker.io', () => {
  const c = loadConfig({ CAPSA_REGISTRY_MIRROR: 'http://127.0.0.1:5757/, ghcr.io=https://mirror.local', CAPSA_INSECURE_REGISTRIES: 'reg.local:5000' } as NodeJS.ProcessEnv);
  assert.deepEqual(c.registries.mirrors['docker.io'], ['http://127.0.0.1:5757']);
  assert.deepEqual(c.registries.mirrors['ghcr.io'], ['https://mirror.local']);
  assert.deepEqual(c.registries.insecure, ['reg.local:5000']);
});

test('broken config files and values give errors naming the file and key', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  const cases: Array<[string, RegExp]> = [
    ['{', /not valid JSON/],
    ['[]', /must be a JSON object/],
    ['{"root": 3}', /root must be a non-empty string/],
    ['{"maxConcurrentDownloads": 0}', /maxConcurrentDownloads/],
    ['{"registries": {"mirrors": {"docker.io": "x"}}}', /must be a list of URLs/],
    ['{"registries": {"mirrors": {"docker.io": ["ftp://x"]}}}', /must be an http or https URL/],
  ];
  for (const [text, err] of cases) {
    writeFileSync(file, text);
    assert.throws(() => loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv), err, text);
  }
  assert.throws(() => loadConfig({ CAPSA_CONFIG: path.join(dir, 'missing.json') } as NodeJS.ProcessEnv), /cannot read config/);
  assert.throws(() => loadConfig({ CAPSA_REGISTRY_MIRROR: 'not a url' } as NodeJS.ProcessEnv), /is not a URL/);
});

test('credentials: username/password or base64 auth per registry host, hub aliases folded into docker.io', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  writeFileSync(
    file,
    JSON.stringify({
      credentials: {
        '127.0.0.1:5000': { username: 'alice', password: 's3cret:with:colons' },
        'https://index.docker.io/v1/': { auth: Buffer.from('bob:hunter2').toString('base64') },
        'GHCR.io': { username: 'carol', password: '' },
      },
    }),
  );
  const c = loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv);
  assert.deepEqual(c.credentials, {
    '127.0.0.1:5000': { username: 'alice', password: 's3cret:with:colons' },
    'docker.io': { username: 'bob', password: 'hunter2' },
    'ghcr.io': { username: 'carol', password: '' },
  });
  writeFileSync(file, '{}');
  assert.deepEqual(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).credentials, {}, 'none by default');
});

test('invalid credentials are refused naming the host and field, never the secret', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  const cases: Array<[unknown, RegExp]> = [
    [[], /credentials must be an object keyed by registry host/],
    [{ 'reg.local': 'TOPSECRET' }, /credentials\.reg\.local must be an object/],
    [{ 'reg.local': { username: 'u' } }, /credentials\.reg\.local\.password must be a string/],
    [{ 'reg.local': { password: 'TOPSECRET' } }, /credentials\.reg\.local\.username must be a non-empty string/],
    [{ 'reg.local': { auth: Buffer.from('TOPSECRET').toString('base64') } }, /credentials\.reg\.local\.auth must be base64 of "username:password"/],
    [{ 'reg.local': { auth: '!!TOPSECRET!!' } }, /auth must be base64/],
    [{ 'not a host!': { username: 'u', password: 'TOPSECRET' } }, /is not a registry host/],
  ];
  for (const [credentials, err] of cases) {
    writeFileSync(file, JSON.stringify({ credentials }));
    assert.throws(() => loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv), (e: Error) => {
      assert.match(e.message, err);
      assert.doesNotMatch(e.message, /TOPSECRET|VE9QU0VDUkVU/);
      return true;
    });
  }
});

test('network: bridge and subnet of the default network from the file, the env vars winning; bad values refused naming the key', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  assert.deepEqual(loadConfig({ CAPSA_CONFIG: undefined } as NodeJS.ProcessEnv).network, { bridge: 'capsa0', subnet: '10.88.0.0/16' });
  writeFileSync(file, JSON.stringify({ network: { bridge: 'dev0', subnet: '172.30.0.0/24' } }));
  assert.deepEqual(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).network, { bridge: 'dev0', subnet: '172.30.0.0/24' });
  writeFileSync(file, JSON.stringify({ network: { subnet: '172.30.0.0/24' } }));
  assert.deepEqual(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).network, { bridge: 'capsa0', subnet: '172.30.0.0/24' });
  assert.deepEqual(loadConfig({ CAPSA_CONFIG: file, CAPSA_BRIDGE: 'env0', CAPSA_BRIDGE_SUBNET: '10.77.0.0/16' } as NodeJS.ProcessEnv).network, { bridge: 'env0', subnet: '10.77.0.0/16' });
  const cases: Array<[unknown, RegExp]> = [
    ['capsa0', /network must be an object/],
    [{ bridge: 'a-very-long-bridge-name' }, /network\.bridge: invalid bridge name "a-very-long-bridge-name"/],
    [{ bridge: 'br/0' }, /network\.bridge: invalid bridge name/],
    [{ bridge: '' }, /network\.bridge must be a non-empty string/],
    [{ subnet: '10.88.0.1/16' }, /network\.subnet: invalid subnet 10\.88\.0\.1\/16: host bits are set/],
    [{ subnet: '10.0.0.0/31' }, /network\.subnet: invalid subnet 10\.0\.0\.0\/31: the prefix length must be between 8 and 30/],
    [{ subnet: 'fd00::/64' }, /network\.subnet: invalid subnet/],
    [{ bridge: 'x', mtu: 1400 }, /unknown key network\.mtu/],
  ];
  for (const [network, err] of cases) {
    writeFileSync(file, JSON.stringify({ network }));
    assert.throws(() => loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv), err, JSON.stringify(network));
  }
  assert.throws(() => loadConfig({ CAPSA_CONFIG: undefined, CAPSA_BRIDGE_SUBNET: '10.88.0.0' } as NodeJS.ProcessEnv), /CAPSA_BRIDGE_SUBNET: invalid subnet/);
});

test('the socket is open to every local user by default (0666, group root); socketMode and socketGroup come from the file or the environment', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'c.json');
  const d = loadConfig({ CAPSA_CONFIG: undefined } as NodeJS.ProcessEnv);
  assert.equal(d.socketMode, 0o666);
  assert.equal(d.socketGroup, '0');
  writeFileSync(file, '{"socketMode": "0660", "socketGroup": "capsa"}');
  const f = loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv);
  assert.equal(f.socketMode, 0o660);
  assert.equal(f.socketGroup, 'capsa');
  writeFileSync(file, '{"socketMode": 384, "socketGroup": 1234}');
  assert.equal(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).socketMode, 0o600);
  assert.equal(loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv).socketGroup, '1234');
  const e = loadConfig({ CAPSA_CONFIG: file, CAPSA_SOCKET_MODE: '640', CAPSA_SOCKET_GROUP: 'dev' } as NodeJS.ProcessEnv);
  assert.equal(e.socketMode, 0o640);
  assert.equal(e.socketGroup, 'dev');
  for (const bad of ['0888', '1777', 'rw', '-1']) assert.throws(() => loadConfig({ CAPSA_CONFIG: undefined, CAPSA_SOCKET_MODE: bad } as NodeJS.ProcessEnv), /CAPSA_SOCKET_MODE: expected permission bits/);
  writeFileSync(file, '{"socketGroup": "a b"}');
  assert.throws(() => loadConfig({ CAPSA_CONFIG: file } as NodeJS.ProcessEnv), /socketGroup: expected a group name or a numeric gid/);
});

test('socketGroupId takes a gid as it is and looks a name up in /etc/group', () => {
  const groups = 'root:x:0:\ndev:x:1234:alice,bob\n';
  assert.equal(socketGroupId('0', groups), 0);
  assert.equal(socketGroupId('4321', groups), 4321);
  assert.equal(socketGroupId('dev', groups), 1234);
  assert.throws(() => socketGroupId('nobody-here', groups), /no such group in \/etc\/group/);
});

test('the Engine API socket is docker.sock beside the helper socket unless configured, and "" turns it off', () => {
  const none = path.join(tmpdir(), 'capsa-no-such-config.json');
  const base = { CAPSA_CONFIG: none, CAPSA_SOCKET: '/run/x/capsa.sock' };
  assert.throws(() => loadConfig(base), /cannot read config/);
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-config-'));
  try {
    const file = path.join(dir, 'config.json');
    writeFileSync(file, '{}');
    assert.equal(engineSocketPath(loadConfig({ ...base, CAPSA_CONFIG: file })), '/run/x/docker.sock');
    assert.equal(engineSocketPath(loadConfig({ ...base, CAPSA_CONFIG: file, CAPSA_ENGINE_SOCKET: '/run/e.sock' })), '/run/e.sock');
    assert.equal(engineSocketPath(loadConfig({ ...base, CAPSA_CONFIG: file, CAPSA_ENGINE_SOCKET: '' })), undefined);
    assert.throws(() => loadConfig({ ...base, CAPSA_CONFIG: file, CAPSA_ENGINE_SOCKET: 'relative.sock' }), /CAPSA_ENGINE_SOCKET must be an absolute socket path/);
    writeFileSync(file, JSON.stringify({ engineSocket: '/srv/docker.sock' }));
    assert.equal(engineSocketPath(loadConfig({ ...base, CAPSA_CONFIG: file })), '/srv/docker.sock');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
