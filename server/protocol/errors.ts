/**
 * Errors on the wire: the JSON-RPC error code the helper uses, the `data` of
 * its error responses, and the catalogue of every stable `E_…` code it
 * sends, with what each means and the exit status the CLI gives it. Clients
 * (the CLI, the extension) branch on these codes, never on message text.
 */

/** Error codes the helper puts in JSON-RPC error responses. */
export const ErrorCodes = {
  /** JSON-RPC error code used for every Capsa domain error; `data` holds the details. */
  CapsaError: -32050,
} as const;

/** Structured facts about a failure (see `ErrorFields` in server/errors.ts): plain values only. */
export type CapsaErrorFields = Record<string, string | number | boolean | undefined>;

/** One error a failure wraps, as sent: the code when it had one (an `E_…` code, or a system code like `ENOENT`), and its message. */
export interface CapsaErrorCause {
  code?: string;
  message: string;
  fields?: CapsaErrorFields;
}

/** `data` of a JSON-RPC error response for a Capsa domain error. */
export interface CapsaErrorData {
  /** Stable code, e.g. `E_IMAGE_NOT_FOUND`; one of {@link ERROR_CATALOGUE}'s keys. */
  code: string;
  /** Structured facts: `container`, `image`, `path`, `step`, `errno`, … */
  fields?: CapsaErrorFields;
  /** The errors this one wraps, nearest first; the response's message is the outermost. */
  causes?: CapsaErrorCause[];
  /**
   * For a run whose process could not start: the exit status Docker gives
   * (127 command not found, 126 not executable, 125 any other setup failure).
   * Superseded by the code (its {@link ERROR_CATALOGUE} entry says the status); kept for clients
   * that read it.
   */
  exitCode?: number;
}

/**
 * What a client can do about an error:
 * - `invalid`: the request, a flag or a file the user gave is wrong;
 * - `not-found`: what the request names does not exist;
 * - `conflict`: the request clashes with the current state (name in use, running);
 * - `limit`: the request or its input exceeds a size or count ceiling;
 * - `unreachable`: the helper or a registry cannot be reached, or went away;
 * - `integrity`: content did not match its digest or size, or is unsafe;
 * - `failed`: an operation of Capsa's failed (setup, cgroups, network, the shim);
 * - `command`: the container's own command could not be run;
 * - `cancelled`: the caller cancelled the request or went away;
 * - `internal`: a bug: an error the helper did not expect.
 */
export type ErrorKind = 'invalid' | 'not-found' | 'conflict' | 'denied' | 'limit' | 'unreachable' | 'integrity' | 'failed' | 'command' | 'cancelled' | 'internal';

export interface ErrorCodeInfo {
  kind: ErrorKind;
  /** The CLI's exit status for it, as Docker's: 125 for Capsa's own errors, 126/127 for the container's command. */
  exit: number;
  meaning: string;
}

/** Exit status for an error of Capsa itself (Docker's 125). */
export const EXIT_CAPSA = 125;
/** Exit status for a container command that exists but cannot be run. */
export const EXIT_NOT_EXECUTABLE = 126;
/** Exit status for a container command that was not found. */
export const EXIT_NOT_FOUND = 127;

const capsa = (kind: ErrorKind, meaning: string): ErrorCodeInfo => ({ kind, exit: EXIT_CAPSA, meaning });

/** Every stable code the helper (and the CLI, for its own errors) sends. */
export const ERROR_CATALOGUE = {
  // requests and input
  E_INVALID_ARGUMENT: capsa('invalid', 'a reference, flag, id or parameter is malformed'),
  E_UNSUPPORTED: capsa('invalid', 'the request asks for a feature Capsa does not have (an Engine API field or parameter): the field is named'),
  E_ENDPOINT_NOT_FOUND: capsa('not-found', 'the Engine API has no endpoint at that path for that method'),
  E_LIMIT_EXCEEDED: capsa('limit', 'a request, file or stream exceeds one of the size ceilings (server/limits.ts)'),
  E_UNTRUSTED_DIRECTORY: capsa('invalid', "a directory Capsa uses as root is writable by others, so it is refused"),
  E_INVALID_ARCHIVE: capsa('invalid', 'an image archive given to load is malformed'),
  E_DOCKERFILE: capsa('invalid', 'a Dockerfile cannot be parsed or expanded (the file and line are in the message)'),
  E_BUILD_CONTEXT: capsa('invalid', 'a build source is outside the build context, or the context cannot be read'),
  E_BUILD_REMOTE: capsa('failed', 'an ADD URL could not be fetched (status, redirects, time), or its content does not match --checksum: the Dockerfile line and URL are in the message'),
  E_BUILD_STEP: capsa('failed', 'a build step failed (its RUN exited non-zero, or the build was cancelled): the step and exit code are in the message'),
  E_CONFLICT: capsa('conflict', 'the request conflicts with current state: a name in use, an image in use, a container running'),
  E_CLIENT_GONE: capsa('cancelled', 'the client closed its connection before the request ended'),
  E_CANCELLED: capsa('cancelled', 'the request was cancelled'),
  E_INTERNAL: capsa('internal', 'an unexpected error in the helper (a bug): the message is the original one'),
  // what a request names
  E_CONTAINER_NOT_FOUND: capsa('not-found', 'no container has that id, id prefix or name'),
  E_EXEC_NOT_FOUND: capsa('not-found', 'no exec instance of the caller has that id (Engine API)'),
  E_CONTAINER_PATH_NOT_FOUND: capsa('not-found', 'no file or directory at that path inside the container (resolved in its root)'),
  E_COPY_SESSION_NOT_FOUND: capsa('not-found', 'no copy session with that id is open on this connection'),
  E_IMAGE_NOT_FOUND: capsa('not-found', 'the image, tag or blob is not in the store or the registry'),
  E_IMAGE_AMBIGUOUS: capsa('conflict', 'an image id prefix matches more than one image'),
  E_PLATFORM_NOT_FOUND: capsa('not-found', 'the image has no manifest for the requested platform'),
  E_NETWORK_NOT_FOUND: capsa('not-found', 'no network has that name or id'),
  E_VOLUME_NOT_FOUND: capsa('not-found', 'no volume has that name'),
  E_VOLUME_AMBIGUOUS: capsa('conflict', 'root named a volume that several other users own, and none of its own'),
  E_NETWORK_AMBIGUOUS: capsa('conflict', 'root named a network that several other users own, and none of its own'),
  E_USER_NOT_FOUND: capsa('not-found', "the user or group is not in the image's passwd or group file"),
  // registries and content
  E_REGISTRY: capsa('failed', 'the registry answered with an error (status and registry codes in the message)'),
  E_REGISTRY_AUTH: capsa('failed', 'the registry refused the credentials, or asked for ones Capsa does not have'),
  E_REGISTRY_UNREACHABLE: capsa('unreachable', 'the registry could not be reached, or the download kept failing'),
  E_DIGEST_MISMATCH: capsa('integrity', "content does not hash to the digest that names it"),
  E_SIZE_MISMATCH: capsa('integrity', 'content is not the size its descriptor says'),
  E_DIFFID_MISMATCH: capsa('integrity', "a layer's uncompressed content does not match the image config's diff-id"),
  E_UNSUPPORTED_MANIFEST: capsa('invalid', 'a manifest or index of a media type or schema Capsa does not read'),
  E_TOO_MANY_LAYERS: capsa('limit', 'an image has more layers than the overlay filesystem can stack'),
  E_UNSAFE_LAYER: capsa('integrity', 'a layer has an entry that would land outside it'),
  E_INVALID_LAYER: capsa('integrity', 'a layer is not a readable tar stream'),
  E_LAYER_CAPTURE: capsa('failed', "a container's changes cannot be written as a layer (overlayfs marked a file in a form layers cannot carry)"),
  // running containers
  E_CONTAINER_RECORD_VERSION: capsa('invalid', "a container's config.json has a version this helper does not read (a newer helper's)"),
  E_CONTAINER_SETUP: capsa('failed', "a container's setup failed (the step, path and errno are in the fields)"),
  E_COMMAND_NOT_FOUND: { kind: 'command', exit: EXIT_NOT_FOUND, meaning: "the container's command was not found" },
  E_COMMAND_NOT_EXECUTABLE: { kind: 'command', exit: EXIT_NOT_EXECUTABLE, meaning: "the container's command exists but cannot be run" },
  // who is asking
  E_PERMISSION_DENIED: capsa('denied', 'the caller (as the kernel reports it) may not make this request'),
  E_PEER_CREDENTIALS: capsa('failed', "a connection's caller could not be read from the kernel (SO_PEERCRED)"),
  E_SOCKET_ACTIVATION: capsa('failed', 'the socket systemd passed (LISTEN_FDS) is not a listening unix stream socket'),
  E_SHIM: capsa('failed', 'the shim ended without reporting (killed, crashed, not built)'),
  E_SPAWN: capsa('failed', 'a program (the shim, a monitor) could not be started'),
  E_CGROUP: capsa('failed', "a container's cgroup could not be created, configured or removed"),
  E_DEVICE_FILTER: capsa('failed', "the container's device allow-list could not be loaded as a cgroup device program (bpf)"),
  E_USERNS_EXHAUSTED: capsa('limit', 'no free block of ids is left for a user-namespaced container'),
  E_NETLINK: capsa('failed', 'a netlink request (links, addresses, routes) failed'),
  E_NETNS: capsa('failed', 'a network namespace could not be created, entered or removed'),
  E_FIREWALL: capsa('failed', 'the firewall rules (nftables) could not be applied'),
  // the CLI's own
  E_HELPER_UNREACHABLE: capsa('unreachable', 'the CLI cannot reach or start the helper'),
  E_HELPER_LOST: capsa('unreachable', 'the helper closed the connection before it answered'),
  E_WARM_REQUEST: capsa('invalid', 'the warm CLI got a malformed request from the client'),
} as const satisfies Record<string, ErrorCodeInfo>;

export type CapsaErrorCode = keyof typeof ERROR_CATALOGUE;

/** The catalogue's entry for `code`, or undefined for a code it does not list (a newer helper's). */
export function errorCodeInfo(code: unknown): ErrorCodeInfo | undefined {
  return typeof code === 'string' && Object.hasOwn(ERROR_CATALOGUE, code) ? ERROR_CATALOGUE[code as CapsaErrorCode] : undefined;
}

/**
 * The `data` of a helper's error response, when `err` is one (a
 * vscode-jsonrpc `ResponseError` whose data has a string `code`).
 */
export function capsaErrorData(err: unknown): CapsaErrorData | undefined {
  const data = (err as { data?: unknown } | null | undefined)?.data;
  if (typeof data !== 'object' || data === null) return undefined;
  return typeof (data as { code?: unknown }).code === 'string' ? (data as CapsaErrorData) : undefined;
}

/**
 * The stable code of an error a client holds: the helper's (`data.code` of an
 * error response) or the code of a local typed error (the CLI's own).
 */
export function errorCode(err: unknown): string | undefined {
  const data = capsaErrorData(err);
  if (data) return data.code;
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && code.startsWith('E_') ? code : undefined;
}

/** The kind of an error a client holds, or undefined when its code is not in the catalogue (or it has none). */
export function errorKind(err: unknown): ErrorKind | undefined {
  return errorCodeInfo(errorCode(err))?.kind;
}
