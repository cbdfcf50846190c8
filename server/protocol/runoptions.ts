/**
 * The checks of run options that the CLI makes before it sends a request
 * and the helper makes again when it gets one (a client need not be ours):
 * declared once, so that both refuse the same values with the same words.
 * Each returns why the value is refused, or undefined; the caller throws its
 * own typed error with that text (the protocol imports nothing of the helper).
 */
import type { PullPolicy, RunOptions } from './types';

export const PULL_POLICIES: readonly PullPolicy[] = ['always', 'missing', 'never'];

/** Why `pull` is not a pull policy, or undefined when it is one. */
export function pullPolicyProblem(pull: unknown): string | undefined {
  return (PULL_POLICIES as readonly unknown[]).includes(pull) ? undefined : `invalid pull policy ${JSON.stringify(pull)}: expected ${PULL_POLICIES.slice(0, -1).join(', ')} or ${PULL_POLICIES.at(-1)}`;
}

export const USERNS_MODES: readonly NonNullable<RunOptions['userns']>[] = ['host', 'auto'];

/** Why `userns` is not a user-namespace mode (`--userns`), or undefined when it is one. */
export function usernsProblem(userns: unknown): string | undefined {
  return (USERNS_MODES as readonly unknown[]).includes(userns) ? undefined : `invalid --userns ${JSON.stringify(userns)}: expected ${USERNS_MODES.join(' or ')}`;
}

/** `--device` as Docker's client splits it: the host's node, where it appears, and its cgroup permissions. */
export interface DeviceMapping {
  PathOnHost: string;
  PathInContainer: string;
  /** Letters of `rwm`, each at most once (read, write, mknod). */
  CgroupPermissions: string;
}

/** Longest `--device` value taken: a path of PATH_MAX twice and the permissions. */
export const MAX_DEVICE_SPEC = 2 * 4096 + 8;

/** Docker's `validDeviceMode`: r, w and m, each at most once, at least one. */
export function isDevicePermissions(s: string): boolean {
  return /^[rwm]{1,3}$/.test(s) && new Set(s).size === s.length;
}

/**
 * `--device HOST[:CONTAINER][:PERMISSIONS]` as Docker parses it
 * (cli/command/container/opts.go `parseLinuxDevice`, `validateLinuxPath`):
 * a second part that is a permission string is the permissions, otherwise
 * the container path; the container path defaults to the host's, is
 * cleaned (`path.Clean`: `/dev/../x` is `/x`) and must be absolute. Docker
 * accepts a container path anywhere, not only under /dev, and so does this;
 * it is made inside the container's root whatever its `..` said. Empty
 * parts, NUL bytes and a container path of `/` itself are refused (Docker
 * fails on those later, at mknod). Returns the mapping, or why `spec` is
 * refused.
 */
export function parseDeviceSpec(spec: unknown): DeviceMapping | string {
  const shown = typeof spec === 'string' ? JSON.stringify(spec.length > 200 ? `${spec.slice(0, 200)}…` : spec) : String(spec);
  if (typeof spec !== 'string') return `invalid --device ${shown}: expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`;
  if (spec.length > MAX_DEVICE_SPEC) return `invalid --device ${shown}: longer than ${MAX_DEVICE_SPEC} characters`;
  if (spec.includes('\0')) return `invalid --device ${shown}: contains a NUL byte`;
  const parts = spec.split(':');
  if (parts.length > 3) return `invalid --device ${shown}: too many ':' (expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]])`;
  if (parts.some((p) => p === '')) return `invalid --device ${shown}: empty part (expected HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]])`;
  const [host] = parts;
  let container = host;
  let permissions = 'rwm';
  if (parts.length === 3) {
    if (!isDevicePermissions(parts[2])) return `invalid --device ${shown}: bad permissions ${JSON.stringify(parts[2])} (a combination of r, w and m, each once)`;
    container = parts[1];
    permissions = parts[2];
  } else if (parts.length === 2) {
    if (isDevicePermissions(parts[1])) permissions = parts[1];
    else container = parts[1];
  }
  if (!host.startsWith('/')) return `invalid --device ${shown}: host path ${JSON.stringify(host)} is not an absolute path`;
  if (!container.startsWith('/')) return `invalid --device ${shown}: container path ${JSON.stringify(container)} is not an absolute path`;
  const cleaned = cleanPath(container);
  if (cleaned === '/') return `invalid --device ${shown}: container path ${JSON.stringify(container)} is the container's root, not a file`;
  if (cleaned.length > 4095) return `invalid --device ${shown}: container path longer than 4095 characters`;
  return { PathOnHost: host, PathInContainer: cleaned, CgroupPermissions: permissions };
}

/** Go's `path.Clean` for an absolute path: no `.`, `..`, empty or trailing components (`..` above the root is the root). */
function cleanPath(p: string): string {
  const out: string[] = [];
  for (const c of p.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') out.pop();
    else out.push(c);
  }
  return `/${out.join('/')}`;
}
