/**
 * Test root filesystems built from Debian's busybox-static: generated on
 * demand, never committed.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, chmodSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';

export const BUSYBOX = '/bin/busybox';

let applets: string[] | undefined;

/** The applets the host's busybox provides (`busybox --list`). */
export function busyboxApplets(): string[] {
  applets ??= execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s && !s.includes('/') && s !== 'busybox');
  return applets;
}

/**
 * Populates dir with a minimal image tree: /bin/busybox and its applet
 * links, /etc/passwd and /etc/group (root and user 1000), and empty
 * /proc /sys /dev /tmp /root /home/user.
 */
export function makeBusyboxRootfs(dir: string): void {
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'home/user']) {
    mkdirSync(path.join(dir, d), { recursive: true });
  }
  chmodSync(path.join(dir, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const a of busyboxApplets()) symlinkSync('busybox', path.join(dir, 'bin', a));
  writeFileSync(
    path.join(dir, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n',
  );
  writeFileSync(path.join(dir, 'etc', 'group'), 'root:x:0:\ntty:x:5:\nuser:x:1000:\n');
}
