/**
 * A warm CLI process. The helper (server/warmcli.ts) starts it ahead of any
 * call, so that Node's start-up, loading the CLI and connecting to the
 * helper are already paid. It waits on the warm CLI socket (its fd 3) for a
 * client (native/src/client.c), takes over that client's stdin, stdout,
 * stderr, environment, working directory and umask, runs the command as a
 * fresh `capsa` process would and sends the exit status back. Then, if the
 * command returned (rather than calling process.exit) and left nothing
 * behind (no handle, timer or request active that was not before it), it
 * puts things back and waits for the next client; otherwise it exits and
 * the helper starts another.
 *
 * Node creates process.stdin/stdout/stderr on first use and keeps them:
 * here getters make them per call, on that call's fds 0-2, and they are
 * destroyed after it (/dev/null is on 0-2 between calls). The helper hears
 * from this process over fd 4, one line each: `ready`, `taken CLIENT_PID`,
 * `idle` (back from a call, waiting again), `retiring REASON` (exits after
 * its call), `rejected REASON`, `failed REASON`; it writes `exit` there to
 * end an idle one.
 */
import { createReadStream, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import { Readable, Writable } from 'node:stream';
import * as tty from 'node:tty';
import { getPriority, setPriority } from 'node:os';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { loadConfig } from '../config';
import { describeError } from '../errors';
import { VersionRequest } from '../protocol';
import { acceptConnection, closeFd, dupTo, peerCredentials, pollFds, POLLIN, receiveMessage, sendMessage, seqpacketPair, setCloseOnExec, setReceiveTimeout, SysError } from '../util/seqpacket';
import { connect } from './client';
import { encodeRequest, MAX_REQUEST, parseRequest, reply, WarmRequestError, type WarmRequest } from './warmwire';

const LISTEN_FD = 3;
const REPORT_FD = 4;
/** While idle, the event loop gets a turn this often: it reads what the helper sent on our connection meanwhile. */
const IDLE_POLL_MS = 1000;
/** A client has this long after the hello to send its request. */
const REQUEST_TIMEOUT_MS = 5000;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLRDHUP = 0x2000;
/** Exit status for errors of Capsa itself (as main's). */
const EXIT_CAPSA = 125;

export type CliMain = (argv: string[], opts: { connection: MessageConnection }) => Promise<number>;

export function report(line: string): void {
  try {
    writeSync(REPORT_FD, `${line.replace(/\n/g, ' ')}\n`);
  } catch {
    // the helper is gone
  }
}

/**
 * Runs as `cli.js --warm`; never returns. Serves one client after another:
 * after each call that returned normally and left nothing behind it goes
 * back to waiting. It exits when a call ends the process (process.exit),
 * may have left something running, when the helper says so (`exit` on fd 4)
 * or goes away.
 */
export async function serveWarm(main: CliMain): Promise<void> {
  for (const fd of [LISTEN_FD, REPORT_FD]) {
    let ok = false;
    try {
      ok = fstatSync(fd).isSocket();
    } catch {
      // not open
    }
    if (!ok) {
      // no client's stdio here: this is someone running --warm by hand, on their own terminal
      process.stderr.write('capsa: --warm is how the helper starts its warm CLI processes, not a command\n');
      process.exit(2);
    }
  }
  // they stay open while calls run: what a call runs (stty) must not inherit them
  setCloseOnExec(LISTEN_FD);
  setCloseOnExec(REPORT_FD);
  const home: Home = { env: { ...process.env }, title: process.title, devNull: openSync('/dev/null', 'r+') };
  installStdio();
  const config = loadConfig();
  let helper: Helper;
  try {
    helper = await connectHelper(config);
  } catch (err) {
    report(`failed ${describeError(err)}`);
    process.exit(1);
  }
  try {
    await rehearse(helper.connection);
  } catch (err) {
    report(`failed ${describeError(err)}`);
    process.exit(1);
  }
  // Every way out of a call (process.exit anywhere in the CLI included) tells its client the status.
  process.on('exit', (code) => sendStatus(code));
  report('ready');
  for (;;) {
    // Blocks this (the only JavaScript) thread: nothing else has work while idle.
    const [listen, pipe] = pollFds([{ fd: LISTEN_FD, events: POLLIN }, { fd: REPORT_FD, events: POLLIN }], IDLE_POLL_MS);
    if (pipe) heedHelper(pipe);
    if (listen & POLLIN) {
      const fd = acceptConnection(LISTEN_FD);
      // one this process does not serve is closed, and the event loop gets its turn as after an idle poll
      if (fd !== undefined && servesPeer(fd)) {
        const call = await take(fd, helper.connection, config.socket, main, home);
        // main disposed the call's connection; the next call gets a new one, made now rather than during it
        helper.connection.dispose();
        try {
          helper = await connectHelper(config);
        } catch (err) {
          retire(`cannot connect to the helper again: ${describeError(err)}`);
        }
        if (call.leftover) retire(call.leftover);
        await settle();
        // what was active before the call and is done now (pending immediates, requests) is fine
        const extra = added(activeResources(), call.resources);
        if (extra.length) retire(`the call left active: ${extra.join(', ')}`);
        report('idle');
        continue;
      }
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (helper.gone) process.exit(0);
  }
}

/**
 * A user's calls are served by a warm process running as that user, or by
 * the Node CLI: this process would run another user's command with its own
 * rights (root's, as the helper starts it). So it serves only its own uid
 * and closes any other connection before the hello, which makes the client
 * (native/src/client.c wait_hello) run the Node CLI instead, as that user.
 * The connection is not a call: this process stays idle for the next one.
 */
export function warmRefusal(peerUid: number, ownUid: number): string | undefined {
  return peerUid === ownUid ? undefined : `uid ${peerUid} is not served by the warm CLI of uid ${ownUid}: its client runs the Node CLI`;
}

function servesPeer(fd: number): boolean {
  let uid = -1;
  try {
    uid = peerCredentials(fd).uid;
  } catch {
    // unidentified: refused as uid -1
  }
  const refusal = warmRefusal(uid, process.getuid!());
  if (!refusal) return true;
  closeFd(fd);
  report(`rejected ${refusal}`);
  return false;
}

interface Helper {
  connection: MessageConnection;
  /** The helper closed it. */
  gone: boolean;
}

async function connectHelper(config: ReturnType<typeof loadConfig>): Promise<Helper> {
  const helper: Helper = { connection: await connect(config, { autoStart: false }), gone: false };
  helper.connection.onClose(() => (helper.gone = true));
  return helper;
}

/** What the helper wrote on fd 4 (`exit`), or its end closed: either way this process is no longer wanted. */
function heedHelper(revents: number): void {
  if (revents & (POLLHUP | POLLERR)) process.exit(0);
  const buf = Buffer.alloc(256);
  let n = 0;
  try {
    n = readSync(REPORT_FD, buf);
  } catch {
    process.exit(0);
  }
  if (n === 0 || buf.toString('utf8', 0, n).includes('exit')) process.exit(0);
}

/** Ends this process after a call that may have left something behind (the helper starts another). */
function retire(why: string): never {
  report(`retiring ${why}`);
  process.exit(0);
}

/** A few turns of the event loop: closed handles are gone from the active ones after them. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

function activeResources(): string[] {
  return process.getActiveResourcesInfo().sort();
}

/** What `now` has more of than `before` (both lists of resource types). */
function added(now: string[], before: string[]): string[] {
  const left = [...before];
  const extra: string[] = [];
  for (const r of now) {
    const i = left.indexOf(r);
    if (i >= 0) left.splice(i, 1);
    else extra.push(r);
  }
  return extra;
}

/**
 * Pays the first-call costs (V8 compiling, koffi preparing each libc call)
 * now rather than during a call: a request to ourselves over a socketpair,
 * taken apart as a client's is, and one request to the helper, which also
 * shows that it answers.
 */
async function rehearse(connection: MessageConnection): Promise<void> {
  const [a, b] = seqpacketPair();
  try {
    sendMessage(a, encodeRequest({ argv: ['version'], env: ['CAPSA_REHEARSAL=1'], cwd: '/' }), [0, 1, 2]);
    setReceiveTimeout(b, REQUEST_TIMEOUT_MS);
    peerCredentials(b);
    pollFds([{ fd: b, events: POLLIN | POLLRDHUP }], 0);
    const msg = receiveMessage(b, MAX_REQUEST, 4);
    for (const f of msg.fds) closeFd(f);
    parseRequest(msg.data, msg.truncated);
    sendMessage(b, reply.hello());
  } finally {
    closeFd(a);
    closeFd(b);
  }
  await connection.sendRequest(VersionRequest.type);
}

interface Home {
  /** The warm process's own environment and title, put back after each call. */
  env: NodeJS.ProcessEnv;
  title: string;
  /** Put on fds 0-2 between calls. */
  devNull: number;
}

/** The client whose call runs now: the exit listener sends it the status. */
let client: number | undefined;

function sendStatus(code: number): void {
  const fd = client;
  if (fd === undefined) return;
  client = undefined;
  try {
    sendMessage(fd, reply.status(code));
  } catch {
    // the client is gone
  }
}

/** A test-only verb (CAPSA_TEST_HOOKS=1): a call that returns and leaves a timer running. */
const leaveTimer: CliMain = async () => {
  setInterval(() => undefined, 60_000);
  return 0;
};

/**
 * Serves the accepted client `fd`. A refused request ends this process, as
 * does a call that exits it. Otherwise, once main returned: the status is
 * sent, and what the call may have changed is put back: the resources
 * active before it (for the caller to compare), and `leftover` says why
 * this process must not serve again.
 */
async function take(fd: number, connection: MessageConnection, socket: string, main: CliMain, home: Home): Promise<{ resources: string[]; leftover?: string }> {
  try {
    // the helper started us at a lower priority, so as not to slow the call we replaced
    setPriority(getPriority(process.ppid));
  } catch {
    // not allowed (a helper without CAP_SYS_NICE): serve at the lower one
  }
  let peer = { pid: 0, uid: -1, gid: -1 };
  try {
    peer = peerCredentials(fd);
  } catch {
    // refused below as uid -1
  }
  report(`taken ${peer.pid}`);
  const refuse = (message: string, fds: number[] = []): never => {
    for (const f of fds) closeFd(f);
    try {
      sendMessage(fd, reply.error(message));
    } catch {
      // nobody left to tell
    }
    report(`rejected ${message}`);
    process.exit(0);
  };
  const uid = process.getuid!();
  const refusal = warmRefusal(peer.uid, uid);
  if (refusal) refuse(refusal);
  try {
    sendMessage(fd, reply.hello());
  } catch (err) {
    report(`rejected the client hung up before the hello (${(err as SysError).code})`);
    process.exit(0);
  }
  let msg;
  try {
    setReceiveTimeout(fd, REQUEST_TIMEOUT_MS);
    // one descriptor more than a request has, so that an extra one is seen and refused
    msg = receiveMessage(fd, MAX_REQUEST, 4);
  } catch (err) {
    const code = err instanceof SysError ? err.code : '';
    refuse(code === 'EAGAIN' || code === 'EWOULDBLOCK' ? `no request within ${REQUEST_TIMEOUT_MS / 1000} s of connecting` : `cannot receive the request: ${describeError(err)}`);
  }
  if (msg!.data.length === 0 && !msg!.truncated) {
    for (const f of msg!.fds) closeFd(f);
    report('rejected the client hung up without a request');
    process.exit(0);
  }
  let req: WarmRequest;
  try {
    req = parseRequest(msg!.data, msg!.truncated);
    const n = msg!.fds.length;
    if (n !== 3 || msg!.fdsTruncated || msg!.otherControl) {
      throw new WarmRequestError(`expected the client's stdin, stdout and stderr as 3 file descriptors with the request, got ${msg!.fdsTruncated ? `more than ${n}` : n}`);
    }
  } catch (err) {
    refuse(describeError(err), msg!.fds);
  }
  const fds = msg!.fds;
  // The client found this warm CLI from CAPSA_SOCKET alone; its configuration file may name another helper.
  let theirs: string | undefined;
  try {
    theirs = loadConfig(req!.env).socket;
  } catch {
    // the Node CLI reports a broken configuration properly
  }
  if (theirs !== socket) {
    for (const f of fds) closeFd(f);
    const why = theirs ? `the client's configuration names the helper at ${theirs}` : "the client's configuration does not load";
    try {
      sendMessage(fd, reply.fallback(why));
    } catch {
      // the client is gone
    }
    report(`rejected ${why}: it runs the Node CLI`);
    process.exit(0);
  }
  try {
    process.chdir(req!.cwd);
  } catch (err) {
    refuse(`cannot change to the working directory ${req!.cwd}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`, fds);
  }
  process.umask(req!.umask);
  setEnv(req!.env);
  // stream objects made since the last call (there should be none) go; the getters make new ones on this call's fds
  releaseStdio(home.devNull);
  installStdio();
  fds.forEach((f, i) => {
    dupTo(f, i);
    closeFd(f);
  });
  try {
    sendMessage(fd, reply.pid(process.pid));
  } catch {
    report('rejected the client hung up before the command started');
    process.exit(0);
  }
  const listeners = listenerSnapshot();
  const resources = activeResources();
  client = fd;
  rawModeUsed = false;
  // A client killed outright (SIGKILL) cannot forward that: end as a Node CLI killed with it would, and leave the terminal alone.
  const watch = setInterval(() => {
    if (pollFds([{ fd, events: POLLRDHUP }], 0)[0] & (POLLHUP | POLLERR | POLLRDHUP)) {
      if (process.stdin.isTTY && process.stdin.isRaw) process.stdin.setRawMode(false);
      process.exit(128 + 9);
    }
  }, 250);
  watch.unref();
  const run = req!.argv[0] === '__leave-timer' && req!.env.CAPSA_TEST_HOOKS === '1' ? leaveTimer : main;
  let code: number;
  let leftover: string | undefined;
  try {
    code = await run(req!.argv, { connection });
  } catch (err) {
    process.stderr.write(`capsa: error: ${describeError(err)}\n`);
    code = EXIT_CAPSA;
    leftover = 'its command failed unexpectedly';
  }
  clearInterval(watch);
  // Exit only once our own output is flushed: a pipe reader must see every byte.
  await flushStdio();
  if (rawModeUsed) leftover ??= 'it put its terminal in raw mode';
  const listenersLeft = removeAddedListeners(listeners);
  if (listenersLeft) leftover ??= listenersLeft;
  // the client's fds leave this process before it hears the status: a reader of its stdout sees the end now
  releaseStdio(home.devNull);
  sendStatus(code);
  closeFd(fd);
  process.exitCode = undefined;
  setEnv(home.env);
  try {
    process.chdir('/');
  } catch {
    // stays where the call was
  }
  if (process.title !== home.title) process.title = home.title;
  return { resources, leftover };
}

function setEnv(env: NodeJS.ProcessEnv): void {
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, env);
}

type Listeners = Map<string | symbol, Function[]>;

function listenerSnapshot(): Listeners {
  return new Map(process.eventNames().map((e) => [e, process.rawListeners(e as string)]));
}

/** Removes the listeners on `process` added since `before`; says what is amiss if one of those is gone. */
function removeAddedListeners(before: Listeners): string | undefined {
  for (const e of process.eventNames()) {
    const had = before.get(e) ?? [];
    for (const l of process.rawListeners(e as string)) if (!had.includes(l)) process.removeListener(e as string, l as (...args: unknown[]) => void);
  }
  for (const [e, had] of before) {
    const now = process.rawListeners(e as string);
    if (had.some((l) => !now.includes(l))) return `it removed a listener for ${String(e)} on process`;
  }
  return undefined;
}

// ---- stdio -----------------------------------------------------------------
// Node makes process.stdin/stdout/stderr once, on first use, for whatever fds
// 0-2 are then, and keeps them. Here each call gets its own, made lazily by
// getters that follow Node's rules (lib/internal/bootstrap/switches/
// is_main_thread.js), and destroyed after the call.

type AnyStream = (Readable | Writable) & Record<string | symbol, unknown>;
let stdio: { stdin?: AnyStream; stdout?: AnyStream; stderr?: AnyStream } = {};
/** The call put its terminal in raw mode (libuv then keeps that terminal's mode to restore at exit: this process does not serve again). */
let rawModeUsed = false;
const kNodeDestroy = Symbol('nodeDestroy');

function installStdio(): void {
  const makers = { stdin: makeStdin, stdout: () => makeWritable(1), stderr: () => makeWritable(2) };
  for (const name of ['stdin', 'stdout', 'stderr'] as const) {
    Object.defineProperty(process, name, { configurable: true, enumerable: true, get: () => (releasing ? placeholder[name] : (stdio[name] ??= makers[name]())) });
  }
  // the global console keeps the streams it first wrote to: it takes this call's from now on
  const c = console as unknown as Record<string, unknown>;
  c._stdout = undefined;
  c._stderr = undefined;
}

/** While releaseStdio destroys streams (net.Socket's destroy looks at process.stderr), the getters make none on the call's fds. */
let releasing = false;
const placeholder = {
  get stdin() {
    return emptyReadable();
  },
  get stdout() {
    return blackHole() as unknown as AnyStream;
  },
  get stderr() {
    return blackHole() as unknown as AnyStream;
  },
};

/** Destroys the call's stream objects (closing what they opened on fds 0-2), then puts /dev/null on 0-2, so no open() can take them. */
function releaseStdio(devNull: number): void {
  const { stdin, stdout, stderr } = stdio;
  stdio = {};
  releasing = true;
  try {
    if (stdin) {
      const t = stdin as unknown as tty.ReadStream;
      if (t.isTTY && t.isRaw) t.setRawMode(false);
      stdin.destroy();
    }
  } catch {
    // destroyed already
  }
  for (const s of [stdout, stderr]) {
    if (!s) continue;
    try {
      (s as Record<string, unknown>)._destroy = s[kNodeDestroy];
      s.destroy();
    } catch {
      // destroyed already
    }
  }
  releasing = false;
  for (let fd = 0; fd < 3; fd++) dupTo(devNull, fd);
}

async function flushStdio(): Promise<void> {
  for (const s of [stdio.stdout, stdio.stderr]) {
    const w = s as Writable | undefined;
    if (w && w.writable && !w.destroyed) await new Promise<void>((resolve) => w.write('', () => resolve()));
  }
}

/** libuv's uv_guess_handle, as Node's guessHandleType sees it. */
function handleType(fd: number): 'TTY' | 'FILE' | 'PIPE' | 'UNKNOWN' {
  let st;
  try {
    st = fstatSync(fd);
  } catch {
    return 'UNKNOWN';
  }
  if (tty.isatty(fd)) return 'TTY';
  if (st.isFile() || st.isCharacterDevice()) return 'FILE';
  if (st.isFIFO() || st.isSocket()) return 'PIPE';
  return 'UNKNOWN';
}

/** Node's internal SyncWriteStream: stdout or stderr on a file, written synchronously. */
class SyncWriteStream extends Writable {
  constructor(readonly fd: number) {
    super();
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      writeSync(this.fd, chunk);
    } catch (err) {
      cb(err as Error);
      return;
    }
    cb();
  }
}

function blackHole(): Writable {
  return new Writable({ write: (_chunk, _encoding, cb) => cb() });
}

function dummyDestroy(this: AnyStream, err: Error | null, cb: (err: Error | null) => void): void {
  cb(err);
  (this as unknown as { _undestroy(): void })._undestroy();
  if (!(this._writableState as { emitClose: boolean }).emitClose) process.nextTick(() => this.emit('close'));
}

function makeWritable(fd: number): AnyStream {
  let stream: AnyStream;
  switch (handleType(fd)) {
    case 'TTY':
      stream = new tty.WriteStream(fd) as unknown as AnyStream;
      stream._type = 'tty';
      break;
    case 'FILE':
      stream = new SyncWriteStream(fd) as unknown as AnyStream;
      stream._type = 'fs';
      break;
    case 'PIPE':
      try {
        stream = new net.Socket({ fd, readable: false, writable: true }) as unknown as AnyStream;
        stream._type = 'pipe';
      } catch {
        stream = blackHole() as unknown as AnyStream;
      }
      break;
    default:
      stream = blackHole() as unknown as AnyStream;
  }
  stream.fd = fd;
  stream._isStdio = true;
  stream.destroySoon = stream.destroy;
  // as Node's: destroying stdout or stderr does not close the fd (releaseStdio puts the real one back)
  stream[kNodeDestroy] = stream._destroy;
  stream._destroy = dummyDestroy;
  if ((stream as unknown as tty.WriteStream).isTTY) process.on('SIGWINCH', () => (stream as unknown as { _refreshSize(): void })._refreshSize());
  return stream;
}

function emptyReadable(): AnyStream {
  const r = new Readable({ read() {} });
  r.push(null);
  return r as unknown as AnyStream;
}

function makeStdin(): AnyStream {
  let stdin: AnyStream;
  switch (handleType(0)) {
    case 'TTY': {
      const t = new tty.ReadStream(0);
      const setRawMode = t.setRawMode.bind(t);
      t.setRawMode = (mode: boolean) => {
        if (mode) rawModeUsed = true;
        return setRawMode(mode);
      };
      stdin = t as unknown as AnyStream;
      break;
    }
    case 'FILE':
      stdin = createReadStream(null as unknown as string, { fd: 0, autoClose: false }) as unknown as AnyStream;
      break;
    case 'PIPE':
      try {
        stdin = new net.Socket({ fd: 0, readable: true, writable: false, manualStart: true } as net.SocketConstructorOpts) as unknown as AnyStream;
        (stdin._writableState as { ended: boolean }).ended = true;
      } catch {
        stdin = emptyReadable();
      }
      break;
    default:
      stdin = emptyReadable();
  }
  stdin.fd = 0;
  // it starts paused, which Node's stream does not know yet
  const handle = stdin._handle as { readStop?: () => void; reading?: boolean } | undefined;
  const state = stdin._readableState as { reading: boolean };
  if (handle?.readStop) {
    handle.reading = false;
    state.reading = false;
    handle.readStop();
  }
  // once paused, stop reading, so that the call can end
  stdin.on('pause', () =>
    process.nextTick(() => {
      const h = stdin._handle as { readStop(): void; reading: boolean } | undefined;
      if (h?.reading && !(stdin as unknown as Readable).readableFlowing) {
        state.reading = false;
        h.reading = false;
        h.readStop();
      }
    }),
  );
  return stdin;
}

