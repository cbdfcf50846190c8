/** Plain data shapes carried by the protocol. No behaviour lives here. */

export type PullPolicy = 'always' | 'missing' | 'never';
export type NetworkMode = 'bridge' | 'host' | 'none' | string;

/** Options of `capsa run`, as a client sends them. */
export interface RunOptions {
  /** Image reference as typed by the user. */
  image: string;
  /** Command (replaces the image's Cmd); empty or absent: the image's Cmd. */
  cmd?: string[];
  /** Replaces the image's Entrypoint; `[]` clears it. */
  entrypoint?: string[];
  /** `KEY=VALUE` entries added to (and overriding) the image's Env. */
  env?: string[];
  /** Container name; default: a generated one. Must match [a-zA-Z0-9][a-zA-Z0-9_.-]*. */
  name?: string;
  /** Hostname; default: the first 12 hex digits of the id. */
  hostname?: string;
  /** Working directory inside the container; default: the image's WorkingDir or `/`. */
  workdir?: string;
  /** `user`, `uid`, `user:group` or `uid:gid`; default: the image's User or root. */
  user?: string;
  /** Allocate a pty (`-t`). */
  tty?: boolean;
  /** Keep stdin open (`-i`). */
  interactive?: boolean;
  /** Remove the container when it exits (`--rm`). */
  rm?: boolean;
  /** Pull policy (`--pull`); default `missing`. */
  pull?: PullPolicy;
  /** `os/arch[/variant]` for the pull. */
  platform?: string;
  /** Initial terminal size with `tty`. */
  size?: { rows: number; cols: number };
  /** Bind mounts and volumes, Docker's `-v` syntax: `HOST:CTR[:ro]`. */
  volumes?: string[];
  /** `--network`; default `bridge` where available, else `none`-like isolation with loopback only. */
  network?: NetworkMode;
  /** Published ports, Docker's `-p` syntax: `[IP:][HOSTPORT:]CTRPORT[/tcp|udp]`; the host side binds 127.0.0.1 unless IP is given. */
  publish?: string[];
  /** Name servers for /etc/resolv.conf (`--dns`), replacing the host's. */
  dns?: string[];
  /** Extra labels. */
  labels?: Record<string, string>;
  /** Memory limit in bytes (`--memory`); at least 6 MiB. */
  memory?: number;
  /** Memory plus swap in bytes (`--memory-swap`), -1 for unlimited swap; default twice `memory`. */
  memorySwap?: number;
  /** CPU quota in CPUs (`--cpus 0.5`). */
  cpus?: number;
  /** Relative CPU weight (`--cpu-shares`). */
  cpuShares?: number;
  /** Maximum number of processes and threads (`--pids-limit`); 0 or -1: unlimited. */
  pidsLimit?: number;
  /** Capabilities added to the default set (`--cap-add`), e.g. `NET_ADMIN`, `CAP_SYS_PTRACE` or `ALL`. */
  capAdd?: string[];
  /** Capabilities removed from the default set (`--cap-drop`), or `ALL`. */
  capDrop?: string[];
  /** Every capability, every device, no seccomp filter, no masked paths (`--privileged`). */
  privileged?: boolean;
  /**
   * `--security-opt` entries: `seccomp=unconfined`, `seccomp=<profile JSON>`
   * (the CLI reads a FILE and sends its text, as Docker's client does),
   * `no-new-privileges[=true|false]`.
   */
  securityOpt?: string[];
  /** Resource limits (`--ulimit nofile=1024:4096`), Docker's syntax. */
  ulimits?: string[];
  /** Run a minimal init as PID 1 that reaps zombies and forwards signals (`--init`). */
  init?: boolean;
  /** Mount the root filesystem read-only (`--read-only`). */
  readOnly?: boolean;
  /** `--mount` specs: `type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`. */
  mounts?: string[];
  /** `--tmpfs PATH[:OPTIONS]`. */
  tmpfs?: string[];
  /**
   * Host devices (`--device HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]]`, Docker's syntax,
   * root's containers only): the node appears at the container path and the
   * cgroup allows it the permissions (`rwm` by default).
   */
  devices?: string[];
  /** Additional groups for the process (`--group-add`), names from the image's /etc/group or numbers. */
  groupAdd?: string[];
  /** `--pid host` shares the host's PID namespace; default a new one. */
  pid?: 'host';
  /** `--ipc host` shares the host's IPC namespace; default a new one. */
  ipc?: 'host';
  /**
   * `--userns`: `host` (the default: container root is host root, restricted
   * by capabilities, seccomp and masked paths, as under Docker) or `auto` (a
   * user namespace mapping the container's ids 0..65535 onto a host block
   * allocated for this container; see server/runtime/userns.ts). `host` stays
   * the default deliberately: as with Docker, files a container writes to a
   * bind-mounted workspace keep the ids it used, `--privileged` works, and
   * nothing depends on the filesystem supporting idmapped mounts; `auto` is
   * the stronger isolation for untrusted images, and refuses --privileged.
   */
  userns?: 'host' | 'auto';
  /**
   * Bind mounts whose files belong to a host user, without chowning anything:
   * each `target` (the container path of a `volumes` bind) is mounted
   * idmapped, so the container's `containerUid`/`containerGid` (default 0,
   * root) writes there as host `uid`/`gid`, and that host user's files appear
   * as the container user's. The extension sets it for the workspace, with
   * VS Code's own uid/gid. Needs Linux 5.12+ and a filesystem that supports
   * idmapped mounts (ext4, xfs, btrfs; tmpfs from 6.3).
   */
  idmapMounts?: IdmapMount[];
}

/** See {@link RunOptions.idmapMounts}. */
export interface IdmapMount {
  /** Absolute container path of a bind mount in `volumes`. */
  target: string;
  /** Host owner of what the container writes there. */
  uid: number;
  gid: number;
  /** The container's ids that map to `uid`/`gid`; default 0 (root). */
  containerUid?: number;
  containerGid?: number;
}

export interface ExecOptions {
  container: string;
  cmd: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  tty?: boolean;
  interactive?: boolean;
  size?: { rows: number; cols: number };
}

export interface PullResult {
  /** Normalised reference, e.g. `docker.io/library/busybox:latest`. */
  reference: string;
  /** Digest of the manifest that was selected for the platform. */
  manifestDigest: string;
  /** Image id: the digest of the image config. */
  id: string;
  /** True when nothing had to be fetched. */
  upToDate: boolean;
}

/** Body of `$/progress` reports sent during a pull (in `WorkDoneProgressReport.message` as JSON too). */
export interface PullProgress {
  /** Per-layer state, keyed by compressed digest. */
  layers: Array<{
    digest: string;
    size: number;
    done: number;
    status: 'waiting' | 'downloading' | 'extracting' | 'done' | 'exists';
  }>;
}

export interface ImageSummary {
  /** Image id (`sha256:` + hex of the config digest). */
  id: string;
  /** `repository:tag` references pointing at it (normalised, e.g. `docker.io/library/busybox:latest`). */
  references: string[];
  /** Short form of each reference as Docker prints it (`busybox:latest`). */
  names: string[];
  /** Digest of the manifest. */
  manifestDigest: string;
  /** Repository digests `repo@sha256:…`. */
  repoDigests: string[];
  /** ISO time from the image config, if any. */
  created?: string;
  /** Unpacked size in bytes. */
  size: number;
  os: string;
  architecture: string;
  /** The uid whose names these are (images are named per user; root's list has every user's, each with its owner). */
  owner?: number;
  /** The image it was built on by a build step or a commit (Docker's ParentId); absent for pulled and loaded images. */
  parent?: string;
}

/**
 * An image as Docker's `GET /images/{name}/json` and `docker image inspect`
 * give it: Docker's field names, so scripts and templates written for
 * Docker read it unchanged.
 */
export interface ImageInspect {
  Id: string;
  /** Short names, as Docker prints them (`busybox:latest`). */
  RepoTags: string[];
  RepoDigests: string[];
  /** The image it was built on locally; `''` for a pulled or loaded image. */
  Parent: string;
  Comment: string;
  Created: string;
  Author: string;
  /** The runtime config: Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Labels, Volumes, StopSignal, Healthcheck, Shell. */
  Config: Record<string, unknown>;
  Architecture: string;
  Variant?: string;
  Os: string;
  /** Unpacked size in bytes. */
  Size: number;
  RootFS: { Type: string; Layers: string[] };
  /** The manifest this image was stored from and its media type. */
  Descriptor: { mediaType: string; digest: string };
}

export type ContainerState = 'created' | 'running' | 'exited' | 'paused' | 'removing' | 'dead';

export interface ContainerSummary {
  id: string;
  /** The uid that created it: given to root only (every other caller sees only its own containers). */
  owner?: number;
  /** Unique among its owner's containers. */
  name: string;
  /** Reference as the user gave it. */
  image: string;
  imageId: string;
  command: string[];
  state: ContainerState;
  /** Set when state is `exited`. */
  exitCode?: number;
  /** ISO times. */
  created: string;
  startedAt?: string;
  finishedAt?: string;
  /** Host pid of the container's PID 1 while running. */
  pid?: number;
  ports?: string[];
  labels?: Record<string, string>;
}

/** What `capsa inspect` shows: the summary, Capsa's own fields and Docker's (capitalised, as `docker inspect` prints them). */
export interface ContainerInspect extends ContainerSummary, DockerContainerInspect {
  config: RunOptions;
  hostname: string;
  rootfs: string;
  oomKilled?: boolean;
  error?: string;
  mounts: Array<{ type: string; source: string; destination: string; readOnly: boolean }>;
  networkSettings?: {
    /** `bridge`, a user-defined network's name, `host`, `none` or `container:NAME`. */
    network?: string;
    ipAddress?: string;
    prefixLength?: number;
    gateway?: string;
    macAddress?: string;
    /** Published ports: `80/tcp` → `127.0.0.1:8080`. */
    ports?: Record<string, string>;
  };
}

/** A bridge network (`capsa network ls/inspect`). */
export interface NetworkSummary {
  name: string;
  id: string;
  /** Host bridge interface. */
  bridge: string;
  subnet: string;
  gateway: string;
  created: string;
  /** The built-in default network (everyone's). */
  builtin?: boolean;
  /** The uid that created a user-defined network (absent: root's). A caller other than root sees only its own and the built-in one. */
  owner?: number;
}

export interface NetworkInspect extends NetworkSummary {
  containers: Array<{ id: string; name: string; ipAddress: string; macAddress?: string }>;
}

export interface ContainerEvent {
  action: 'create' | 'start' | 'die' | 'destroy' | 'update';
  container: ContainerSummary;
}

export interface ImageEvent {
  action: 'pull' | 'tag' | 'untag' | 'delete';
  image?: ImageSummary;
  id: string;
  /** The uid in whose names it happened; sent to that uid's connections and root's. */
  owner?: number;
}

// ---- appended: `docker inspect`'s shape, for tools and people that read it --

/** The fields of `docker inspect CONTAINER` that Capsa fills. */
export interface DockerContainerInspect {
  Id: string;
  /** ISO time. */
  Created: string;
  /** The command's executable and its arguments. */
  Path: string;
  Args: string[];
  State: DockerContainerState;
  /** Image id (`sha256:…`). */
  Image: string;
  /** `/` + the container's name, as Docker prints it. */
  Name: string;
  RestartCount: number;
  /** The container's log file on the helper's host. */
  LogPath: string;
  Config: {
    Hostname: string;
    User: string;
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    WorkingDir: string;
    Tty: boolean;
    OpenStdin: boolean;
    /** The reference the container was created from. */
    Image: string;
    Labels: Record<string, string>;
    StopSignal?: string;
  };
  Mounts: Array<{ Type: string; Source: string; Destination: string; Mode: string; RW: boolean; Propagation: string }>;
  /** Docker's HostConfig, of the fields Capsa has: `Devices` from `--device`. */
  HostConfig: { Devices: Array<{ PathOnHost: string; PathInContainer: string; CgroupPermissions: string }> };
  NetworkSettings: {
    IPAddress: string;
    IPPrefixLen: number;
    Gateway: string;
    MacAddress: string;
    /** `80/tcp` → host bindings. */
    Ports: Record<string, Array<{ HostIp: string; HostPort: string }> | null>;
  };
}

export interface DockerContainerState {
  /** `created`, `running`, `exited`, `removing`, `dead`. */
  Status: ContainerState;
  Running: boolean;
  Paused: boolean;
  Restarting: boolean;
  OOMKilled: boolean;
  Dead: boolean;
  /** Host pid of PID 1; 0 when not running. */
  Pid: number;
  ExitCode: number;
  /** Why the container could not start or was lost; empty otherwise. */
  Error: string;
  /** RFC 3339; `0001-01-01T00:00:00Z` when it never started (or ended). */
  StartedAt: string;
  FinishedAt: string;
}
