import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { DevcontainerError, defaultConfig, findDevcontainerFile, loadDevcontainer, mountToVolume, parseDevcontainer, workspaceIdmap } from '../../extension/devcontainer';

const ws = { folder: '/home/u/proj', defaultImage: 'debian:bookworm-slim', env: { HOME: '/home/u' } };
const FILE = '/home/u/proj/.devcontainer/devcontainer.json';

test('reads the supported keys from JSON with comments and trailing commas', () => {
  const c = parseDevcontainer(
    `// a comment
    {
      "name": "demo",
      /* block comment */
      "image": "127.0.0.1:5757/library/busybox:latest",
      "containerEnv": { "A": "1", "HOMEDIR": "\${localEnv:HOME}", },
      "remoteEnv": { "B": "\${containerWorkspaceFolder}/bin", "DROP": null },
      "mounts": ["source=/data,target=/data,type=bind,readonly", { "source": "/x", "target": "/y", "type": "bind" }],
      "workspaceFolder": "/src",
      "containerUser": "1000",
      "remoteUser": "dev",
      "forwardPorts": [8080, "db:5432"],
      "postCreateCommand": "echo created",
      "postStartCommand": ["echo", "started"],
    }`,
    FILE,
    ws,
  );
  assert.equal(c.image, '127.0.0.1:5757/library/busybox:latest');
  assert.deepEqual(c.containerEnv, ['A=1', 'HOMEDIR=/home/u']);
  assert.deepEqual(c.remoteEnv, ['B=/src/bin']);
  assert.deepEqual(c.mounts, ['/data:/data:ro', '/x:/y']);
  assert.equal(c.workspaceFolder, '/src');
  assert.equal(c.workspaceMount, '/home/u/proj:/src');
  assert.equal(c.containerUser, '1000');
  assert.equal(c.remoteUser, 'dev');
  assert.deepEqual(c.publish, ['8080:8080', '5432:5432']);
  assert.deepEqual(c.postCreateCommand, [['sh', '-c', 'echo created']]);
  assert.deepEqual(c.postStartCommand, [['echo', 'started']]);
  assert.deepEqual(c.unsupported, []);
});

test('defaults: the workspace is bind-mounted at /workspaces/<folder>', () => {
  const c = parseDevcontainer('{}', FILE, ws);
  assert.equal(c.image, 'debian:bookworm-slim');
  assert.equal(c.workspaceFolder, '/workspaces/proj');
  assert.equal(c.workspaceMount, '/home/u/proj:/workspaces/proj');
});

test('reports unsupported keys and runArgs instead of ignoring them silently', () => {
  const c = parseDevcontainer(
    '{"image":"busybox","features":{},"customizations":{},"runArgs":["--cap-add=SYS_PTRACE","-e","X=1","--network=none","--label","k=v"]}',
    FILE,
    ws,
  );
  assert.deepEqual(c.unsupported, ['features', 'customizations', 'runArgs --cap-add=SYS_PTRACE']);
  assert.deepEqual(c.containerEnv, ['X=1']);
  assert.equal(c.network, 'none');
  assert.deepEqual(c.labels, { k: 'v' });
});

test('postCreateCommand as an object runs each command in key order', () => {
  const c = parseDevcontainer('{"image":"b","postCreateCommand":{"a":"echo a","b":["echo","b"]}}', FILE, ws);
  assert.deepEqual(c.postCreateCommand, [['sh', '-c', 'echo a'], ['echo', 'b']]);
});

test('workspaceMount in --mount syntax with variables', () => {
  const c = parseDevcontainer(
    '{"image":"b","workspaceFolder":"/w","workspaceMount":"source=${localWorkspaceFolder},target=${containerWorkspaceFolder},type=bind"}',
    FILE,
    ws,
  );
  assert.equal(c.workspaceMount, '/home/u/proj:/w');
});

const broken: Array<[string, string, RegExp]> = [
  ['unterminated object', '{"image": "busybox"', /invalid JSON at 1:20: CloseBraceExpected/],
  ['missing value', '{\n  "image": \n}', /invalid JSON at 3:1: ValueExpected/],
  ['not an object', '[1,2]', /must contain a JSON object/],
  ['image not a string', '{"image": 3}', /image must be a non-empty string/],
  ['build instead of image', '{"build": {"dockerfile": "Dockerfile"}}', /only "image" is supported/],
  ['relative workspaceFolder', '{"image":"b","workspaceFolder":"src"}', /workspaceFolder must be an absolute path/],
  ['volume mount type', '{"image":"b","mounts":["source=v,target=/v,type=volume"]}', /only type=bind mounts are supported/],
  ['bad port', '{"image":"b","forwardPorts":["http"]}', /forwardPorts\[0\] must be a port number/],
  ['env not strings', '{"image":"b","containerEnv":{"A":1}}', /containerEnv.A must be a string/],
  ['runArgs flag without value', '{"image":"b","runArgs":["-e"]}', /-e needs a value/],
];
for (const [name, text, message] of broken) {
  test(`broken configuration gives a clear error: ${name}`, () => {
    assert.throws(
      () => parseDevcontainer(text, FILE, ws),
      (err: unknown) => err instanceof DevcontainerError && err.message.startsWith(FILE) && message.test(err.message),
    );
  });
}

test('mountToVolume accepts HOST:CTR[:ro] as is and rejects nonsense', () => {
  assert.equal(mountToVolume(FILE, 'm', '/a:/b:ro'), '/a:/b:ro');
  assert.throws(() => mountToVolume(FILE, 'm', 'nonsense'), /expected/);
});

test('finds .devcontainer/devcontainer.json before .devcontainer.json, and falls back to settings', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'capsa-dc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.equal(findDevcontainerFile(dir), undefined);
  assert.equal(loadDevcontainer({ folder: dir, defaultImage: 'alpine' }).image, 'alpine');
  writeFileSync(path.join(dir, '.devcontainer.json'), '{"image":"root-level"}');
  assert.equal(loadDevcontainer({ folder: dir, defaultImage: 'alpine' }).image, 'root-level');
  mkdirSync(path.join(dir, '.devcontainer'));
  writeFileSync(path.join(dir, '.devcontainer', 'devcontainer.json'), '{"image":"in-folder"}');
  assert.equal(loadDevcontainer({ folder: dir, defaultImage: 'alpine' }).image, 'in-folder');
});

test('workspaceIdmap maps the container user to the VS Code user for the workspace bind, unless VS Code is root or the user is a name', () => {
  const base = defaultConfig({ folder: '/home/u/proj', defaultImage: 'busybox' });
  const me = { uid: 1000, gid: 1001 };
  assert.deepEqual(workspaceIdmap(base, me), [{ target: '/workspaces/proj', uid: 1000, gid: 1001, containerUid: 0, containerGid: 0 }]);
  assert.deepEqual(workspaceIdmap({ ...base, remoteUser: '1000' }, me), [{ target: '/workspaces/proj', uid: 1000, gid: 1001, containerUid: 1000, containerGid: 1000 }]);
  assert.deepEqual(workspaceIdmap({ ...base, containerUser: '1000:2000' }, me)?.[0], { target: '/workspaces/proj', uid: 1000, gid: 1001, containerUid: 1000, containerGid: 2000 });
  assert.equal(workspaceIdmap(base, { uid: 0, gid: 0 }), undefined);
  assert.equal(workspaceIdmap(base, undefined), undefined);
  assert.equal(workspaceIdmap({ ...base, remoteUser: 'vscode' }, me), undefined);
  assert.equal(workspaceIdmap({ ...base, workspaceMount: 'myvolume:/workspaces/proj' }, me), undefined);
});
