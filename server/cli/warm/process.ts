/**
 * A warm CLI process. The helper (server/warmclipool.ts) starts it ahead of any
 * call, so that Node's start-up, loading the CLI and connecting to the
 * helper are already paid. It waits on the warm CLI socket (its fd 3) for a
 * client (native/client/client.c), takes over that client's stdin, stdout,
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
import { fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { loadConfig } from '../../config';
import { describeError } from '../../errors';
import { VersionRequest } from '../../protocol';
import { acceptConnection, closeFd, dupTo, peerCredentials, pollFds, POLLIN, receiveMessage, sendMessage, seqpacketPair, setCloseOnExec, setReceiveTimeout, SysError } from '../../util/seqpacket';
import { connect } from '../client';
import { errorMessage } from '../command';
import { flushStdio, installStdio, releaseStdio, usedRawMode } from './stdio';
import { encodeRequest, MAX_REQUEST, parseRequest, reply, WarmRequestError, type WarmRequest } from './wire';

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
 * The `--warm` entry: serves calls with `main` (the CLI's, or a test
 * entry's that adds verbs) until this process ends. Started by the helper
 * (server/warmclipool.ts), never by a user.
 */
export function runWarmEntry(main: CliMain): void {
  serveWarm(main).catch((err: unknown) => {
    // to the helper while idle; to the client (fd 2 is its stderr by then) while serving one
    report(`failed ${errorMessage(err)}`);
    process.stderr.write(`capsa: error: ${errorMessage(err)}\n`);
    process.exit(EXIT_CAPSA);
  });
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
 * (native/client/client.c wait_hello) run the Node CLI instead, as that user.
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
  releaseStdio();
  putDevNull(home.devNull);
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
  // A client killed outright (SIGKILL) cannot forward that: end as a Node CLI killed with it would, and leave the terminal alone.
  const watch = setInterval(() => {
    if (pollFds([{ fd, events: POLLRDHUP }], 0)[0] & (POLLHUP | POLLERR | POLLRDHUP)) {
      if (process.stdin.isTTY && process.stdin.isRaw) process.stdin.setRawMode(false);
      process.exit(128 + 9);
    }
  }, 250);
  watch.unref();
  let code: number;
  let leftover: string | undefined;
  try {
    code = await main(req!.argv, { connection });
  } catch (err) {
    process.stderr.write(`capsa: error: ${describeError(err)}\n`);
    code = EXIT_CAPSA;
    leftover = 'its command failed unexpectedly';
  }
  clearInterval(watch);
  // Exit only once our own output is flushed: a pipe reader must see every byte.
  await flushStdio();
  if (usedRawMode()) leftover ??= 'it put its terminal in raw mode';
  const listenersLeft = removeAddedListeners(listeners);
  if (listenersLeft) leftover ??= listenersLeft;
  // the client's fds leave this process before it hears the status: a reader of its stdout sees the end now
  releaseStdio();
  putDevNull(home.devNull);
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

/** /dev/null on fds 0-2 between calls, so that no open() takes them. */
function putDevNull(devNull: number): void {
  for (let fd = 0; fd < 3; fd++) dupTo(devNull, fd);
}
