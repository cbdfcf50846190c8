/**
 * What the container side reads from /proc: a process's start time (with
 * its pid, the name of a process for good), the monitor of a container
 * directory, and the processes of a container's pid namespace (`top`).
 */
import { promises as fs, readdirSync, readFileSync } from 'node:fs';

/**
 * Start time of a process in clock ticks since boot (field 22 of
 * /proc/PID/stat): with the pid, it names a process for good, so a reused
 * pid is never mistaken for the one recorded.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: count from the last ')'
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether pid still names the process that had startTime. */
export function sameProcess(pid: number | undefined, startTime: string | undefined): boolean {
  return !!pid && !!startTime && processStartTime(pid) === startTime;
}

/** SIGKILL for pid if it still names the process that had startTime; one that ends meanwhile is no error. */
export function killSameProcess(pid: number | undefined, startTime: string | undefined): void {
  if (!sameProcess(pid, startTime)) return;
  try {
    process.kill(pid!, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * The monitor serving `cdir` (its command line names the directory) and the
 * container's PID 1 (the monitor's one child), found through /proc.
 */
export function findMonitor(cdir: string): { monitorPid: number; pid: number | undefined } | undefined {
  const wanted = `\0--monitor\0${cdir}\0`;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
    } catch {
      continue;
    }
    if (!cmdline.includes(wanted)) continue;
    const monitorPid = Number(name);
    let children = '';
    try {
      children = readFileSync(`/proc/${name}/task/${name}/children`, 'latin1');
    } catch {
      /* ended meanwhile */
    }
    const pid = Number(children.trim().split(/\s+/)[0]) || undefined;
    return { monitorPid, pid };
  }
  return undefined;
}

/**
 * Every process in the pid namespace of pid (the container's PID 1), found
 * by the namespace's inode in /proc/PID/ns/pid, as `ps -ef` rows.
 */
export async function processesInPidNamespace(pid: number): Promise<string[][]> {
  const ns = await fs.readlink(`/proc/${pid}/ns/pid`);
  const ticks = 100; // USER_HZ: what /proc counts in on every Linux architecture Capsa runs on
  const uptime = Number((await fs.readFile('/proc/uptime', 'utf8')).split(' ')[0]);
  const boot = Date.now() / 1000 - uptime;
  const rows: Array<[number, string[]]> = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if ((await fs.readlink(`/proc/${name}/ns/pid`)) !== ns) continue;
      const [stat, status, cmdline] = await Promise.all([
        fs.readFile(`/proc/${name}/stat`, 'utf8'),
        fs.readFile(`/proc/${name}/status`, 'utf8'),
        fs.readFile(`/proc/${name}/cmdline`, 'utf8'),
      ]);
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = f[1];
      const cpu = (Number(f[11]) + Number(f[12])) / ticks;
      const started = boot + Number(f[19]) / ticks;
      const c = Math.floor((cpu / Math.max(1e-3, Date.now() / 1000 - started)) * 100);
      const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1] ?? '?';
      const t = Math.floor(cpu);
      const time = `${String(Math.floor(t / 3600)).padStart(2, '0')}:${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
      const stime = new Date(started * 1000).toTimeString().slice(0, 5);
      const cmd = cmdline.split('\0').filter(Boolean).join(' ') || `[${comm}]`;
      rows.push([Number(name), [uid, name, ppid, String(c), stime, f[4] === '0' ? '?' : 'pts', time, cmd]]);
    } catch {
      // the process ended while we looked
    }
  }
  return rows.sort((a, b) => a[0] - b[0]).map((r) => r[1]);
}
