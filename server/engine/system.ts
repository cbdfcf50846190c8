/**
 * `_ping` (GET and HEAD), `version` and `info`: what the docker CLI asks
 * first, and how it negotiates the API version (the `API-Version` header of
 * the ping: the client then speaks the older of its version and this one).
 */
import * as os from 'node:os';
import { createHash } from 'node:crypto';
import { ContainerListRequest } from '../protocol';
import type { ContainerService } from '../runtime/container';
import type { ImageService } from '../services/images';
import { VERSION } from '../version';
import { answer, sendJson, type EngineRequest } from './http';
import { API_VERSION, MIN_API_VERSION, type Route } from './router';

/** Go's name for this machine's architecture, as Docker reports it. */
function goArch(): string {
  return ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch;
}

function ping(r: EngineRequest): void {
  const res = answer(r);
  res.writeHead(200, {
    'API-Version': API_VERSION,
    'Docker-Experimental': 'false',
    OSType: 'linux',
    'Cache-Control': 'no-cache, no-store, must-revalidate',
    Pragma: 'no-cache',
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': r.req.method === 'HEAD' ? 0 : 2,
  });
  res.end(r.req.method === 'HEAD' ? undefined : 'OK');
}

function version(r: EngineRequest): void {
  const details = {
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    Os: 'linux',
    Arch: goArch(),
    KernelVersion: os.release(),
    // the helper is Node, not Go: this field says which runtime it is
    GoVersion: `node ${process.version}`,
    GitCommit: '',
    BuildTime: '',
    Experimental: 'false',
  };
  sendJson(r, 200, {
    Platform: { Name: `Capsa ${VERSION}` },
    Components: [{ Name: 'Engine', Version: VERSION, Details: details }],
    Version: VERSION,
    ...details,
    Experimental: false,
  });
}

export function systemRoutes(deps: { containers: ContainerService; images: ImageService; root: string }): Route[] {
  const { containers, images, root } = deps;
  const info = async (r: EngineRequest): Promise<void> => {
    // the caller's own containers and images, as every list of theirs
    const own = containers.list(true, r.caller.uid === 0 ? 0 : r.caller.uid);
    const running = own.filter((c) => c.state.state === 'running').length;
    const imageCount = (await images.list(r.caller)).length;
    sendJson(r, 200, {
      ID: createHash('sha256').update(`${os.hostname()}:${root}`).digest('hex').slice(0, 32),
      Containers: own.length,
      ContainersRunning: running,
      ContainersPaused: 0,
      ContainersStopped: own.length - running,
      Images: imageCount,
      Driver: 'overlay',
      DriverStatus: [],
      Plugins: { Volume: ['local'], Network: ['bridge', 'none', 'host'], Authorization: null, Log: ['json-file'] },
      MemoryLimit: true,
      SwapLimit: true,
      CpuCfsPeriod: true,
      CpuCfsQuota: true,
      CPUShares: true,
      CPUSet: false,
      PidsLimit: true,
      IPv4Forwarding: true,
      Debug: false,
      NFd: 0,
      OomKillDisable: false,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'json-file',
      CgroupDriver: 'cgroupfs',
      NEventsListener: 0,
      KernelVersion: os.release(),
      OperatingSystem: `${os.type()} (Capsa ${VERSION})`,
      OSType: 'linux',
      OSVersion: '',
      Architecture: os.machine(),
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: { IndexConfigs: {}, InsecureRegistryCIDRs: [], Mirrors: [] },
      NCPU: os.cpus().length,
      MemTotal: os.totalmem(),
      DockerRootDir: root,
      Name: os.hostname(),
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: VERSION,
      Runtimes: { capsa: { path: 'capsa-shim' } },
      DefaultRuntime: 'capsa',
      Swarm: { NodeID: '', NodeAddr: '', LocalNodeState: 'inactive', ControlAvailable: false, Error: '', RemoteManagers: null },
      LiveRestoreEnabled: true,
      Isolation: '',
      InitBinary: '',
      SecurityOptions: ['name=seccomp,profile=builtin'],
      Warnings: [],
    });
  };
  return [
    { method: 'GET', path: '/_ping', access: null, handle: ping },
    { method: 'GET', path: '/version', access: null, handle: version },
    // counts of the caller's own containers and images: open to whoever may list them
    { method: 'GET', path: '/info', access: ContainerListRequest.method, handle: info },
  ];
}
