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

/** The `docker inspect` fields. */
function dockerInspect(d: ContainerDetails): DockerContainerInspect {
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
