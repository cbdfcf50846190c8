/**
 * Applies a layer's entries on a worker thread, in order, in batches.
 *
 * Unpacking a layer of many small files is mostly file creation: open(2),
 * write(2), futimens(2), close(2) and sometimes fchown/fchmod, each a few
 * hundred microseconds of kernel time on ext4, plus mkdir, symlink, lchown
 * and chmod for the directories and links. Issued as async fs calls from
 * the main thread, each is one round trip through the libuv pool (a queue
 * lock, a futex wake, an eventfd write, an epoll wakeup), which costs about
 * as much kernel time again, and the pool's threads contend on the same
 * directories. Here one worker runs a whole batch with synchronous calls, in
 * the archive's order, and answers once, so the main thread (tar parsing,
 * hashing) and the worker (the file system) each keep one core busy, while
 * zlib inflates on the pool. Since the worker keeps the order, an entry may
 * be queued before the directory it goes into has been made.
 *
 * The worker only executes: every decision (path resolution inside the
 * layer, owner checks, whether chown/chmod are needed) is made by the
 * unpacker before an operation is queued. Files are created
 * O_EXCL|O_NOFOLLOW, directories and symlinks by mkdir and symlink (which
 * fail on anything in their place), owners set by lchown: nothing that
 * exists, or a symlink planted in its place, is ever written through. One
 * worker serves the whole process; it is unref'd while idle.
 */
import { constants as fsc } from 'node:fs';
import { Worker } from 'node:worker_threads';

/** A regular file, created with its contents in one go. */
export interface SmallFile {
  kind: 'file';
  /** Absolute path; the parent is a directory the unpacker resolved inside the layer. */
  path: string;
  data: Uint8Array;
  /** Permission and special bits (07777). */
  mode: number;
  /** Owner to set with fchown, when open(2) would not give it. */
  owner?: { uid: number; gid: number };
  /** fchmod after the write (after fchown, which clears setuid/setgid). */
  chmod: boolean;
  /** Seconds since the epoch. */
  atime: number;
  mtime: number;
}

/** mkdir(path, 0700 or `mode`), then optionally lchown and chmod. */
export interface MakeDir {
  kind: 'mkdir';
  path: string;
  /** Mode for mkdir itself (the umask applies). */
  createMode: number;
}

/** lchown, then chmod unless `mode` is undefined (a symlink's). */
export interface SetAttrs {
  kind: 'attrs';
  path: string;
  owner: { uid: number; gid: number };
  mode?: number;
}

/** symlink(target, path), then lchown when `owner`, then lutimes. */
export interface MakeSymlink {
  kind: 'symlink';
  path: string;
  target: string;
  owner?: { uid: number; gid: number };
  atime: number;
  mtime: number;
}

/** utimes of a directory (set last, as creating entries in it changes its mtime). */
export interface SetTimes {
  kind: 'utimes';
  path: string;
  atime: number;
  mtime: number;
}

/** Opens a large file (created like a small one) to stream its contents with `append`. */
export interface OpenFile {
  kind: 'open';
  /** Chosen by the unpacker, unique among the files it has open. */
  id: number;
  path: string;
  mode: number;
}

/** Appends to a file opened by `open`. */
export interface AppendFile {
  kind: 'append';
  id: number;
  data: Uint8Array;
}

/** Finishes a file opened by `open` as `file` does (owner, mode, times), or only closes it when `discard`. */
export interface CloseFile {
  kind: 'close';
  id: number;
  discard?: boolean;
  owner?: { uid: number; gid: number };
  chmod?: boolean;
  mode?: number;
  atime?: number;
  mtime?: number;
}

export type WriteOp = SmallFile | MakeDir | SetAttrs | MakeSymlink | SetTimes | OpenFile | AppendFile | CloseFile;

interface Reply {
  id: number;
  errors: Array<{ index: number; code?: string; syscall?: string; message: string }>;
}

const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** The worker's code: plain JavaScript run from a string, so bundling needs no second entry point. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const open = new Map();
function write(fd, data, op) {
  let off = 0;
  while (off < op.length) off += fs.writeSync(fd, data, op.offset + off, op.length - off);
}
function finish(fd, f) {
  if (f.owner) fs.fchownSync(fd, f.owner.uid, f.owner.gid);
  if (f.chmod) fs.fchmodSync(fd, f.mode);
  fs.futimesSync(fd, f.atime, f.mtime);
}
function file(f, data) {
  let fd;
  try {
    fd = fs.openSync(f.path, ${CREATE_FLAGS}, f.mode & 0o777);
    write(fd, data, f);
    finish(fd, f);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
function opened(id) {
  const fd = open.get(id);
  if (fd === undefined) throw new Error('file #' + id + ' is not open (its open failed)');
  return fd;
}
parentPort.on('message', ({ id, ops, data }) => {
  const errors = [];
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    try {
      switch (op.kind) {
        case 'file': file(op, data); break;
        case 'mkdir': fs.mkdirSync(op.path, op.createMode); break;
        case 'attrs':
          fs.lchownSync(op.path, op.owner.uid, op.owner.gid);
          if (op.mode !== undefined) fs.chmodSync(op.path, op.mode);
          break;
        case 'symlink':
          fs.symlinkSync(op.target, op.path);
          if (op.owner) fs.lchownSync(op.path, op.owner.uid, op.owner.gid);
          fs.lutimesSync(op.path, op.atime, op.mtime);
          break;
        case 'utimes': fs.utimesSync(op.path, op.atime, op.mtime); break;
        case 'open': open.set(op.id, fs.openSync(op.path, ${CREATE_FLAGS}, op.mode & 0o777)); break;
        case 'append': write(opened(op.id), data, op); break;
        case 'close': {
          const fd = open.get(op.id);
          if (fd === undefined) break;
          open.delete(op.id);
          try {
            if (!op.discard) finish(fd, op);
          } finally {
            fs.closeSync(fd);
          }
          break;
        }
        default: throw new Error('unknown operation ' + op.kind);
      }
    } catch (err) {
      errors.push({ index: i, code: err.code, syscall: err.syscall, message: err.message });
    }
  }
  parentPort.postMessage({ id, errors });
});
`;

interface Waiting {
  resolve: (errors: Array<Error | undefined>) => void;
  reject: (err: Error) => void;
  count: number;
}

class FileWriter {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly waiting = new Map<number, Waiting>();

  /** Runs `ops` in order; resolves with one entry per operation: undefined, or the error it met. */
  write(ops: WriteOp[]): Promise<Array<Error | undefined>> {
    const worker = this.start();
    const id = this.nextId++;
    // One buffer for the batch's file contents, moved to the worker, not copied.
    // (Cloning a file's own view would copy the whole chunk it is a slice of.)
    let total = 0;
    for (const op of ops) if ('data' in op) total += op.data.length;
    const data = new Uint8Array(total);
    let offset = 0;
    const meta = ops.map((op) => {
      if (!('data' in op)) return op;
      data.set(op.data, offset);
      const m = { ...op, data: undefined, offset, length: op.data.length };
      offset += op.data.length;
      return m;
    });
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, count: ops.length });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ id, ops: meta, data }, [data.buffer]);
    });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true, name: 'capsa-unpack-files' });
    worker.unref();
    worker.on('message', (reply: Reply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if (this.waiting.size === 0) worker.unref();
      const out: Array<Error | undefined> = new Array(w.count).fill(undefined);
      for (const e of reply.errors) {
        out[e.index] ??= Object.assign(new Error(e.message), { code: e.code, syscall: e.syscall });
      }
      w.resolve(out);
    });
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = undefined;
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`unpack file writer exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}

let shared: FileWriter | undefined;

/** The process's file writer. */
export function fileWriter(): FileWriter {
  return (shared ??= new FileWriter());
}
