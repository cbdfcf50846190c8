/** Blob fetch with resume: a cut connection continues with a Range request from the last byte received. */
import { Readable } from 'node:stream';
import { CancelledError, RegistryError, SizeMismatchError } from '../errors';
import type { ImageReference } from '../reference';
import type { Descriptor } from '../types';
import { discard, errCode, isRetryableError, sleep, type Endpoint, type RequestOptions, type Response } from './http';

/** What the blob stream needs of the client. */
export interface BlobClient {
  readonly attempts: number;
  endpoints(ref: ImageReference): Endpoint[];
  send(ep: Endpoint, url: string, opts: RequestOptions): Promise<Response>;
  statusError(ep: Endpoint, res: Response, what: string, image: string): Promise<Error>;
  backoff(failures: number): number;
}

/**
 * The bytes of blob `desc` from `offset` on, as a stream. A connection cut
 * mid-blob is resumed with a `Range` request (counted against the retry
 * budget); the stream never yields more than `desc.size` bytes in total.
 * Digest verification is the consumer's (it hashes as it goes).
 */
export function blobStream(client: BlobClient, ref: ImageReference, desc: Descriptor, opts: { offset?: number; signal?: AbortSignal; prefer?: Endpoint } = {}): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    let offset = opts.offset ?? 0;
    if (offset >= desc.size) return;
    let failures = 0;
    const endpoints = client.endpoints(ref);
    if (opts.prefer) endpoints.sort((a, b) => (a.url === opts.prefer!.url ? -1 : b.url === opts.prefer!.url ? 1 : 0));
    let epIndex = 0;
    let lastError: unknown;
    while (offset < desc.size) {
      if (opts.signal?.aborted) throw new CancelledError(`blob ${desc.digest}`);
      const ep = endpoints[epIndex];
      let res: Response;
      try {
        res = await client.send(ep, `${ep.url}/v2/${ref.repository}/blobs/${desc.digest}`, {
          headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
          scope: `repository:${ref.repository}:pull`,
          signal: opts.signal,
        });
      } catch (err) {
        if (err instanceof CancelledError || epIndex + 1 >= endpoints.length) throw err;
        lastError = err;
        epIndex++;
        continue;
      }
      if (res.status !== 200 && res.status !== 206) {
        const err = await client.statusError(ep, res, `blob ${desc.digest}`, `${ref.registry}/${ref.repository}@${desc.digest}`);
        if (epIndex + 1 < endpoints.length) {
          lastError = err;
          epIndex++;
          continue;
        }
        throw err;
      }
      let skip = 0;
      if (offset > 0 && res.status === 200) skip = offset; // the server ignored Range: drop what we have
      try {
        for await (const raw of res.body) {
          let chunk = raw as Buffer;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          if (offset + chunk.length > desc.size) {
            discard(res.body);
            throw new SizeMismatchError(`blob ${desc.digest} from registry ${ep.host}`, desc.size, offset + chunk.length);
          }
          offset += chunk.length;
          yield chunk;
        }
        if (offset < desc.size) throw Object.assign(new Error('connection closed before the end of the blob'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
      } catch (err) {
        if (opts.signal?.aborted) throw new CancelledError(`blob ${desc.digest}`);
        if (!isRetryableError(err) || ++failures >= client.attempts) {
          if (isRetryableError(err)) {
            throw new RegistryError('E_REGISTRY_UNREACHABLE', `blob ${desc.digest} from registry ${ep.host}: download failed at byte ${offset} of ${desc.size} after ${failures} attempts: ${errCode(err)}`, { cause: err });
          }
          throw err;
        }
        await sleep(client.backoff(failures), opts.signal);
      }
    }
    void lastError;
  }
  return Readable.from(gen(), { objectMode: false });
}
