/**
 * Creates small regular files on a worker thread, in batches.
 *
 * Unpacking a layer of many small files is mostly file creation: open(2),
 * write(2), futimens(2), close(2) and sometimes fchown/fchmod, each a few
 * hundred microseconds of kernel time on ext4. Issued as async fs calls from
 * the main thread, each is one round trip through the libuv pool (a queue
 * lock, a futex wake, an eventfd write, an epoll wakeup), which costs about
 * as much kernel time again, and the pool's threads contend on the same
 * directories. Here one worker makes a whole batch with synchronous calls
 * and answers once, so the main thread (tar parsing, hashing) and the worker
 * (file creation) each keep one core busy, while zlib inflates on the pool.
 *
 * The worker only executes: every decision (path resolution inside the
 * layer, owner checks, whether chown/chmod are needed) is made by the
 * unpacker before a file is queued. Files are created O_EXCL|O_NOFOLLOW, so
 * nothing that exists (or a symlink planted in its place) is ever written
 * through. One worker serves the whole process; it is unref'd while idle.
 */
import { constants as fsc } from 'node:fs';
import { Worker } from 'node:worker_threads';

export interface SmallFile {
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

interface Reply {
  id: number;
  errors: Array<{ index: number; code?: string; syscall?: string; message: string }>;
}

const CREATE_FLAGS = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

/** The worker's code: plain JavaScript run from a string, so bundling needs no second entry point. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
parentPort.on('message', ({ id, files, data }) => {
  const errors = [];
  for (let i = 0; i < files.length; i++) {
    const f = files[i];
    let fd;
    try {
      fd = fs.openSync(f.path, ${CREATE_FLAGS}, f.mode & 0o777);
      let off = 0;
      while (off < f.length) off += fs.writeSync(fd, data, f.offset + off, f.length - off);
      if (f.owner) fs.fchownSync(fd, f.owner.uid, f.owner.gid);
      if (f.chmod) fs.fchmodSync(fd, f.mode);
      fs.futimesSync(fd, f.atime, f.mtime);
    } catch (err) {
      errors.push({ index: i, code: err.code, syscall: err.syscall, message: err.message });
    } finally {
      if (fd !== undefined) {
        try { fs.closeSync(fd); } catch (err) { errors.push({ index: i, code: err.code, syscall: 'close', message: err.message }); }
      }
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

  /** Creates `files`; resolves with one entry per file: undefined, or the error creating it. */
  write(files: SmallFile[]): Promise<Array<Error | undefined>> {
    const worker = this.start();
    const id = this.nextId++;
    // One buffer for the batch's contents, moved to the worker, not copied.
    // (Cloning a file's own view would copy the whole chunk it is a slice of.)
    let total = 0;
    for (const f of files) total += f.data.length;
    const data = new Uint8Array(total);
    let offset = 0;
    const meta = files.map((f) => {
      data.set(f.data, offset);
      const m = { path: f.path, offset, length: f.data.length, mode: f.mode, owner: f.owner, chmod: f.chmod, atime: f.atime, mtime: f.mtime };
      offset += f.data.length;
      return m;
    });
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, count: files.length });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ id, files: meta, data }, [data.buffer]);
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
