/**
 * A warm CLI process. The helper (server/warmcli.ts) starts it ahead of any
 * call, so that Node's start-up, loading the CLI and connecting to the
 * helper are already paid. It waits on the warm CLI socket (its fd 3) for
 * one client (native/src/client.c), takes over that client's stdin, stdout,
 * stderr, environment, working directory and umask, runs the command as a
 * fresh `capsa` process would, sends the exit status back and exits.
 *
 * Node creates process.stdin/stdout/stderr on first use, bound to whatever
 * fds 0-2 are then (/dev/null here, until a client's are put in place):
 * nothing may touch them before that, module top levels included. Until
 * then the helper hears from this process over fd 4, one line each:
 * `ready`, `taken CLIENT_PID`, `rejected REASON`, `failed REASON`.
 */
import { closeSync, fstatSync, writeSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { MessageConnection } from 'vscode-jsonrpc/node';
import { loadConfig } from '../config';
import { describeError } from '../errors';
import { VersionRequest } from '../protocol';
import { acceptConnection, closeFd, dupTo, peerCredentials, pollFds, POLLIN, receiveMessage, sendMessage, seqpacketPair, setReceiveTimeout, SysError } from '../util/seqpacket';
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
    // the helper is gone, or stopped listening after `taken`
  }
}

/** Runs as `cli.js --warm`; never returns while waiting, exits after serving one client. */
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
  const config = loadConfig();
  let connection: MessageConnection;
  try {
    connection = await connect(config, { autoStart: false });
  } catch (err) {
    report(`failed ${describeError(err)}`);
    process.exit(1);
  }
  let helperGone = false;
  connection.onClose(() => (helperGone = true));
  try {
    await rehearse(connection);
  } catch (err) {
    report(`failed ${describeError(err)}`);
    process.exit(1);
  }
  report('ready');
  for (;;) {
    // Blocks this (the only JavaScript) thread: nothing else has work while idle.
    const [listen, pipe] = pollFds([{ fd: LISTEN_FD, events: POLLIN }, { fd: REPORT_FD, events: 0 }], IDLE_POLL_MS);
    if (pipe & (POLLHUP | POLLERR)) process.exit(0); // the helper closed its end: it stopped or died
    if (listen & POLLIN) {
      const fd = acceptConnection(LISTEN_FD);
      if (fd !== undefined) return take(fd, connection, config.socket, main);
    }
    await new Promise((resolve) => setImmediate(resolve));
    if (helperGone) process.exit(0);
  }
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

/** Serves the accepted client `fd`: every way out of here ends this process. */
function take(fd: number, connection: MessageConnection, socket: string, main: CliMain): void {
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
  if (peer.uid !== 0 && peer.uid !== uid) refuse(`uid ${peer.uid} may not use the warm CLI of uid ${uid}`);
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
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, req!.env);
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
  closeSync(LISTEN_FD);
  closeSync(REPORT_FD);
  let statusSent = false;
  // Every way out (process.exit anywhere in the CLI included) tells the client the status.
  process.on('exit', (code) => {
    if (statusSent) return;
    statusSent = true;
    try {
      sendMessage(fd, reply.status(code));
    } catch {
      // the client is gone
    }
  });
  // A client killed outright (SIGKILL) cannot forward that: end as a Node CLI killed with it would, and leave the terminal alone.
  setInterval(() => {
    if (pollFds([{ fd, events: POLLRDHUP }], 0)[0] & (POLLHUP | POLLERR | POLLRDHUP)) {
      if (process.stdin.isTTY && process.stdin.isRaw) process.stdin.setRawMode(false);
      process.exit(128 + 9);
    }
  }, 250).unref();
  main(req!.argv, { connection }).then(
    (code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code))),
    (err: unknown) => {
      process.stderr.write(`capsa: error: ${describeError(err)}\n`);
      process.exit(EXIT_CAPSA);
    },
  );
}
