/**
 * The Engine API's routes: versioned paths (`/v1.NN/…`, from
 * MIN_API_VERSION to API_VERSION) and the same paths unversioned, each
 * endpoint gated by the protocol method it stands for (handlers/access.ts
 * mayCall), so that a caller other than root reaches through this door
 * exactly what it reaches through the JSON-RPC one.
 */
import { mayCall, notEnabled } from '../handlers/access';
import { EngineRequestError } from './errors';
import type { EngineRequest } from './http';

/** The newest API version the endpoints here honour, and the oldest path prefix accepted. */
export const API_VERSION = '1.43';
export const MIN_API_VERSION = '1.24';

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'DELETE';

export interface Route {
  method: Method;
  /** `/containers/{id}/json`; `{name*}` matches across slashes (image names have them). */
  path: string;
  /** The protocol method whose policy applies (mayCall); `null`: open to every caller (the handshake: _ping, version). */
  access: string | null;
  /** Whether the endpoint serves a hijacked connection (Upgrade: tcp) when the client asks for one. */
  hijack?: boolean;
  handle(r: EngineRequest): Promise<void> | void;
}

interface Compiled {
  route: Route;
  pattern: RegExp;
  names: string[];
}

export interface Match {
  route: Route;
  params: Record<string, string>;
  version: string;
}

export class Router {
  private readonly compiled: Compiled[];

  constructor(routes: Route[]) {
    this.compiled = routes.map((route) => {
      const names: string[] = [];
      const source = route.path
        .split('/')
        .map((seg) => {
          const m = /^\{([a-zA-Z]+)(\*?)\}$/.exec(seg);
          if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
          names.push(m[1]);
          return m[2] ? '(.+)' : '([^/]+)';
        })
        .join('/');
      return { route, pattern: new RegExp(`^${source}$`), names };
    });
  }

  /** The route for `method` and `pathname`, or the 404/405-like refusal Docker gives (`page not found`). */
  match(method: string, pathname: string): Match {
    let version = API_VERSION;
    const v = /^\/v(\d+\.\d+)(\/.*)$/.exec(pathname);
    if (v) {
      version = v[1];
      if (compareVersions(version, API_VERSION) > 0) {
        throw new EngineRequestError(400, `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`);
      }
      if (compareVersions(version, MIN_API_VERSION) < 0) {
        throw new EngineRequestError(400, `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`);
      }
      pathname = v[2];
    }
    for (const c of this.compiled) {
      if (c.route.method !== method && !(method === 'HEAD' && c.route.method === 'GET')) continue;
      const m = c.pattern.exec(pathname);
      if (!m) continue;
      const params: Record<string, string> = {};
      try {
        c.names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1])));
      } catch {
        throw new EngineRequestError(400, 'the path is not valid percent-encoding');
      }
      return { route: c.route, params, version };
    }
    throw new EngineRequestError(404, 'page not found');
  }

  /** Throws unless the request's caller may use `route` (the JSON-RPC door's policy). */
  static authorise(route: Route, r: Pick<EngineRequest, 'caller'>): void {
    if (route.access !== null && !mayCall(r.caller, route.access)) throw notEnabled(route.access, r.caller);
  }
}

/** -1, 0 or 1 as `a` (`1.41`) is older than, the same as or newer than `b`. */
export function compareVersions(a: string, b: string): number {
  const [am, an] = a.split('.').map(Number);
  const [bm, bn] = b.split('.').map(Number);
  return am !== bm ? Math.sign(am - bm) : Math.sign(an - bn);
}
