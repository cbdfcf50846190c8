/**
 * A helper's start: the containers on disk, each with its true state. A
 * running one whose monitor still listens is followed again; one that ended
 * meanwhile gets the exit status its monitor recorded; one whose monitor
 * died is killed, as nothing could follow it.
 */
import { promises as fs } from 'node:fs';
import { readExitFile } from '../monitor';
import type { Entry } from './entry';
import { MONITOR_LOST_ERROR, MONITOR_LOST_EXIT, type Lifecycle, type LifecycleDeps } from './lifecycle';
import { findMonitor, killSameProcess, processStartTime } from './proc';
import { ContainerRecordVersionError } from './record';

/** Exit status recorded for a start that a dying helper left unfinished: an error of Capsa's, as Docker's 125. */
export const INTERRUPTED_START_EXIT = 125;

export async function loadContainers(d: LifecycleDeps, life: Lifecycle): Promise<void> {
  const { store, table } = d;
  await store.init();
  await store.sweepRemoved();
  const ids = await store.ids();
  const found = await Promise.all(ids.map((id) => loadOne(d, life, id)));
  /** Containers of a newer helper: not loaded, and none of their resources taken from them. */
  const foreign = new Set<string>();
  for (const [i, e] of found.entries()) {
    if (e === FOREIGN) foreign.add(ids[i]);
    else if (e) table.set(e);
  }
  await Promise.all(
    table
      .all()
      .filter((e) => e.state.state === 'exited' && e.record.options.rm)
      // an --rm container that ended while no helper ran. A removal that fails
      // part-way has already taken it out of the table: the reconciles below
      // clean up its network and cgroup, and its directory is found again by
      // the next load
      .map((e) => life.removeEntry(e).catch(() => undefined)),
  );
  // after the removals above: what they took out of the table is for the reconciles to clean up
  const known = new Set([...table.ids(), ...foreign]);
  const running = table.all().filter((e) => e.state.state === 'running').map((e) => e.record.id);
  await d.network?.reconcile(known, new Set(running));
  // Only clean-up of cgroups no container owns: one left behind costs nothing until the next load retries it.
  await d.cgroups.reconcile(known, new Set(ids)).catch(() => undefined);
  await d.userns.reconcile(known);
}

const FOREIGN = Symbol('a container of a newer helper');

async function loadOne(d: LifecycleDeps, life: Lifecycle, id: string): Promise<Entry | typeof FOREIGN | undefined> {
  const cdir = d.store.pathOf(id);
  let entry: Entry;
  try {
    entry = await d.store.read(id);
  } catch (err) {
    // a newer helper's container: left as it is, for that helper
    if (err instanceof ContainerRecordVersionError) return FOREIGN;
    // A directory without a complete config is a create that died half-way: nothing else refers to it.
    await fs.rm(cdir, { recursive: true, force: true });
    return undefined;
  }
  const { state } = entry;
  if (state.state === 'created' || state.startingAt) {
    // a helper killed between launching the monitor and recording `running`
    const monitor = await d.launcher.connectMonitor(cdir);
    if (!monitor) {
      if (!state.startingAt) return entry; // created, never started
      const exit = await readExitFile(cdir);
      // it started, and ended while no helper ran; or it never got as far as a monitor that lasted
      entry.state = exit
        ? { state: 'exited', exitCode: exit.exitCode, startedAt: state.startingAt, finishedAt: exit.finishedAt }
        : { state: 'exited', exitCode: INTERRUPTED_START_EXIT, finishedAt: new Date().toISOString(), error: 'the helper stopped while the container was starting: the start did not complete' };
      await life.saveState(entry);
      return entry;
    }
    const found = findMonitor(cdir);
    entry.state = {
      state: 'running',
      pid: found?.pid,
      pidStartTime: found?.pid ? processStartTime(found.pid) : undefined,
      monitorPid: found?.monitorPid,
      monitorStartTime: found ? processStartTime(found.monitorPid) : undefined,
      startedAt: new Date().toISOString(),
    };
    await life.saveState(entry);
    life.follow(entry, monitor);
    return entry;
  }
  if (state.state !== 'running' && state.state !== 'removing') return entry;
  const monitor = await d.launcher.connectMonitor(cdir);
  if (monitor) {
    life.follow(entry, monitor);
    return entry;
  }
  const exit = await readExitFile(cdir);
  if (exit) {
    entry.state = { ...state, state: 'exited', pid: undefined, exitCode: exit.exitCode, finishedAt: exit.finishedAt };
  } else {
    // the monitor died (killed): nothing holds the container's output or can report its end
    killSameProcess(state.pid, state.pidStartTime);
    entry.state = { ...state, state: 'exited', pid: undefined, exitCode: MONITOR_LOST_EXIT, finishedAt: new Date().toISOString(), error: MONITOR_LOST_ERROR };
  }
  await life.saveState(entry);
  return entry;
}
