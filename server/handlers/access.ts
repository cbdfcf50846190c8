/**
 * Who a connection acts as, and what it may ask for. Each connection carries
 * the Caller the kernel gave at accept (server/util/peercred.ts); handlers
 * read it as `connection.caller`, never from a message.
 *
 * A caller other than root may send the handshake (`initialize`,
 * `capsa/version`) and the methods of USER_METHODS, each of which its
 * handler scopes to the caller's own objects; every other request is refused
 * (with a socket an administrator widened, socketMode and socketGroup, any
 * other answer would hand that user root's reach). Root keeps the whole
 * protocol.
 */
import type { CancellationToken, Disposable } from 'vscode-jsonrpc';
import type { Connection } from 'vscode-languageserver/node';
import { PermissionDeniedError } from '../errors';
import {
  ContainerArchiveOpenReadRequest,
  ContainerArchiveOpenWriteRequest,
  ContainerArchiveReadRequest,
  ContainerArchiveWriteRequest,
  ContainerAttachRequest,
  ContainerCommitRequest,
  ImageBuildRequest,
  BuilderPruneRequest,
  ContainerDiffRequest,
  ContainerCreateRequest,
  ContainerExecRequest,
  ContainerInspectRequest,
  ContainerKillRequest,
  ContainerListRequest,
  ContainerLogsRequest,
  ContainerPathStatRequest,
  ContainerPruneRequest,
  ContainerRemoveRequest,
  ContainerRestartRequest,
  ContainerRunRequest,
  ContainerStartRequest,
  ContainerStopRequest,
  ContainerTopRequest,
  ContainerWaitRequest,
  ImageHistoryRequest,
  ImageListRequest,
  ImageLoadRequest,
  ImagePruneRequest,
  ImageInspectRequest,
  ImagePullRequest,
  ImagePushRequest,
  ImageLoginRequest,
  ImageRemoveRequest,
  ImageSaveRequest,
  ImageTagRequest,
  NetworkCreateRequest,
  NetworkInspectRequest,
  NetworkListRequest,
  NetworkPruneRequest,
  NetworkRemoveRequest,
  StreamCloseNotification,
  StreamInputNotification,
  StreamResizeNotification,
  SystemDfRequest,
  VersionRequest,
  VolumeCreateRequest,
  VolumeInspectRequest,
  VolumeListRequest,
  VolumePruneRequest,
  VolumeRemoveRequest,
} from '../protocol';
import { WorkDoneProgressCancelNotification } from 'vscode-languageserver/node';
import type { Caller } from '../util/peercred';
import { printable } from '../util/text';
import { toResponseError } from './errors';

/** A connection with the identity the kernel gave it. */
export interface ClientConnection extends Connection {
  readonly caller: Caller;
}

/** What any caller may ask (LSP's initialize and shutdown are handled by the connection itself, and always answered). */
const HANDSHAKE: ReadonlySet<string> = new Set([VersionRequest.method]);

/**
 * What a caller other than root may send beyond the handshake, each because
 * its handler acts only on the caller's own objects.
 */
const USER_METHODS: ReadonlySet<string> = new Set([
  VolumeCreateRequest.method, // creates a volume owned by the caller (handlers/volumes.ts, runtime/volumes.ts)
  VolumeListRequest.method, // lists the caller's own volumes
  VolumeInspectRequest.method, // the caller's own volume; another's is not found
  VolumeRemoveRequest.method, // the caller's own volume; another's is not found
  VolumePruneRequest.method, // the caller's own unused volumes
  NetworkCreateRequest.method, // creates a network owned by the caller (handlers/networks.ts, runtime/network/manager.ts)
  NetworkListRequest.method, // the built-in network and the caller's own
  NetworkInspectRequest.method, // the caller's own network (members: its own containers); another's is not found
  NetworkRemoveRequest.method, // the caller's own network; another's is not found
  NetworkPruneRequest.method, // the caller's own unused networks
  // containers: each names one of the caller's own (handlers/containers.ts, idOf with the caller's uid), or lists or prunes only its own;
  // run and create make one owned by the caller, unprivileged by construction (runtime/container/unprivileged.ts)
  ContainerRunRequest.method,
  ContainerCreateRequest.method,
  ContainerListRequest.method,
  ContainerInspectRequest.method,
  ContainerLogsRequest.method,
  ContainerAttachRequest.method,
  ContainerExecRequest.method,
  ContainerStartRequest.method,
  ContainerStopRequest.method,
  ContainerRestartRequest.method,
  ContainerKillRequest.method,
  ContainerRemoveRequest.method,
  ContainerWaitRequest.method,
  ContainerTopRequest.method,
  ContainerPruneRequest.method,
  // stream notifications: they reach only the sessions this connection opened, each on one of its caller's containers
  StreamInputNotification.method,
  StreamResizeNotification.method,
  StreamCloseNotification.method,
  // images: names are per caller (services/images.ts, image/store/names.ts); blobs and layers shared, content-addressed
  ImageListRequest.method, // the caller's own namespace of image names
  ImageInspectRequest.method, // an image of the caller's namespace
  ImagePullRequest.method, // lands in the caller's namespace; pulled with the request's credentials or none, never root's stored ones
  ImagePushRequest.method, // pushes only the caller's own names, with the request's credentials or none
  ImageLoginRequest.method, // checks the request's credentials against a registry; stores nothing
  ImageRemoveRequest.method, // the caller's names only; shared content goes only when nothing holds it
  ImagePruneRequest.method, // the caller's namespace only
  ImageLoadRequest.method, // the archive opened with the caller's rights (util/hostfile.ts openRegularFileAs); its names land in the caller's namespace
  ImageSaveRequest.method, // the caller's own images; the output created and renamed with the caller's rights (image/archive/output.ts)
  SystemDfRequest.method, // the caller's images and what they reference
  // commit, diff, history, tag (handlers/commit.ts, services/commit.ts): the container is one of the caller's own (idOf with its uid),
  // the new image and every name land in, and are looked up in, the caller's namespace only
  ContainerCommitRequest.method, // reads the caller's own container's upper directory; ids recorded as its user namespace sees them
  ContainerDiffRequest.method, // the caller's own container
  ImageHistoryRequest.method, // an image of the caller's namespace
  ImageTagRequest.method, // source looked up, and target written, in the caller's namespace
  // build (handlers/build.ts, services/build.ts): the context tar is opened with the caller's rights (the CLI packed it as the caller),
  // RUN steps run in the caller's own containers (unprivileged, user namespace, the caller's ceilings), names land in the caller's namespace
  ImageBuildRequest.method,
  BuilderPruneRequest.method, // the caller's own build cache (build/cache.ts: one file per owner) and untagged images of it
  // cp (handlers/copy.ts): the caller's own container, every path resolved in its root (runtime/container/inroot.ts, unionroot.ts when stopped);
  // the host side is the client's, done with its own rights; sessions are the connection's own
  ContainerPathStatRequest.method,
  ContainerArchiveOpenReadRequest.method,
  ContainerArchiveReadRequest.method,
  ContainerArchiveOpenWriteRequest.method, // written with the container's own ids (its block's), `..` entries refused
  ContainerArchiveWriteRequest.method,
  WorkDoneProgressCancelNotification.method, // cancels only progress this connection started (handlers/images.ts)
]);

/** Whether `caller` may use the whole protocol, and sees every user's objects: root alone. */
export function hasFullAccess(caller: Caller): boolean {
  return caller.uid === 0;
}

/**
 * Whether `caller` may send `method`: root anything, another caller the
 * handshake and USER_METHODS. The Engine API (server/engine/) asks this for
 * the protocol method each of its endpoints stands for, so both front doors
 * keep one policy.
 */
export function mayCall(caller: Caller, method: string): boolean {
  return hasFullAccess(caller) || HANDSHAKE.has(method) || USER_METHODS.has(method);
}

/** The refusal a caller without full access gets for `method`. */
export function notEnabled(method: string, caller: Caller): PermissionDeniedError {
  return new PermissionDeniedError(
    `${printable(method.slice(0, 200))} refused for uid ${caller.uid}: not open to users other than root (see the README's "Security model and limits")`,
  );
}

type Handler = (...args: unknown[]) => unknown;

/**
 * `connection` acting as `caller`: `.caller` reads it, and every request or
 * notification handler registered on it is reached only when the caller may
 * send that message. Register validating() on top of it, so a refused
 * message is refused before its params are even looked at.
 */
export function forCaller(connection: Connection, caller: Caller): ClientConnection {
  const allowed = (method: string): boolean => mayCall(caller, method);

  const onRequest = (first: string | { method: string } | Handler, second?: Handler): Disposable => {
    if (typeof first === 'function') {
      // a star handler gets the method first
      const star = first;
      return connection.onRequest((method: string, params: unknown, token: CancellationToken) =>
        allowed(method) ? star(method, params, token) : Promise.reject(toResponseError(notEnabled(method, caller))),
      );
    }
    const method = typeof first === 'string' ? first : first.method;
    const handler = second!;
    const gated: Handler = (...args) => (allowed(method) ? handler(...args) : Promise.reject(toResponseError(notEnabled(method, caller))));
    return (connection.onRequest as (t: unknown, h: Handler) => Disposable)(first, gated);
  };
  const onNotification = (first: string | { method: string } | Handler, second?: Handler): Disposable => {
    // a notification has no reply to carry a refusal: a refused one is dropped
    if (typeof first === 'function') {
      const star = first;
      return connection.onNotification((method: string, params: unknown) => (allowed(method) ? star(method, params) : undefined));
    }
    const method = typeof first === 'string' ? first : first.method;
    const handler = second!;
    return (connection.onNotification as (t: unknown, h: Handler) => Disposable)(first, (...args: unknown[]) => (allowed(method) ? handler(...args) : undefined));
  };

  return new Proxy(connection, {
    get(target, prop) {
      if (prop === 'caller') return caller;
      if (prop === 'onRequest') return onRequest;
      if (prop === 'onNotification') return onNotification;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as Handler).bind(target) : value;
    },
  }) as ClientConnection;
}
