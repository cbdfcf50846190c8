/**
 * Platforms (`linux/amd64`, `linux/arm/v7`) and manifest selection from an
 * index, following containerd's `platforms` package: architectures are
 * normalised (x86_64 → amd64, aarch64 → arm64), arm64's variant defaults to
 * v8, arm's to v7, and a wanted arm variant also accepts older ones.
 */
import { InvalidArgumentError } from '../errors';
import { PlatformNotFoundError } from './errors';
import type { Descriptor, Index, Platform } from './types';

/** A normalised platform: lower case, architecture in GOARCH spelling. */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
}

/** Normalises architecture and variant names the way containerd does. */
export function normalizePlatform(p: { os: string; architecture: string; variant?: string }): PlatformSpec {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  switch (arch) {
    case 'i386':
    case 'i686':
      arch = '386';
      variant = undefined;
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = undefined;
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === undefined || variant === '8' || variant === 'v8') variant = 'v8';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === undefined || variant === '7') variant = 'v7';
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
  }
  return variant === undefined ? { os, architecture: arch } : { os, architecture: arch, variant };
}

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

/** Parses `os/arch[/variant]` (`--platform`), e.g. `linux/arm64`, `linux/arm/v7`. */
export function parsePlatform(s: string): PlatformSpec {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(p))) {
    throw new InvalidArgumentError(`invalid platform ${JSON.stringify(s)}: expected os/arch[/variant], e.g. linux/amd64`);
  }
  return normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

export function formatPlatform(p: { os: string; architecture: string; variant?: string }): string {
  return p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
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
    .filter((d) => d.platform && d.platform.os !== 'unknown')
    .map((d) => formatPlatform(normalizePlatform(d.platform as Platform)));
  throw new PlatformNotFoundError(
    `no manifest for platform ${formatPlatform(want)} in ${what}` +
      (offered.length ? ` (it has ${[...new Set(offered)].join(', ')})` : ' (it lists no platforms)'),
  );
}
