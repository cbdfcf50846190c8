/**
 * Streams as Docker's clients read them: a hijacked connection (the request
 * asked `Upgrade: tcp`; the answer is `101 UPGRADED` and the socket then
 * carries the raw streams both ways), and the multiplexed framing of a
 * container without a tty: each chunk behind an 8-byte header, the stream
 * (1 stdout, 2 stderr) in byte 0 and the length big-endian in bytes 4-7.
 */
import type * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { LIMITS } from '../limits';
import { EngineRequestError } from './errors';

export const RAW_STREAM = 'application/vnd.docker.raw-stream';
export const MULTIPLEXED_STREAM = 'application/vnd.docker.multiplexed-stream';

/**
 * Bytes a stream's client may leave unread before its connection is
 * dropped: a client that stops reading costs the helper at most this much
 * memory, and the container (which writes to its log, not to the client)
 * is not held back.
 */
export const MAX_UNREAD = 8 * 1024 * 1024;

/** Writes `data` to a client's stream, or drops the connection of a client that has stopped reading. */
export function writeOrDrop(out: { destroyed: boolean; writableLength: number; write(data: Buffer): boolean; destroy(): void }, data: Buffer): void {
  if (out.destroyed) return;
  if (out.writableLength > MAX_UNREAD) {
    out.destroy();
    return;
  }
  out.write(data);
}

/** Most bytes in one frame: a chunk longer than this goes as several (the length field could carry more, readers need not). */
const MAX_FRAME = 1024 * 1024;

/** `data` of `stream` behind the multiplexed header(s). */
export function frame(stream: 'stdout' | 'stderr', data: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_FRAME) {
    const chunk = data.subarray(off, off + MAX_FRAME);
    const header = Buffer.alloc(8);
    header[0] = stream === 'stdout' ? 1 : 2;
    header.writeUInt32BE(chunk.length, 4);
    parts.push(header, chunk);
  }
  return Buffer.concat(parts);
}

/** Whether the client asked to hijack the connection (Docker's clients send `Connection: Upgrade` and `Upgrade: tcp`). */
export function wantsUpgrade(req: http.IncomingMessage): boolean {
  return /\bupgrade\b/i.test(req.headers.connection ?? '') && /^tcp$/i.test(req.headers.upgrade ?? '');
}

/** Answers a hijack: from here on the socket carries the streams. */
export function upgrade(socket: Duplex, contentType: string): void {
  socket.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`);
}

/** A plain answer on a socket whose request came as an upgrade (it was refused before the hijack); the connection then closes. */
export function answerOnSocket(socket: Duplex, status: number, body: unknown): void {
  if (socket.destroyed) return;
  const text = JSON.stringify(body);
  socket.end(`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`);
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
};

/**
 * The body of an upgrade request (Node's parser leaves it in `head` and the
 * socket): exactly Content-Length bytes, bounded by the body limit; what
 * follows is the client's stream, and is given back in `rest`.
 */
export function readUpgradeBody(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<{ body: Buffer; rest: Buffer }> {
  const declared = req.headers['content-length'];
  const length = declared === undefined ? 0 : Number(declared);
  if (!Number.isSafeInteger(length) || length < 0) return Promise.reject(new EngineRequestError(400, 'invalid Content-Length'));
  if (length > LIMITS.engineRequestBody.bytes) return Promise.reject(new EngineRequestError(413, `the request body exceeds the ${LIMITS.engineRequestBody.name} limit`));
  if (head.length >= length) return Promise.resolve({ body: head.subarray(0, length), rest: head.subarray(length) });
  return new Promise((resolve, reject) => {
    let got = head;
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      if (got.length < length) return;
      done();
      socket.pause();
      resolve({ body: got.subarray(0, length), rest: got.subarray(length) });
    };
    const onEnd = (): void => {
      done();
      reject(new EngineRequestError(400, 'the request body ended before its declared length'));
    };
    const done = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}

/** JSON of an upgrade request's body, `{}` when empty. */
export function parseBody(body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8').trim();
  if (text === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new EngineRequestError(400, `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new EngineRequestError(400, 'the request body must be a JSON object');
  return v as Record<string, unknown>;
}
