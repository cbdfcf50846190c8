/** A container's log as its monitor wrote it, and following it while the container runs. */
import { promises as fs } from 'node:fs';
import { parseLog, tailRecords, type LogRecord } from '../logs';
import type { Entry } from './entry';
import type { StreamSink } from './streams';

/**
 * The log in `file` of container e; with `follow`, what the monitor writes
 * from then on goes to that sink, read from the same file (so nothing is
 * missed or repeated), until the container ends.
 */
export async function readLogs(e: Entry, file: string, opts: { tail?: number; follow?: StreamSink; signal?: AbortSignal } = {}): Promise<LogRecord[]> {
  const live = opts.follow ? e.live : undefined;
  let offset = 0;
  let reading: Promise<void> = Promise.resolve();
  // registered before the first read: output logged meanwhile is read by the next pump
  const pump = (): Promise<void> =>
    (reading = reading.then(async () => {
      const chunk = await readFrom(file, offset);
      const end = chunk.lastIndexOf(0x0a) + 1;
      offset += end;
      for (const r of parseLog(chunk.subarray(0, end))) opts.follow!.output(r.stream, Buffer.from(r.data, 'base64'), r.time);
    }));
  let detach = (): void => undefined;
  if (live) {
    const sink: StreamSink = { output: () => void pump(), exit: (code, error) => void pump().then(() => { detach(); opts.follow!.exit(code, error); }) };
    live.sinks.add(sink);
    detach = () => live.sinks.delete(sink);
    opts.signal?.addEventListener('abort', detach, { once: true });
  }
  // the head is the first read of the same chain: a pump the sink starts
  // before it ends waits for it, so the follower neither repeats the head
  // nor reads past what the head left off
  let records: LogRecord[] = [];
  const headRead = reading.then(async () => {
    const head = await readFrom(file, 0);
    const end = head.lastIndexOf(0x0a) + 1;
    offset = end;
    records = parseLog(head.subarray(0, end));
  });
  reading = headRead;
  await headRead;
  if (live) void pump();
  else if (opts.follow) {
    const follow = opts.follow;
    setImmediate(() => follow.exit(e.state.exitCode ?? 0, undefined));
  }
  return opts.tail !== undefined ? tailRecords(records, opts.tail) : records;
}

/** Bytes of file from offset to its current end (none if it does not exist). */
async function readFrom(file: string, offset: number): Promise<Buffer> {
  // no log file yet (a container never started) reads as an empty log; any other failure shows at read
  const fh = await fs.open(file, 'r').catch(() => undefined);
  if (!fh) return Buffer.alloc(0);
  try {
    const { size } = await fh.stat();
    if (size <= offset) return Buffer.alloc(0);
    const buf = Buffer.alloc(size - offset);
    const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
