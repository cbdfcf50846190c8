/**
 * Build arguments: the predefined ones, the proxy family, and the checks on
 * `--build-arg` values. Scoping is Docker's:
 *
 * - an ARG before the first FROM is global: usable in FROM lines only,
 *   unless a stage declares it again (`ARG NAME` without a default then takes
 *   the global's value);
 * - an ARG in a stage is in scope from its line to the end of that stage;
 * - `--build-arg NAME=v` overrides an ARG's default, wherever it is declared;
 * - ENV of the same name overrides an ARG (the image's ENV too);
 * - the platform arguments are set in the global scope without being
 *   declared, and in a stage once declared (`ARG TARGETARCH`);
 * - HTTP_PROXY and its family reach RUN from `--build-arg` without an ARG,
 *   and are left out of cache keys and history.
 */
import { canonicalPlatform, type PlatformSpec } from '../image/platform';
import { LIMITS, LimitExceededError, exceeded } from '../limits';
import { InvalidArgumentError } from '../errors';

export const PROXY_ARGS = new Set([
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);

export const PLATFORM_ARGS = ['TARGETPLATFORM', 'TARGETOS', 'TARGETARCH', 'TARGETVARIANT', 'BUILDPLATFORM', 'BUILDOS', 'BUILDARCH', 'BUILDVARIANT'] as const;

/** The platform arguments' values for a build for `target` on `build`. */
export function platformArgs(target: PlatformSpec, build: PlatformSpec): Map<string, string> {
  return new Map([
    ['TARGETPLATFORM', canonicalPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', variantOf(target)],
    ['BUILDPLATFORM', canonicalPlatform(build)],
    ['BUILDOS', build.os],
    ['BUILDARCH', build.architecture],
    ['BUILDVARIANT', variantOf(build)],
  ]);
}

/** The variant as BuildKit gives it: none for arm64's default v8. */
function variantOf(p: PlatformSpec): string {
  return p.architecture === 'arm64' && p.variant === 'v8' ? '' : (p.variant ?? '');
}

const NAME = /^[^=\s]+$/;

/**
 * Checks `--build-arg` values: names without `=` or whitespace, each name
 * and value within LIMITS.buildArg (a larger one could never reach a
 * process: Linux's MAX_ARG_STRLEN), at most LIMITS.buildArg.entries of them.
 */
export function checkBuildArgs(args: Readonly<Record<string, string>>): Map<string, string> {
  const out = new Map<string, string>();
  const entries = Object.entries(args);
  if (entries.length > (LIMITS.buildArg.entries ?? Infinity)) {
    throw new LimitExceededError(LIMITS.buildArg, `more than the ${LIMITS.buildArg.name} limit of ${LIMITS.buildArg.entries} --build-arg values`);
  }
  for (const [k, v] of entries) {
    if (!NAME.test(k)) throw new InvalidArgumentError(`invalid --build-arg name ${JSON.stringify(k.slice(0, 100))}: it must be non-empty, without '=' or whitespace`);
    if (typeof v !== 'string') throw new InvalidArgumentError(`--build-arg ${k}: the value must be a string`);
    const size = Buffer.byteLength(k) + 1 + Buffer.byteLength(v);
    if (size > LIMITS.buildArg.bytes) throw exceeded(LIMITS.buildArg, `--build-arg ${k.slice(0, 100)}`, size);
    out.set(k, v);
  }
  return out;
}
