/**
 * Platform strings (`--platform`, `platform` params): `os/arch[/variant]`
 * with the OCI image spec's values, which are Go's GOOS and GOARCH
 * (image-spec config.md, "Properties"; the variants of image-index.md).
 * Names are matched without regard to case and the common aliases are
 * accepted, as containerd's `platforms.Parse` (and so Docker) does:
 * `LINUX/X86_64` is `linux/amd64`.
 */

/** GOOS values: Go's list of known operating systems (go/build/syslist.go), as containerd's platforms package has it, with wasip1. */
export const OS_VALUES = ['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux', 'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows', 'zos'] as const;

/** GOARCH values: Go's list of known architectures (go/build/syslist.go), as containerd's platforms package has it. */
export const ARCH_VALUES = [
  '386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'loong64', 'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le',
  'ppc', 'ppc64', 'ppc64le', 'riscv', 'riscv64', 's390', 's390x', 'sparc', 'sparc64', 'wasm',
] as const;

/** Variants per architecture: GOARM, GOAMD64 and arm64's architecture versions; other architectures take none. */
const VARIANTS: Record<string, RegExp> = {
  arm: /^v[5-8]$/,
  arm64: /^v(8|9)(\.[0-9])?$/,
  amd64: /^v[1-4]$/,
  riscv64: /^rva2[0-3]u64$/,
};

export interface PlatformParts {
  os: string;
  architecture: string;
  variant?: string;
}

/** Normalises names the way containerd does: lower case, x86_64 → amd64, aarch64 → arm64, arm64's variant v8 and arm's v7 by default. */
export function normalizePlatform(p: { os: string; architecture: string; variant?: string }): PlatformParts {
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

/** Why `s` is not a platform string, or undefined when it is one. */
export function platformProblem(s: string): string | undefined {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) return 'must be os/arch[/variant], e.g. linux/amd64';
  const p = normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
  if (!(OS_VALUES as readonly string[]).includes(p.os)) return `has an unknown os ${quote(parts[0])} (expected one of ${OS_VALUES.join(', ')})`;
  if (!(ARCH_VALUES as readonly string[]).includes(p.architecture)) return `has an unknown architecture ${quote(parts[1])} (expected one of ${ARCH_VALUES.join(', ')})`;
  if (p.variant !== undefined) {
    const allowed = VARIANTS[p.architecture];
    if (!allowed) return `has a variant ${quote(parts[2] ?? '')}, but ${p.architecture} takes none`;
    if (!allowed.test(p.variant)) return `has an unknown ${p.architecture} variant ${quote(parts[2] ?? p.variant)}`;
  }
  return undefined;
}

function quote(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 39)}…` : s);
}
