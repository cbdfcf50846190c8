/**
 * Platforms (`linux/amd64`, `linux/arm/v7`) and manifest selection from an
 * index, following containerd's `platforms` package: architectures are
 * normalised (x86_64 → amd64, aarch64 → arm64), arm64's variant defaults to
 * v8, arm's to v7, and a wanted arm variant also accepts older ones.
 */
import { InvalidArgumentError } from '../errors';
import { normalizePlatform, platformProblem } from '../protocol/platform';
import { listed, printable } from '../util/text';
import { PlatformNotFoundError } from './errors';
import type { Descriptor, Index, Platform } from './types';

/** A normalised platform: lower case, architecture in GOARCH spelling. */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

export { normalizePlatform };

/** The host's platform, from Node's `process.platform` and `process.arch`. */
export function hostPlatform(arch: string = process.arch, os: string = process.platform): PlatformSpec {
  const map: Record<string, { architecture: string; variant?: string }> = {
    x64: { architecture: 'amd64' },
    ia32: { architecture: '386' },
    arm64: { architecture: 'arm64', variant: 'v8' },
    // Node reports `arm` for every 32-bit ARM; v7 is what Debian's armhf and Docker assume.
    arm: { architecture: 'arm', variant: 'v7' },
    ppc64: { architecture: 'ppc64le' },
    s390x: { architecture: 's390x' },
    riscv64: { architecture: 'riscv64' },
    mips64el: { architecture: 'mips64le' },
    loong64: { architecture: 'loong64' },
  };
  const a = map[arch] ?? { architecture: arch };
  return normalizePlatform({ os, architecture: a.architecture, variant: a.variant });
}

/**
 * Parses `os/arch[/variant]` (`--platform`), e.g. `linux/arm64`, `linux/arm/v7`,
 * with the OCI spec's values only (server/protocol/platform.ts); case and
 * containerd's aliases are normalised (`LINUX/x86_64` is `linux/amd64`).
 */
export function parsePlatform(s: string): PlatformSpec {
  const problem = platformProblem(s);
  if (problem !== undefined) throw new InvalidArgumentError(`invalid platform ${printable(JSON.stringify(s.length > 80 ? `${s.slice(0, 79)}…` : s))}: ${printable(problem)}`);
  const parts = s.split('/');
  return normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

export function formatPlatform(p: { os: string; architecture: string; variant?: string }): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
}

/**
 * `p` as containerd's platforms.Format(Normalize(p)) writes it, the form
 * BuildKit gives TARGETPLATFORM and BUILDPLATFORM: arm64's default variant
 * v8 is left out (`linux/arm64`), any other variant kept.
 */
export function canonicalPlatform(p: { os: string; architecture: string; variant?: string }): string {
  return formatPlatform(p.architecture === 'arm64' && p.variant === 'v8' ? { os: p.os, architecture: p.architecture } : p);
}

const ARM_VARIANTS = ['v5', 'v6', 'v7', 'v8'];

/**
 * Rank of `candidate` for `want`: 0 for an exact match, higher for an
 * acceptable fallback (an older arm variant, or no variant at all), undefined
 * for no match.
 */
export function matchRank(want: PlatformSpec, candidate: Platform): number | undefined {
  const c = normalizePlatform(candidate);
  if (c.os !== want.os || c.architecture !== want.architecture) return undefined;
  if (c.variant === want.variant) return 0;
  // An entry without a variant is accepted for any variant (and vice versa for
  // arm64, whose variant defaults to v8 above, so both sides agree already).
  if (c.variant === undefined) return 10;
  if (want.architecture === 'arm' && want.variant !== undefined) {
    const w = ARM_VARIANTS.indexOf(want.variant);
    const v = ARM_VARIANTS.indexOf(c.variant);
    // An armv7 host runs v6 and v5 code; prefer the closest.
    if (w >= 0 && v >= 0 && v < w) return 1 + (w - v);
  }
  if (want.variant === undefined) return 20;
  return undefined;
}

/**
 * Picks the manifest descriptor for `want` from an index or manifest list.
 * Entries without a platform (attestations, artifacts) are skipped. Throws
 * PlatformNotFoundError listing what the index offers.
 */
export function selectManifest(index: Index, want: PlatformSpec, what = 'image'): Descriptor {
  let best: { d: Descriptor; rank: number } | undefined;
  for (const d of index.manifests ?? []) {
    if (!d.platform || typeof d.platform.os !== 'string' || typeof d.platform.architecture !== 'string') continue;
    if (d.platform.os === 'unknown' || d.platform.architecture === 'unknown') continue;
    const rank = matchRank(want, d.platform);
    if (rank !== undefined && (best === undefined || rank < best.rank)) best = { d, rank };
  }
  if (best) return best.d;
  const offered = (index.manifests ?? [])
    .filter((d) => d.platform && typeof d.platform.os === 'string' && typeof d.platform.architecture === 'string' && d.platform.os !== 'unknown')
    .map((d) => formatPlatform(normalizePlatform(d.platform as Platform)));
  // the index is the registry's document: its platform strings are escaped and the list is cut
  throw new PlatformNotFoundError(
    `no manifest for platform ${formatPlatform(want)} in ${printable(what)}` +
      (offered.length ? `; it has ${listed([...new Set(offered)], 10, 40)}` : '; it lists no platforms'),
  );
}
