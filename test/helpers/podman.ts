/**
 * Debian's podman as an oracle, with storage of its own under a temporary
 * directory (overlay, its own --root/--runroot) and a registries.conf that
 * names only the test's loopback registry, so it never reaches the network
 * and nothing of the machine's podman is touched.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const hasPodman = spawnSync('podman', ['--version']).status === 0;

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeout = 300_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export interface PodmanSandbox {
  /** Global flags that point podman at the sandbox's storage. */
  args: string[];
  env: NodeJS.ProcessEnv;
  podman(args: string[], timeout?: number): Promise<RunResult>;
  /** podman's own reset (it unmounts and removes its overlay layers); the directory itself stays the caller's. */
  reset(): void;
}

/** A podman whose storage and configuration live in `work` (a directory of the test's), speaking to `registryHost` over plain HTTP. */
export function podmanSandbox(work: string, registryHost: string): PodmanSandbox {
  const conf = path.join(work, 'registries.conf');
  fs.writeFileSync(conf, `unqualified-search-registries = []\n[[registry]]\nlocation = "${registryHost}"\ninsecure = true\n`);
  fs.writeFileSync(path.join(work, 'storage.conf'), `[storage]\ndriver = "overlay"\nrunroot = "${work}/run"\ngraphroot = "${work}/root"\n`);
  const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: conf, CONTAINERS_STORAGE_CONF: path.join(work, 'storage.conf') };
  const args = ['--root', path.join(work, 'root'), '--runroot', path.join(work, 'run'), '--storage-driver', 'overlay', '--cgroup-manager', 'cgroupfs'];
  return {
    args,
    env,
    podman: (a, timeout) => run('podman', [...args, ...a], env, timeout),
    reset: () => void spawnSync('podman', [...args, 'system', 'reset', '--force'], { env, stdio: 'ignore' }),
  };
}
