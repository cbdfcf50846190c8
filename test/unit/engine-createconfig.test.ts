/**
 * The Engine API's create body as Capsa's run options (server/engine/createconfig.ts),
 * and its router's versions and paths (server/engine/router.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isUnset, runOptionsOf, UnsupportedFieldsError } from '../../server/engine/createconfig';
import { compareVersions, Router } from '../../server/engine/router';
import { engineError, EngineRequestError } from '../../server/engine/errors';
import { ConflictError, InvalidArgumentError, PermissionDeniedError } from '../../server/errors';
import { ContainerNotFoundError } from '../../server/runtime/container';

/** What the docker CLI 20.10 sends for `docker run --rm -i busybox echo hi`: every field, most empty. */
const CLI_BODY = {
  Hostname: '', Domainname: '', User: '', AttachStdin: true, AttachStdout: true, AttachStderr: true, Tty: false, OpenStdin: true, StdinOnce: true,
  Env: [], Cmd: ['echo', 'hi'], Image: 'busybox', Volumes: {}, WorkingDir: '', Entrypoint: null, OnBuild: null, Labels: {},
  HostConfig: {
    Binds: null, ContainerIDFile: '', LogConfig: { Type: '', Config: {} }, NetworkMode: 'default', PortBindings: {}, RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
    AutoRemove: true, VolumeDriver: '', VolumesFrom: null, CapAdd: null, CapDrop: null, CgroupnsMode: '', Dns: [], DnsOptions: [], DnsSearch: [], ExtraHosts: null,
    GroupAdd: null, IpcMode: '', Cgroup: '', Links: null, OomScoreAdj: 0, PidMode: '', Privileged: false, PublishAllPorts: false, ReadonlyRootfs: false,
    SecurityOpt: null, UTSMode: '', UsernsMode: '', ShmSize: 0, ConsoleSize: [0, 0], Isolation: '', CpuShares: 0, Memory: 0, NanoCpus: 0, CgroupParent: '',
    BlkioWeight: 0, BlkioWeightDevice: [], Devices: [], DeviceCgroupRules: null, DeviceRequests: null, MemorySwap: 0, MemorySwappiness: -1, OomKillDisable: false,
    PidsLimit: null, Ulimits: null, MaskedPaths: null, ReadonlyPaths: null, Init: null,
  },
  NetworkingConfig: { EndpointsConfig: {} },
};

test('the docker CLI body of a plain run maps to the command, stdin and --rm, every empty field passing', () => {
  assert.deepEqual(runOptionsOf(CLI_BODY, 'web'), { image: 'busybox', pull: 'never', name: 'web', cmd: ['echo', 'hi'], interactive: true, rm: true });
});

test('the fields Capsa supports map to its run options', () => {
  const o = runOptionsOf(
    {
      Image: 'busybox', Env: ['A=1'], Entrypoint: [''], WorkingDir: '/w', User: '1000:1000', Tty: true, Labels: { a: 'b' },
      HostConfig: {
        Binds: ['/src:/dst:ro'], NetworkMode: 'none', Memory: 64 << 20, NanoCpus: 500_000_000, PortBindings: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }] },
        Mounts: [{ Type: 'tmpfs', Target: '/t', TmpfsOptions: { SizeBytes: 1024 } }], Tmpfs: { '/run': 'size=1m' }, ConsoleSize: [24, 80], PidsLimit: 50,
      },
    },
    '/named',
  );
  assert.deepEqual(o, {
    image: 'busybox', pull: 'never', name: 'named', entrypoint: [], env: ['A=1'], workdir: '/w', user: '1000:1000', tty: true, labels: { a: 'b' },
    volumes: ['/src:/dst:ro'], mounts: ['type=tmpfs,target=/t,tmpfs-size=1024'], publish: ['127.0.0.1:8080:80/tcp'], network: 'none', memory: 64 << 20, cpus: 0.5,
    pidsLimit: 50, tmpfs: ['/run:size=1m'], size: { rows: 24, cols: 80 },
  });
});

test('every field set that Capsa cannot honour is named in one refusal', () => {
  const body = { ...CLI_BODY, Volumes: { '/data': {} }, Healthcheck: { Test: ['CMD', 'true'] }, HostConfig: { ...CLI_BODY.HostConfig, RestartPolicy: { Name: 'always', MaximumRetryCount: 0 }, ShmSize: 1 << 20 } };
  assert.throws(() => runOptionsOf(body, undefined), (err: unknown) => {
    assert.ok(err instanceof UnsupportedFieldsError);
    assert.deepEqual(err.names.sort(), ['Healthcheck', 'HostConfig.RestartPolicy', 'HostConfig.ShmSize', 'Volumes']);
    assert.equal(engineError(err).status, 400);
    return true;
  });
});

test('malformed fields are 400s naming the field', () => {
  assert.throws(() => runOptionsOf({ Image: 'busybox', Cmd: [1] }, undefined), /invalid Cmd: expected an array of strings/);
  assert.throws(() => runOptionsOf({ Image: 'busybox', HostConfig: { Memory: 'lots' } }, undefined), /invalid HostConfig\.Memory/);
  assert.throws(() => runOptionsOf({}, undefined), /Config\.Image is required/);
});

test('unset means null, false, zero, empty, and structures of nothing else', () => {
  for (const v of [null, undefined, false, 0, '', [], {}, [0, 0], { Type: '', Config: {} }]) assert.equal(isUnset(v), true, JSON.stringify(v));
  for (const v of [true, 1, 'x', ['a'], { Name: 'always' }]) assert.equal(isUnset(v), false, JSON.stringify(v));
});

test("Capsa's errors map to Docker's status codes", () => {
  assert.equal(engineError(new ContainerNotFoundError('x')).status, 404);
  assert.equal(engineError(new ConflictError('running')).status, 409);
  assert.equal(engineError(new InvalidArgumentError('bad')).status, 400);
  assert.equal(engineError(new PermissionDeniedError('no')).status, 403);
  assert.equal(engineError(new EngineRequestError(413, 'big')).status, 413);
  assert.deepEqual(engineError(new Error('boom')), { status: 500, message: 'internal error: boom' });
});

test('the router serves versioned and unversioned paths, names across slashes, and refuses versions outside its range', () => {
  const handle = (): void => undefined;
  const router = new Router([
    { method: 'GET', path: '/images/json', access: null, handle },
    { method: 'GET', path: '/images/{name*}/json', access: null, handle },
    { method: 'POST', path: '/containers/{id}/start', access: null, handle },
  ]);
  assert.equal(router.match('GET', '/images/json').route.path, '/images/json');
  const m = router.match('GET', '/v1.41/images/127.0.0.1:5000/a/b:1/json');
  assert.deepEqual([m.route.path, m.params, m.version], ['/images/{name*}/json', { name: '127.0.0.1:5000/a/b:1' }, '1.41']);
  assert.deepEqual(router.match('HEAD', '/images/json').route.method, 'GET');
  assert.deepEqual(router.match('POST', '/containers/a%20b/start').params, { id: 'a b' });
  assert.throws(() => router.match('GET', '/containers/x/start'), (e: unknown) => e instanceof EngineRequestError && e.status === 404);
  assert.throws(() => router.match('GET', '/v1.99/images/json'), /too new/);
  assert.throws(() => router.match('GET', '/v1.10/images/json'), /too old/);
  assert.throws(() => router.match('POST', '/containers/%E0%A4%A/start'), /percent-encoding/);
  assert.equal(compareVersions('1.9', '1.41'), -1);
});
