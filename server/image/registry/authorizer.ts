/**
 * The registry auth flow (distribution's token authentication): remember the
 * challenge an origin answered with, then authenticate up front: Basic with
 * the host's credentials, or a Bearer token for the scope from the
 * challenge's realm (cached per realm, service, scope and user). Tokens and
 * passwords never appear in messages.
 */
import { checkSize, exceeded, LimitExceededError, LIMITS, readCapped } from '../../limits';
import { CancelledError, RegistryAuthError } from '../errors';
import { basicAuthorization, credentialLookup, dockerConfigCredentials, TokenCache, type CredentialLookup, type Credentials } from '../auth';
import { discard, errCode, header, readErrorBody, type Endpoint, type Response } from './http';

export interface AuthorizerOptions {
  /** Extra credentials by registry host, tried before Docker's config.json. */
  credentials?: Record<string, Credentials>;
  /** Docker config file to read `auths` from; `false` to read none. */
  dockerConfig?: string | false;
  /** A GET that follows redirects without carrying Authorization off its host (the client's). */
  follow: (url: string, headers: Record<string, string>, signal?: AbortSignal) => Promise<Response>;
}

export class Authorizer {
  private readonly tokens = new TokenCache();
  /** Origin → the auth scheme it challenged with last, so later requests authenticate up front. */
  private readonly challenges = new Map<string, { scheme: string; params: Record<string, string> }>();
  /** Capsa's own credentials, then Docker's config.json, read once on first use, asynchronously and bounded. */
  private credentialsLoaded: Promise<CredentialLookup> | undefined;

  constructor(private readonly opts: AuthorizerOptions) {}

  /** Remembers the challenge `ep` answered a request with. */
  challenged(ep: Endpoint, challenge: { scheme: string; params: Record<string, string> }): void {
    this.challenges.set(new URL(ep.url).origin, challenge);
  }

  /** Forgets the challenge remembered for `ep`: the next request asks the registry again. */
  forgetChallenge(ep: Endpoint): void {
    this.challenges.delete(new URL(ep.url).origin);
  }

  private async credentials(host: string): Promise<Credentials | undefined> {
    this.credentialsLoaded ??= (async () => {
      const docker = this.opts.dockerConfig === false ? undefined : await dockerConfigCredentials(this.opts.dockerConfig);
      return credentialLookup(this.opts.credentials, docker);
    })().catch((err: unknown) => {
      // A config.json over its limit fails this pull; the next one reads the file again.
      this.credentialsLoaded = undefined;
      throw err;
    });
    return (await this.credentialsLoaded)(host);
  }

  /** Drops the token held for `scope` at `ep`: the registry just refused it. */
  async forgetToken(ep: Endpoint, scope: string): Promise<void> {
    const ch = this.challenges.get(new URL(ep.url).origin);
    if (ch?.scheme !== 'bearer') return;
    const creds = await this.credentials(ep.host);
    this.tokens.delete(TokenCache.key(ch.params.realm ?? '', ch.params.service ?? '', scope, creds?.username));
  }

  /** The Authorization header for a request to `ep`, once it has challenged us. */
  async authorizationFor(ep: Endpoint, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenges.get(new URL(ep.url).origin);
    if (!ch) return undefined;
    const creds = await this.credentials(ep.host);
    if (ch.scheme === 'basic') {
      if (!creds) throw new RegistryAuthError(`registry ${ep.host} requires a username and password, and none is configured for it`, { status: 401 });
      return basicAuthorization(creds);
    }
    const realm = ch.params.realm;
    if (!realm) throw new RegistryAuthError(`registry ${ep.host} sent a Bearer challenge without a realm`, { status: 401 });
    const service = ch.params.service ?? '';
    const key = TokenCache.key(realm, service, scope, creds?.username);
    const cached = this.tokens.get(key);
    if (cached) return `Bearer ${cached}`;
    const u = new URL(realm);
    if (service) u.searchParams.set('service', service);
    // a push that mounts a blob asks for two repositories' scopes at once, space-separated
    for (const s of scope.split(' ').filter(Boolean)) u.searchParams.append('scope', s);
    if (creds) u.searchParams.set('account', creds.username);
    let res: Response;
    try {
      res = await this.opts.follow(u.toString(), creds ? { authorization: basicAuthorization(creds) } : {}, signal);
    } catch (err) {
      if (signal?.aborted) throw new CancelledError(`token request to ${u.host}`);
      throw new RegistryAuthError(`cannot get a token for registry ${ep.host} from ${u.host}: ${errCode(err)}`, { cause: err });
    }
    if (res.status !== 200) {
      const { codes, message } = await readErrorBody(res.body);
      const who = creds ? `user ${JSON.stringify(creds.username)}` : 'anonymous access';
      throw new RegistryAuthError(
        `token request for ${scope} at ${u.host} (registry ${ep.host}) refused for ${who}: HTTP ${res.status}${message ? `: ${message}` : ''}`,
        { status: res.status, registryCodes: codes },
      );
    }
    const where = `answer of token server ${u.host} for registry ${ep.host}`;
    const declared = Number(header(res, 'content-length') ?? '0');
    if (declared > LIMITS.tokenResponse.bytes) {
      discard(res.body);
      throw exceeded(LIMITS.tokenResponse, where, declared);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown } = {};
    try {
      body = JSON.parse((await readCapped(res.body, LIMITS.tokenResponse, where)).toString('utf8')) ?? {};
    } catch (err) {
      if (err instanceof LimitExceededError) throw err;
      if (signal?.aborted) throw new CancelledError(`token request to ${u.host}`);
    }
    const token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' ? body.access_token : undefined;
    if (!token) throw new RegistryAuthError(`token server ${u.host} for registry ${ep.host} answered without a token`);
    // It goes back in a header: one too large would come back as HTTP 431, far from its cause.
    checkSize(LIMITS.bearerToken, `token from ${u.host} for registry ${ep.host}`, Buffer.byteLength(token));
    this.tokens.set(key, token, typeof body.expires_in === 'number' ? body.expires_in : undefined, typeof body.issued_at === 'string' ? body.issued_at : undefined);
    return `Bearer ${token}`;
  }
}
