/**
 * A VS Code terminal backed by a process in a container: the run or exec
 * request goes out when the terminal opens (with its size, so the first line
 * is already the right width), keystrokes become stream input, resizes become
 * stream resizes, and the terminal ends with the process's exit code.
 */
import { randomUUID } from 'node:crypto';
import * as vscode from 'vscode';
import { printable, StreamCloseNotification, StreamInputNotification, StreamResizeNotification, type StreamExitParams, type StreamOutputParams } from '../../server/protocol';
import type { HelperConnection } from '../client';

export interface TerminalSize {
  rows: number;
  cols: number;
}

export interface ContainerPtyOptions {
  /**
   * Sends the run or exec request for this attachId. Called once on open;
   * may take time (pull, create) and report through `progress`.
   */
  start(attachId: string, size: TerminalSize, progress: (line: string) => void, write: (text: string) => void): Promise<void>;
  /** Whether the process has a pty; without one, `\n` is turned into `\r\n`. */
  tty: boolean;
  /**
   * Close the terminal as soon as the process ends (a shell). When false the
   * terminal stays to show the output and the exit code until a key is pressed.
   */
  closeOnExit: boolean;
  /**
   * Whether keystrokes go to the process (default true). A log view sets
   * false: its attachId is a follow session, and input or EOF there would
   * reach the container's own stdin.
   */
  input?: boolean;
  /** Called once with the exit code (255 with `error` when it could not run). */
  onExit?(exit: StreamExitParams, elapsedMs: number): void;
  /** Called once when the first output byte arrives. */
  onFirstOutput?(elapsedMs: number): void;
  /** Called when the user closes the terminal while the process still runs. */
  onUserClose?(attachId: string): void;
}

const DIM = '\x1b[2m';
const RED = '\x1b[31m';
const RESET = '\x1b[0m';

export class ContainerPty implements vscode.Pseudoterminal {
  private readonly writeEmitter = new vscode.EventEmitter<string>();
  readonly onDidWrite = this.writeEmitter.event;
  private readonly closeEmitter = new vscode.EventEmitter<number | void>();
  readonly onDidClose = this.closeEmitter.event;

  readonly attachId = `vscode-${randomUUID()}`;
  private state: 'idle' | 'starting' | 'running' | 'exited' | 'closed' = 'idle';
  private readonly pendingInput: string[] = [];
  private size: TerminalSize = { rows: 24, cols: 80 };
  private readonly decoders = { stdout: new TextDecoder('utf-8'), stderr: new TextDecoder('utf-8') };
  private attachment: vscode.Disposable | undefined;
  private openedAt = 0;
  private sawOutput = false;

  constructor(
    private readonly helper: HelperConnection,
    private readonly options: ContainerPtyOptions,
  ) {}

  open(initialDimensions: vscode.TerminalDimensions | undefined): void {
    this.openedAt = Date.now();
    if (initialDimensions) this.size = { rows: initialDimensions.rows, cols: initialDimensions.columns };
    this.state = 'starting';
    // Attach before the request: output may arrive before its response.
    this.attachment = this.helper.attach(this.attachId, {
      output: (p) => this.onOutput(p),
      exit: (p) => this.onExit(p),
    });
    const progress = (line: string) => {
      if (this.state === 'starting') this.writeEmitter.fire(`${DIM}${printable(line)}${RESET}\r\n`);
    };
    const write = (text: string) => this.writeEmitter.fire(this.options.tty ? text : text.replace(/\r?\n/g, '\r\n'));
    this.options.start(this.attachId, this.size, progress, write).then(
      () => {
        if (this.state !== 'starting') return;
        this.state = 'running';
        for (const data of this.pendingInput.splice(0)) this.sendInput(data);
      },
      (err: Error) => this.onExit({ attachId: this.attachId, exitCode: 255, error: err.message }),
    );
  }

  handleInput(data: string): void {
    if (this.state === 'exited') {
      this.finish(undefined);
      return;
    }
    if (this.options.input === false) return;
    if (this.state === 'starting') this.pendingInput.push(data);
    else if (this.state === 'running') this.sendInput(data);
  }

  setDimensions(dimensions: vscode.TerminalDimensions): void {
    this.size = { rows: dimensions.rows, cols: dimensions.columns };
    if (this.state !== 'running' || !this.options.tty) return;
    void this.notify(StreamResizeNotification.type, { attachId: this.attachId, rows: this.size.rows, cols: this.size.cols });
  }

  close(): void {
    const wasLive = this.state === 'running' || this.state === 'starting';
    this.state = 'closed';
    if (wasLive) {
      // the helper hangs up an exec (SIGHUP) and detaches a log follow
      void this.notify(StreamCloseNotification.type, { attachId: this.attachId });
      if (this.options.input !== false) this.options.onUserClose?.(this.attachId);
    }
    this.attachment?.dispose();
  }

  private sendInput(data: string): void {
    void this.notify(StreamInputNotification.type, { attachId: this.attachId, data: Buffer.from(data, 'utf8').toString('base64') });
  }

  private async notify<P>(type: import('vscode-jsonrpc').NotificationType<P>, params: P): Promise<void> {
    try {
      await this.helper.connection.sendNotification(type, params);
    } catch {
      // disconnected: the exit notification from failSessions reports it
    }
  }

  private onOutput(p: StreamOutputParams): void {
    if (this.state === 'closed') return;
    if (!this.sawOutput) {
      this.sawOutput = true;
      this.options.onFirstOutput?.(Date.now() - this.openedAt);
    }
    if (this.state === 'starting') this.state = 'running';
    let text = this.decoders[p.stream].decode(Buffer.from(p.data, 'base64'), { stream: true });
    if (!this.options.tty) text = text.replace(/\r?\n/g, '\r\n');
    if (p.stream === 'stderr' && !this.options.tty) text = `${RED}${text}${RESET}`;
    this.writeEmitter.fire(text);
  }

  private onExit(p: StreamExitParams): void {
    if (this.state === 'exited' || this.state === 'closed') return;
    this.state = 'exited';
    this.attachment?.dispose();
    this.options.onExit?.(p, Date.now() - this.openedAt);
    // Capsa's message, which may quote a registry or an image: escaped, unlike the container's own output above
    if (p.error) this.writeEmitter.fire(`\r\n${RED}${printable(p.error)}${RESET}\r\n`);
    if (this.options.closeOnExit && !p.error) {
      this.finish(p.exitCode);
      return;
    }
    const color = p.exitCode === 0 ? DIM : RED;
    this.writeEmitter.fire(`\r\n${color}[process exited with code ${p.exitCode}]${RESET}\r\n${DIM}Press any key to close the terminal.${RESET}\r\n`);
  }

  private finish(code: number | undefined): void {
    this.state = 'closed';
    this.closeEmitter.fire(code);
  }
}
