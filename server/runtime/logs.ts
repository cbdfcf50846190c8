/**
 * Reading the container log the monitor writes (native/src/monitor/logfile.h): CRI
 * records, one a line, `TIME STREAM F|P TEXT`, F ending a line of output and
 * P a piece of one that had not ended when it was read.
 */

export interface LogRecord {
  stream: 'stdout' | 'stderr';
  /** RFC 3339 with nanoseconds, when the monitor read the bytes. */
  time: string;
  /** Base64 of the bytes, the newline included for F records. */
  data: string;
}

/** Parses whole records; a malformed line (a torn write after a crash) is skipped. */
export function parseLog(buf: Buffer): LogRecord[] {
  const out: LogRecord[] = [];
  let start = 0;
  while (start < buf.length) {
    let nl = buf.indexOf(0x0a, start);
    if (nl < 0) nl = buf.length;
    const line = buf.subarray(start, nl);
    start = nl + 1;
    const s1 = line.indexOf(0x20);
    const s2 = s1 < 0 ? -1 : line.indexOf(0x20, s1 + 1);
    if (s2 < 0 || line.length < s2 + 3 || line[s2 + 2] !== 0x20) continue;
    const stream = line.toString('latin1', s1 + 1, s2);
    const tag = line[s2 + 1];
    if ((stream !== 'stdout' && stream !== 'stderr') || (tag !== 0x46 && tag !== 0x50)) continue;
    const text = line.subarray(s2 + 3);
    const data = tag === 0x46 ? Buffer.concat([text, Buffer.from('\n')]) : text;
    out.push({ stream, time: line.toString('latin1', 0, s1), data: data.toString('base64') });
  }
  return out;
}

/** The records of the last n lines (a line's P pieces go with it). */
export function tailRecords(records: LogRecord[], n: number): LogRecord[] {
  if (n <= 0) return [];
  let lines = 0;
  let i = records.length;
  // an unterminated last piece counts as a line of its own
  while (i > 0) {
    const r = records[i - 1];
    const ends = Buffer.from(r.data, 'base64').at(-1) === 0x0a || i === records.length;
    if (ends) {
      if (lines === n) break;
      lines++;
    }
    i--;
  }
  return records.slice(i);
}
