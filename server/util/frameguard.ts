/**
 * A pass-through for a client's JSON-RPC byte stream that refuses what the
 * reader of vscode-jsonrpc would buffer without bound: a header block that
 * never ends, or a message whose Content-Length is above the protocol
 * message limit. The reader keeps parsing the bytes; this only counts them.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { exceeded, formatLimit, LIMITS, type Limit } from '../limits';

const END_OF_HEADER = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = /^content-length:[ \t]*(\d+)[ \t]*$/im;

export class FrameGuard extends Transform {
  /** Body bytes of the current message still to pass. */
  private body = 0;
  /** The header block read so far (only while in a header). */
  private head = Buffer.alloc(0);

  constructor(
    private readonly message: Limit = LIMITS.protocolMessage,
    private readonly header: Limit = LIMITS.protocolHeader,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.body > 0) {
        const n = Math.min(this.body, chunk.length - off);
        this.body -= n;
        off += n;
        continue;
      }
      // within a header: take it line by line up to the blank line that ends it
      const nl = chunk.indexOf(0x0a, off);
      const end = nl === -1 ? chunk.length : nl + 1;
      this.head = Buffer.concat([this.head, chunk.subarray(off, end)]);
      off = end;
      if (this.head.length > this.header.bytes) {
        done(exceeded(this.header, `a header of a client's message (no end after ${formatLimit(this.header.bytes)})`));
        return;
      }
      if (nl === -1 || !this.head.subarray(-4).equals(END_OF_HEADER)) continue;
      const length = CONTENT_LENGTH.exec(this.head.toString('latin1'));
      this.head = Buffer.alloc(0);
      // no length: the reader refuses the message itself
      if (!length) continue;
      const size = Number(length[1]);
      if (!Number.isSafeInteger(size) || size > this.message.bytes) {
        done(exceeded(this.message, 'a message of a client', Number.isSafeInteger(size) ? size : undefined));
        return;
      }
      this.body = size;
    }
    done(null, chunk);
  }
}
