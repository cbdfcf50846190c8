/**
 * The shapes shared by several messages' params (run options, exec options,
 * a terminal size), as {@link v} schemas. Each message's own `params`
 * sits in its namespace, beside its type.
 */
import { platformProblem } from './platform';
import { v } from './validate';

const strings = () => v.array(v.string());

/** Container ids, names and id prefixes. */
export const containerRef = () => v.string({ min: 1, max: 256, expected: 'a container id or name' });

/** Chosen by the client; unique on its connection. */
export const attachId = () => v.string({ min: 1, max: 128 });

/** LSP's `ProgressToken`. */
export const progressToken = () => v.union(v.string({ max: 256 }), v.number({ integer: true }));

/** `os/arch[/variant]` with the OCI spec's values (./platform.ts). */
export const platform = () => v.string({ max: 256, expected: 'a platform os/arch[/variant]', refine: platformProblem });

/** Rows and columns of a terminal, as the kernel's winsize (and the runtime's check) allows. */
export const terminalSize = () => v.object({ rows: v.number({ integer: true, min: 1, max: 10000 }), cols: v.number({ integer: true, min: 1, max: 10000 }) });

const id = () => v.number({ integer: true, min: 0, max: 0xffffffff });

/** Every field of {@link RunOptions}; its range checks stay with the runtime, which also sees stored configs. */
export const runOptionFields = {
  image: v.string({ min: 1, max: 4096, expected: 'an image reference' }),
  cmd: v.optional(strings()),
  entrypoint: v.optional(strings()),
  env: v.optional(strings()),
  name: v.optional(v.string()),
  hostname: v.optional(v.string()),
  workdir: v.optional(v.string()),
  user: v.optional(v.string()),
  tty: v.optional(v.boolean()),
  interactive: v.optional(v.boolean()),
  rm: v.optional(v.boolean()),
  pull: v.optional(v.literal('always', 'missing', 'never')),
  platform: v.optional(platform()),
  size: v.optional(terminalSize()),
  volumes: v.optional(strings()),
  network: v.optional(v.string({ min: 1 })),
  publish: v.optional(strings()),
  dns: v.optional(strings()),
  labels: v.optional(v.record(v.string())),
  memory: v.optional(v.number()),
  memorySwap: v.optional(v.number()),
  cpus: v.optional(v.number()),
  cpuShares: v.optional(v.number()),
  pidsLimit: v.optional(v.number()),
  capAdd: v.optional(strings()),
  capDrop: v.optional(strings()),
  privileged: v.optional(v.boolean()),
  securityOpt: v.optional(strings()),
  ulimits: v.optional(strings()),
  init: v.optional(v.boolean()),
  readOnly: v.optional(v.boolean()),
  mounts: v.optional(strings()),
  tmpfs: v.optional(strings()),
  groupAdd: v.optional(strings()),
  devices: v.optional(strings()),
  pid: v.optional(v.literal('host')),
  ipc: v.optional(v.literal('host')),
  userns: v.optional(v.literal('host', 'auto')),
  idmapMounts: v.optional(
    v.array(v.object({ target: v.string({ min: 1 }), uid: id(), gid: id(), containerUid: v.optional(id()), containerGid: v.optional(id()) })),
  ),
};

/** Every field of {@link ExecOptions}. */
export const execOptionFields = {
  container: containerRef(),
  cmd: v.array(v.string(), { min: 1 }),
  env: v.optional(strings()),
  workdir: v.optional(v.string()),
  user: v.optional(v.string()),
  tty: v.optional(v.boolean()),
  interactive: v.optional(v.boolean()),
  size: v.optional(terminalSize()),
};
