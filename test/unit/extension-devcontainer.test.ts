import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { DevcontainerError, defaultConfig, findDevcontainerFile, loadDevcontainer, mountToVolume, parseDevcontainer, workspaceIdmap, workspaceImageName } from '../../extension/devcontainer';
import { describeStep } from '../../extension/workspaceBuild';

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
  ['compose', '{"dockerComposeFile": "compose.yml", "service": "app"}', /dockerComposeFile is not supported/],
  ['build without a dockerfile', '{"build": {"context": ".."}}', /build needs "dockerfile"/],
  ['build args not strings', '{"build": {"dockerfile": "D", "args": {"N": 1}}}', /build.args.N must be a string/],
  ['a build option Capsa lacks', '{"build": {"dockerfile": "D", "options": ["--network=host"]}}', /build.options: "--network=host" is not a flag Capsa's build supports \(it supports --build-arg/],
  ['a build option without its value', '{"build": {"dockerfile": "D", "options": ["--target"]}}', /build.options: --target needs a value/],
  ['cacheFrom not strings', '{"build": {"dockerfile": "D", "cacheFrom": [1]}}', /build.cacheFrom must be a string or a list of strings/],
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

test('build: dockerfile and context relative to the devcontainer.json folder (context "." by default), args substituted, target, options mapped; the image is the workspace\'s vsc- name', () => {
  const c = parseDevcontainer(
    JSON.stringify({
      build: {
        dockerfile: 'Dockerfile.dev',
        args: { USER_HOME: '${localEnv:HOME}', WS: '${localWorkspaceFolderBasename}', MISSING: '${localEnv:NOPE:fallback}' },
        target: 'dev',
        cacheFrom: 'ghcr.io/o/cache:latest',
        options: ['--build-arg', 'EXTRA=1', '--label=team=a', '--pull', '--no-cache', '-t', 'mine:dev', '--platform=linux/amd64', '--progress', 'plain'],
      },
    }),
    FILE,
    ws,
  );
  assert.equal(c.image, workspaceImageName('/home/u/proj'));
  assert.deepEqual(c.build, {
    dockerfile: '/home/u/proj/.devcontainer/Dockerfile.dev',
    context: '/home/u/proj/.devcontainer',
    args: { USER_HOME: '/home/u', WS: 'proj', MISSING: 'fallback', EXTRA: '1' },
    target: 'dev',
    noCache: true,
    pull: true,
    platform: 'linux/amd64',
    labels: { team: 'a' },
    tags: ['mine:dev'],
  });
  assert.deepEqual(c.unsupported, ["build.cacheFrom (Capsa's builder uses its own cache on this machine)"], 'cacheFrom is reported once as a no-op');
});

test('legacy dockerFile and context are read as build.dockerfile and build.context; an image config has no build', () => {
  const c = parseDevcontainer('{"dockerFile": "../docker/Dockerfile", "context": ".."}', FILE, ws);
  assert.equal(c.build?.dockerfile, '/home/u/proj/docker/Dockerfile');
  assert.equal(c.build?.context, '/home/u/proj');
  assert.equal(parseDevcontainer('{"image": "busybox"}', FILE, ws).build, undefined);
});

test('the workspace image is named as @devcontainers/cli names it: vsc-<folder>-<md5 of the path>, a valid repository name', () => {
  assert.equal(workspaceImageName('/home/u/proj'), 'vsc-proj-' + createHash('md5').update('/home/u/proj').digest('hex'));
  assert.match(workspaceImageName('/home/u/My Project!'), /^vsc-myproject-[0-9a-f]{32}$/);
  assert.match(workspaceImageName('/srv/__x..y'), /^vsc-__x.y-[0-9a-f]{32}$/);
});

test('build steps read as the classic builder prints them, the failing step named', () => {
  const steps = new Map<number, string>();
  assert.equal(describeStep({ kind: 'start', step: 2, total: 3, stage: '', pos: 2, count: 3, instruction: 'RUN make' }, steps), 'Step 2/3 : RUN make\n');
  assert.equal(describeStep({ kind: 'output', step: 2, text: 'cc -o x\n\u001b[31m' }, steps), 'cc -o x\n\\x1b[31m');
  assert.equal(describeStep({ kind: 'cached', step: 2 }, steps), ' ---> Using cache\n');
  assert.equal(describeStep({ kind: 'done', step: 2, id: 'sha256:0123456789abcdef', ms: 3 }, steps), ' ---> 0123456789ab\n');
  assert.equal(describeStep({ kind: 'failed', step: 2, message: 'exit code 2', ms: 3 }, steps), 'Step 2/3 : RUN make failed: exit code 2\n');
});
