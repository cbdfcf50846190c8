/**
 * `capsa cp`: the client does the host side with its own rights and moves a
 * tar to or from the helper, which resolves every path inside the
 * container's root (a created or stopped container's is read from its
 * layers and written to its upper directory). Tars travel in chunks a request each (base64, at most
 * COPY_CHUNK bytes raw), so both sides hold one chunk at a time; a session
 * belongs to the connection that opened it and ends with its last chunk, an
 * error, or the connection. Re-exported by index.ts.
 */
import { RequestType } from 'vscode-jsonrpc';
import { v } from './validate';
import { containerRef } from './schemas';

/** Largest chunk of a copy's tar, raw bytes, either way. */
export const COPY_CHUNK = 1024 * 1024;

const containerPath = () => v.string({ min: 1, max: 4096, expected: 'an absolute path in the container' });
const session = () => v.string({ min: 1, max: 64, expected: 'a copy session id' });

/** What a path in the container is (`cp`'s path rules depend on it). */
export namespace ContainerPathStatRequest {
  export const method = 'capsa/container/path-stat' as const;
  export const type = new RequestType<ContainerPathStatParams, ContainerPathStat, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), path: containerPath(), follow: v.optional(v.boolean()) });
}
export interface ContainerPathStatParams {
  container: string;
  path: string;
  /** Follow a symlink at the last component (inside the container's root). */
  follow?: boolean;
}
export interface ContainerPathStat {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  size: number;
  linkTarget?: string;
}

/** Starts reading the tar of a path in the container: one entry named after its last component. */
export namespace ContainerArchiveOpenReadRequest {
  export const method = 'capsa/container/archive/open-read' as const;
  export const type = new RequestType<ContainerArchiveOpenReadParams, { session: string; stat: ContainerPathStat }, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), path: containerPath(), follow: v.optional(v.boolean()) });
}
export interface ContainerArchiveOpenReadParams {
  container: string;
  path: string;
  /** `-L`: follow a symlink at the source's last component. */
  follow?: boolean;
}

/** The next chunk of a read session's tar. */
export namespace ContainerArchiveReadRequest {
  export const method = 'capsa/container/archive/read' as const;
  export const type = new RequestType<{ session: string }, { data: string; eof: boolean }, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ session: session() });
}

/** Starts extracting a tar into a directory of the container. */
export namespace ContainerArchiveOpenWriteRequest {
  export const method = 'capsa/container/archive/open-write' as const;
  export const type = new RequestType<ContainerArchiveOpenWriteParams, { session: string }, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ container: containerRef(), path: containerPath(), copyIds: v.optional(v.boolean()) });
}
export interface ContainerArchiveOpenWriteParams {
  container: string;
  /** The directory to extract into; it must exist. */
  path: string;
  /** `-a`: keep the tar's uid/gid (as the container sees ids); default: the container's root. */
  copyIds?: boolean;
}

/** A chunk of a write session's tar; with `eof`, the answer comes once everything is extracted. */
export namespace ContainerArchiveWriteRequest {
  export const method = 'capsa/container/archive/write' as const;
  export const type = new RequestType<{ session: string; data: string; eof?: boolean }, { entries?: number }, void>(method);
  /** What the params must be; checked before any handler runs (./validate.ts). */
  export const params = v.object({ session: session(), data: v.string({ max: Math.ceil(COPY_CHUNK / 3) * 4, expected: 'base64 of at most 1 MiB' }), eof: v.optional(v.boolean()) });
}
