/**
 * The runtime's containers as clients see them: the protocol's summaries,
 * inspect result (Capsa's fields and Docker's `docker inspect` fields) and
 * events. Built here, at the edge, from the runtime's own types, so that
 * runtime/ knows nothing of either shape.
 */
import type { ContainerChange, ContainerDetails, ContainerView } from '../runtime/container';
import { parseDeviceSpec } from '../protocol/runoptions';
import type { ContainerEvent, ContainerInspect, ContainerSummary, DockerContainerInspect } from '../protocol/types';

/** A row of `capsa ps` (container/list); `withOwner` (for root, who sees every user's) adds the owner's uid. */
export function containerRow(v: ContainerView, withOwner: boolean): ContainerSummary {
  return withOwner ? { ...containerSummary(v), owner: v.record.owner } : containerSummary(v);
}

/** A container's summary, without its owner. */
export function containerSummary(v: ContainerView): ContainerSummary {
  const { record, state } = v;
  return {
    id: record.id,
    name: record.name,
    image: record.image,
    imageId: record.imageId,
    command: record.plan?.args ?? [],
    state: state.state,
    exitCode: state.state === 'exited' ? state.exitCode : undefined,
    created: record.created,
    startedAt: state.startedAt,
    finishedAt: state.finishedAt,
    pid: state.pid,
    labels: record.options.labels,
    ports: v.ports,
  };
}

/** container/event: the action and the container's summary as it was then. */
export function containerEvent(c: ContainerChange): ContainerEvent {
  return { action: c.action, container: containerSummary(c.container) };
}

/** What `capsa inspect` shows: Docker's fields, the summary, and Capsa's own; `withOwner` as for the summary. */
export function containerInspect(d: ContainerDetails, withOwner = false): ContainerInspect {
  const { record, state } = d;
  return {
    ...dockerInspect(d),
    ...containerRow(d, withOwner),
    config: record.options,
    hostname: record.hostname,
    rootfs: record.plan.rootfs,
    error: state.error,
    oomKilled: !!state.oomKilled,
    mounts: record.binds.map((b) => ({ type: b.type ?? 'bind', source: b.source, destination: b.target, readOnly: b.readOnly })),
    networkSettings: d.network ?? { network: record.options.network ?? 'none' },
  };
}

/** The `docker inspect` fields alone: the Engine API's answer (Go's JSON reader matches keys without case, so Capsa's own fields must not ride along). */
export function dockerInspect(d: ContainerDetails): DockerContainerInspect {
  const { record, state, network: net } = d;
  const plan = record.plan;
  const zero = '0001-01-01T00:00:00Z';
  const ports: DockerContainerInspect['NetworkSettings']['Ports'] = {};
  for (const [ctr, host] of Object.entries(net?.ports ?? {})) {
    const at = host.lastIndexOf(':');
    ports[ctr] = [{ HostIp: host.slice(0, at), HostPort: host.slice(at + 1) }];
  }
  return {
    Id: record.id,
    Created: record.created,
    Path: plan?.args[0] ?? '',
    Args: plan?.args.slice(1) ?? [],
    State: {
      Status: state.state,
      Running: state.state === 'running',
      Paused: false,
      Restarting: false,
      OOMKilled: !!state.oomKilled,
      Dead: state.state === 'dead',
      Pid: state.state === 'running' ? state.pid ?? 0 : 0,
      ExitCode: state.exitCode ?? 0,
      Error: state.error ?? '',
      StartedAt: state.startedAt ?? zero,
      FinishedAt: state.finishedAt ?? zero,
    },
    Image: record.imageId,
    Name: `/${record.name}`,
    RestartCount: 0,
    LogPath: d.logPath,
    Config: {
      Hostname: record.hostname,
      User: record.options.user ?? '',
      Env: plan?.env ?? [],
      Cmd: record.options.cmd?.length ? record.options.cmd : null,
      Entrypoint: record.options.entrypoint ?? null,
      WorkingDir: plan?.cwd ?? '/',
      Tty: !!record.options.tty,
      OpenStdin: !!record.options.interactive,
      Image: record.image,
      Labels: record.options.labels ?? {},
      ...(record.stopSignal ? { StopSignal: record.stopSignal } : {}),
    },
    Mounts: record.binds.map((b) => ({
      Type: b.type ?? 'bind',
      Source: b.source,
      Destination: b.target,
      Mode: b.readOnly ? 'ro' : '',
      RW: !b.readOnly,
      Propagation: 'rprivate',
    })),
    // as Docker's: the mappings as given (the host path before its symlinks were resolved), the container path cleaned
    HostConfig: { Devices: (record.options.devices ?? []).map(parseDeviceSpec).filter((m) => typeof m !== 'string') },
    NetworkSettings: {
      IPAddress: net?.ipAddress ?? '',
      IPPrefixLen: net?.prefixLength ?? 0,
      Gateway: net?.gateway ?? '',
      MacAddress: net?.macAddress ?? '',
      Ports: ports,
    },
  };
}

/** Docker's `units.HumanDuration`: how `docker ps` words an age ("Up 5 seconds", "Exited (0) 2 minutes ago"). */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(m / 60);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** A row of the Engine API's `GET /containers/json`, as Docker gives it. */
export function dockerContainerRow(v: ContainerView, now = Date.now()): Record<string, unknown> {
  const { record, state } = v;
  const since = (iso: string | undefined): number => now - (iso ? Date.parse(iso) : now);
  const status =
    state.state === 'running'
      ? `Up ${humanDuration(since(state.startedAt))}`
      : state.state === 'exited'
        ? `Exited (${state.exitCode ?? 0}) ${humanDuration(since(state.finishedAt))} ago`
        : state.state === 'created'
          ? 'Created'
          : state.state.charAt(0).toUpperCase() + state.state.slice(1);
  const ports: Array<Record<string, unknown>> = [];
  for (const p of v.ports ?? []) {
    // `127.0.0.1:8080->80/tcp`
    const m = /^(.*):(\d+)->(\d+)\/(\w+)$/.exec(p);
    if (m) ports.push({ IP: m[1], PrivatePort: Number(m[3]), PublicPort: Number(m[2]), Type: m[4] });
  }
  return {
    Id: record.id,
    Names: [`/${record.name}`],
    Image: record.image,
    ImageID: record.imageId,
    Command: (record.plan?.args ?? []).join(' '),
    Created: Math.floor(Date.parse(record.created) / 1000),
    Ports: ports,
    Labels: record.options.labels ?? {},
    State: state.state,
    Status: status,
    HostConfig: { NetworkMode: record.options.network ?? 'bridge' },
    NetworkSettings: { Networks: {} },
    Mounts: record.binds.map((b) => ({ Type: b.type ?? 'bind', Source: b.source, Destination: b.target, Mode: b.readOnly ? 'ro' : '', RW: !b.readOnly, Propagation: 'rprivate' })),
  };
}
