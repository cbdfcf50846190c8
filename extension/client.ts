/**
 * The connection to the helper: a LanguageClient over the helper's unix
 * socket, or over stdio to a helper this window launched when VS Code runs as
 * root. Owns the status bar item, routes stream notifications to terminals by
 * attachId, and reconnects when the helper goes away and comes back.
 */
import { spawn } from 'node:child_process';
import { existsSync, watch, type FSWatcher } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  TransportKind,
  type LanguageClientOptions,
  type ServerOptions,
  type StreamInfo,
} from 'vscode-languageclient/node';
import {
  ContainerEventNotification,
  ImageEventNotification,
  StreamExitNotification,
  StreamOutputNotification,
  VersionRequest,
  type ContainerEvent,
  type ImageEvent,
  type StreamExitParams,
  type StreamOutputParams,
  type VersionResult,
} from '../server/protocol';
import { HelperNotConnectedError } from './errors';

export type HelperState = 'starting' | 'connected' | 'notRunning';

/** Receives the streams of one run/exec/logs session. */
export interface StreamSink {
  output(params: StreamOutputParams): void;
  exit(params: StreamExitParams): void;
}

export const DEFAULT_SOCKET = '/run/capsa/capsa.sock';

export class HelperConnection implements vscode.Disposable {
  private readonly _onDidChangeState = new vscode.EventEmitter<HelperState>();
  readonly onDidChangeState = this._onDidChangeState.event;
  private readonly _onContainerEvent = new vscode.EventEmitter<ContainerEvent>();
  readonly onContainerEvent = this._onContainerEvent.event;
  private readonly _onImageEvent = new vscode.EventEmitter<ImageEvent>();
  readonly onImageEvent = this._onImageEvent.event;

  private client: LanguageClient | undefined;
  private _state: HelperState = 'starting';
  private _version: VersionResult | undefined;
  private readonly sinks = new Map<string, StreamSink>();
  private readonly statusItem: vscode.StatusBarItem;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 500;
  private watcher: FSWatcher | undefined;
  private disposed = false;
  private connecting: Promise<void> | undefined;
  private notRunningShown = false;
  private dismissNotice: (() => void) | undefined;

  constructor(
    private readonly extensionPath: string,
    readonly output: vscode.OutputChannel,
  ) {
    this.statusItem = vscode.window.createStatusBarItem('capsa.status', vscode.StatusBarAlignment.Left, 10);
    this.statusItem.name = 'Capsa helper';
    this.statusItem.command = 'capsa.showHelperLog';
    this.render();
    this.statusItem.show();
  }

  get state(): HelperState {
    return this._state;
  }
  get version(): VersionResult | undefined {
    return this._version;
  }

  /** The `capsa.socketPath` setting, else the helper's default. */
  socketPath(): string {
    return vscode.workspace.getConfiguration('capsa').get<string>('socketPath') || process.env.CAPSA_SOCKET || DEFAULT_SOCKET;
  }

  /** The client to send requests with; throws a clear error when not connected. */
  get connection(): LanguageClient {
    if (!this.client || this._state !== 'connected') {
      throw new HelperNotConnectedError(this.socketPath());
    }
    return this.client;
  }

  /** Registers the sink for a session's streams; call before sending the request. */
  attach(attachId: string, sink: StreamSink): vscode.Disposable {
    this.sinks.set(attachId, sink);
    return new vscode.Disposable(() => this.sinks.delete(attachId));
  }

  /** Connects now (no-op while already connecting or connected). */
  start(): Promise<void> {
    if (this.disposed || this._state === 'connected') return Promise.resolve();
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Drops the connection and connects again (e.g. after the socket setting changed). */
  async restart(): Promise<void> {
    await this.stopClient();
    this.retryDelay = 500;
    this.notRunningShown = false;
    await this.start();
  }

  private async connect(): Promise<void> {
    this.clearRetry();
    this.setState('starting');
    const socket = this.socketPath();
    let serverOptions: ServerOptions;
    if (await canConnect(socket)) {
      serverOptions = () =>
        new Promise<StreamInfo>((resolve, reject) => {
          const s = net.connect(socket);
          s.once('connect', () => resolve({ reader: s, writer: s }));
          s.once('error', reject);
        });
      this.output.appendLine(`connecting to the helper at ${socket}`);
    } else if (process.getuid?.() === 0 && vscode.workspace.getConfiguration('capsa').get<boolean>('launchHelper', true)) {
      // Root can run the helper itself; over stdio it lives as long as this window.
      const module = this.helperModule();
      this.output.appendLine(`no helper at ${socket}; launching ${module} --stdio`);
      serverOptions = { module, transport: TransportKind.stdio, options: { env: { ...process.env } } };
    } else {
      this.setState('notRunning');
      this.offerToStart(socket);
      this.scheduleRetry();
      return;
    }

    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.output,
      initializationFailedHandler: () => false,
      errorHandler: {
        error: () => ({ action: ErrorAction.Shutdown, handled: true }),
        closed: () => {
          this.onClosed(self);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    let self: LanguageClient | undefined;
    const client = new LanguageClient('capsa', 'Capsa helper', serverOptions, clientOptions);
    self = client;
    this.client = client;
    client.onNotification(ContainerEventNotification.type, (e) => this._onContainerEvent.fire(e));
    client.onNotification(ImageEventNotification.type, (e) => this._onImageEvent.fire(e));
    client.onNotification(StreamOutputNotification.type, (p) => this.sinks.get(p.attachId)?.output(p));
    client.onNotification(StreamExitNotification.type, (p) => {
      const sink = this.sinks.get(p.attachId);
      this.sinks.delete(p.attachId);
      sink?.exit(p);
    });
    try {
      await client.start();
      this._version = await client.sendRequest(VersionRequest.type);
    } catch (err) {
      this.output.appendLine(`cannot connect to the helper: ${(err as Error).message}`);
      if (this.client === client) this.client = undefined;
      // a client that never started has nothing to stop: its dispose failing changes nothing
      void client.dispose().catch(() => undefined);
      this.setState('notRunning');
      this.scheduleRetry();
      return;
    }
    if (this.client !== client) return;
    this.output.appendLine(`connected to Capsa helper ${this._version.version} (protocol ${this._version.protocol}, root ${this._version.root}, pid ${this._version.pid})`);
    this.retryDelay = 500;
    this.notRunningShown = false;
    this.setState('connected');
  }

  private onClosed(closed: LanguageClient | undefined): void {
    // A client this object already let go of (restart, stop) closing is expected.
    if (!closed || closed !== this.client) return;
    this.output.appendLine('the helper connection closed; reconnecting when it is back');
    const client = this.client;
    this.client = undefined;
    this._version = undefined;
    this.failSessions('the helper connection closed');
    // the connection is closed already: disposing only frees the client, and a failure there changes nothing
    if (client) void client.dispose().catch(() => undefined);
    if (!this.disposed) {
      this.setState('notRunning');
      this.scheduleRetry();
    }
  }

  private failSessions(why: string): void {
    const sinks = [...this.sinks.entries()];
    this.sinks.clear();
    for (const [attachId, sink] of sinks) sink.exit({ attachId, exitCode: 255, error: why });
  }

  /** Backs off to 5 s; a change in the socket's folder retries at once. */
  private scheduleRetry(): void {
    if (this.disposed) return;
    this.clearRetry();
    this.retryTimer = setTimeout(() => void this.start(), this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, 5000);
    const dir = path.dirname(this.socketPath());
    if (!this.watcher && existsSync(dir)) {
      try {
        this.watcher = watch(dir, () => {
          if (this._state === 'notRunning') {
            this.retryDelay = 200;
            this.scheduleRetry();
          }
        });
        this.watcher.on('error', () => this.closeWatcher());
      } catch {
        // not watchable: the timer still retries
      }
    }
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.closeWatcher();
  }

  private closeWatcher(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }

  private offerToStart(socket: string): void {
    if (this.notRunningShown) return;
    this.notRunningShown = true;
    const why = `no helper is listening on ${socket}. The helper runs as root to create containers; start it to use the Containers view.`;
    this.output.appendLine(`Capsa: ${why}`);
    // A warning message cannot be taken down by the extension; a progress
    // notification can, so it goes away as soon as the window connects.
    void vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Capsa', cancellable: true }, (progress, token) => {
      progress.report({ message: `${why} [Start Helper](command:capsa.startHelper) · [Show Command](command:capsa.showStartCommand)` });
      return new Promise<void>((resolve) => {
        const done = (): void => {
          state.dispose();
          cancel.dispose();
          this.dismissNotice = undefined;
          resolve();
        };
        const state = this.onDidChangeState((s) => s === 'connected' && done());
        const cancel = token.onCancellationRequested(done);
        this.dismissNotice = done;
      });
    });
  }

  /** The helper's entry point: dist/server.js next to the bundled extension, else the compiled out/server/main.js. */
  helperModule(): string {
    const bundled = path.join(__dirname, 'server.js');
    return existsSync(bundled) ? bundled : path.join(this.extensionPath, 'out', 'server', 'main.js');
  }

  /** The command line that starts the helper listening on the configured socket. */
  helperCommand(): string[] {
    return ['env', `CAPSA_SOCKET=${this.socketPath()}`, process.execPath, this.helperModule()];
  }

  /** Starts the helper with pkexec; falls back to the sudo command in a terminal. */
  async startWithElevation(): Promise<void> {
    const cmd = this.helperCommand();
    const pkexec = ['/usr/bin/pkexec', '/bin/pkexec'].find((p) => existsSync(p));
    if (pkexec) {
      this.output.appendLine(`starting the helper: pkexec ${cmd.join(' ')}`);
      const child = spawn(pkexec, cmd, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' } });
      child.stdout?.on('data', (d: Buffer) => this.output.append(d.toString()));
      child.stderr?.on('data', (d: Buffer) => this.output.append(d.toString()));
      const early = await new Promise<number | null | 'running'>((resolve) => {
        child.once('error', () => resolve(127));
        child.once('exit', (code) => resolve(code));
        setTimeout(() => resolve('running'), 30000);
      });
      // pkexec exits 126 when the user dismissed the dialog, 127 when no agent could ask.
      if (early === 'running' || early === 0) {
        child.unref();
        await this.restart();
        return;
      }
      this.output.appendLine(`pkexec exited with ${early}; showing the sudo command instead`);
    }
    this.showStartCommand();
  }

  showStartCommand(): void {
    const terminal = vscode.window.createTerminal({ name: 'Start Capsa helper' });
    terminal.show();
    // Not executed: the user reads it and presses Enter to give sudo their password.
    terminal.sendText(`sudo ${this.helperCommand().map(quote).join(' ')}`, false);
  }

  private setState(state: HelperState): void {
    this._state = state;
    void vscode.commands.executeCommand('setContext', 'capsa.helperState', state);
    void vscode.commands.executeCommand('setContext', 'capsa.connected', state === 'connected');
    this.render();
    this._onDidChangeState.fire(state);
  }

  private render(): void {
    const item = this.statusItem;
    switch (this._state) {
      case 'connected':
        item.text = `$(vm-active) Capsa ${this._version?.version ?? ''}`.trimEnd();
        item.tooltip = `Capsa helper ${this._version?.version ?? ''} connected on ${this.socketPath()} (root ${this._version?.root ?? '?'}, pid ${this._version?.pid ?? '?'})`;
        item.backgroundColor = undefined;
        break;
      case 'starting':
        item.text = '$(loading~spin) Capsa: starting';
        item.tooltip = 'Connecting to the Capsa helper';
        item.backgroundColor = undefined;
        break;
      case 'notRunning':
        item.text = '$(vm-outline) Capsa: not running';
        item.tooltip = `No Capsa helper on ${this.socketPath()}; click for the log`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
        break;
    }
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this._version = undefined;
    this.clearRetry();
    this.failSessions('disconnected');
    // stopping: a helper that does not answer the shutdown within 2 s is left; its socket closes with us
    if (client) await client.dispose(2000).catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.disposed = true;
    this.dismissNotice?.();
    await this.stopClient();
  }

  dispose(): void {
    void this.stop();
    this.statusItem.dispose();
    this._onDidChangeState.dispose();
    this._onContainerEvent.dispose();
    this._onImageEvent.dispose();
  }
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function canConnect(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
