/**
 * The warm CLI's messages: between the compiled client (native/client/client.c,
 * which mirrors this file) and a warm CLI process, one SOCK_SEQPACKET
 * connection on the socket `warmCliSocketPath()` names. Integers are
 * little-endian u32.
 *
 *   warm   → client  'H' version                 hello, sent on accept; a client that gets no
 *                                                 hello in time, or another version, runs the
 *                                                 Node CLI instead (nothing was sent yet)
 *   client → warm    the request, with SCM_RIGHTS carrying the client's fds 0, 1 and 2:
 *                      "CPSA" version argc envc umask 0
 *                      argc + envc + 1 NUL-terminated strings: argv[1..], environ, cwd
 *   warm   → client  'P' pid                     the CLI runs as `pid`; forward signals there
 *                    'S' status                  the CLI's exit status, last
 *                    'E' message                 refused: print it, exit 125
 *                    'F' reason                  this helper is not the one the client's
 *                                                 configuration names: run the Node CLI
 */
import { CapsaError } from '../../errors';

export const WARM_VERSION = 1;
const MAGIC = Buffer.from('CPSA');
const HEADER = 24;
/** A request is at most this long (header and strings); the client checks before sending. */
export const MAX_REQUEST = 256 * 1024;

/** A request the warm CLI refuses; its message goes back to the client. */
export class WarmRequestError extends CapsaError {
  constructor(message: string) {
    super('E_WARM_REQUEST', message);
  }
}

export interface WarmRequest {
  /** The command line after the program name. */
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  umask: number;
}

/** Parses one request message; `truncated` says the kernel cut it at the receive buffer. */
export function parseRequest(data: Buffer, truncated = false): WarmRequest {
  if (truncated) throw new WarmRequestError(`request larger than ${MAX_REQUEST} bytes: the command line and environment are too long for the warm CLI`);
  if (data.length < HEADER || !data.subarray(0, 4).equals(MAGIC)) {
    throw new WarmRequestError('not a capsa warm CLI request (bad header): the warm CLI socket is only for the capsa command');
  }
  const version = data.readUInt32LE(4);
  if (version !== WARM_VERSION) {
    throw new WarmRequestError(`warm CLI request version ${version}, this helper speaks ${WARM_VERSION}: the capsa client and the helper come from different builds`);
  }
  const argc = data.readUInt32LE(8);
  const envc = data.readUInt32LE(12);
  const umask = data.readUInt32LE(16);
  if (umask > 0o777) throw new WarmRequestError(`invalid umask ${umask.toString(8)} in the warm CLI request`);
  const strings: string[] = [];
  let at = HEADER;
  const wanted = argc + envc + 1;
  while (strings.length < wanted) {
    const end = data.indexOf(0, at);
    if (end < 0) break;
    strings.push(data.toString('utf8', at, end));
    at = end + 1;
  }
  if (strings.length < wanted) {
    throw new WarmRequestError(`truncated warm CLI request: the header announces ${argc} arguments and ${envc} environment entries, ${strings.length} of ${wanted} strings are there`);
  }
  if (at !== data.length) throw new WarmRequestError(`malformed warm CLI request: ${data.length - at} bytes after its last string`);
  const env: Record<string, string> = {};
  for (const e of strings.slice(argc, argc + envc)) {
    const eq = e.indexOf('=');
    if (eq > 0) env[e.slice(0, eq)] = e.slice(eq + 1); // as getenv(3): an entry without a name or '=' names nothing
  }
  const cwd = strings[argc + envc];
  if (!cwd.startsWith('/')) throw new WarmRequestError(`malformed warm CLI request: working directory ${JSON.stringify(cwd)} is not absolute`);
  return { argv: strings.slice(0, argc), env, cwd, umask };
}

/** The request as the client sends it (tests speak it; the client is C). */
export function encodeRequest(req: { argv: string[]; env: string[]; cwd: string; umask?: number; version?: number }): Buffer {
  const header = Buffer.alloc(HEADER);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(req.version ?? WARM_VERSION, 4);
  header.writeUInt32LE(req.argv.length, 8);
  header.writeUInt32LE(req.env.length, 12);
  header.writeUInt32LE(req.umask ?? 0o022, 16);
  return Buffer.concat([header, ...[...req.argv, ...req.env, req.cwd].map((s) => Buffer.from(`${s}\0`))]);
}

function tagged(tag: string, n: number): Buffer {
  const b = Buffer.alloc(5);
  b.write(tag, 0, 'latin1');
  b.writeUInt32LE(n >>> 0, 1);
  return b;
}

export const reply = {
  hello: (): Buffer => tagged('H', WARM_VERSION),
  pid: (pid: number): Buffer => tagged('P', pid),
  status: (code: number): Buffer => tagged('S', code),
  error: (message: string): Buffer => Buffer.from(`E${message}`),
  fallback: (reason: string): Buffer => Buffer.from(`F${reason}`),
};

export type Reply = { tag: 'H' | 'P' | 'S'; value: number } | { tag: 'E' | 'F'; text: string };

/** Decodes one reply (what the client does; tests use it). */
export function parseReply(data: Buffer): Reply | undefined {
  const tag = data.toString('latin1', 0, 1);
  if ((tag === 'H' || tag === 'P' || tag === 'S') && data.length === 5) return { tag, value: data.readUInt32LE(1) };
  if (tag === 'E' || tag === 'F') return { tag, text: data.toString('utf8', 1) };
  return undefined;
}
