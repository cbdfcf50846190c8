/**
 * A real VS Code for the UI tests: code-server (installed by
 * scripts/install-code-server.sh) with the extension linked in, driven by
 * Debian's Chromium through playwright-core, and the workbench gestures the
 * tests use (command palette, terminal text, tree rows, context menus).
 * code-server runs as root or, with `user`, as a created user of the machine.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { freePort } from './registry';
import { REPO_ROOT } from './capsa';
import { asUser } from './users';

export const CODE_SERVER = path.join(REPO_ROOT, '.cache', 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
export const CHROMIUM = '/usr/bin/chromium';
const pkg = require(path.join(REPO_ROOT, 'package.json')) as { publisher: string; name: string; version: string };

export type Page = import('playwright-core').Page;
export type BrowserContext = import('playwright-core').BrowserContext;

/** Why the UI tests cannot run here, or undefined when they can. */
export function skipReason(): string | undefined {
  if (!existsSync(CODE_SERVER)) return `code-server is not installed (${CODE_SERVER}); run scripts/install-code-server.sh`;
  if (!existsSync(CHROMIUM)) return `Chromium is not installed (${CHROMIUM}); apt-get install chromium`;
  if (process.getuid?.() !== 0) return 'the helper needs root';
  return undefined;
}

/** package.json's main is the bundle the .vsix ships: builds it from the current sources. */
export function bundleExtension(): void {
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bundle.js')], { stdio: 'inherit' });
}

/**
 * A UI test's start: skipped (with the reason) where it cannot run; else an
 * empty screenshot folder `results`, the extension bundled from the current
 * sources, and a new sandbox directory named from `prefix`, whose path it
 * returns.
 */
export function prepareUiTest(t: { skip(reason: string): void }, results: string, prefix: string): string | undefined {
  const reason = skipReason();
  if (reason) {
    t.skip(reason);
    return undefined;
  }
  rmSync(results, { recursive: true, force: true });
  mkdirSync(results, { recursive: true });
  bundleExtension();
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * The test's undo stack: `after(fn)` adds a step, and after the test the
 * steps run last added first (browser, code-servers, helper, registry, users),
 * each given at most 30 s, then `sandbox` is removed. CAPSA_KEEP_E2E=1 keeps
 * the sandbox (code-server logs, the extension's output) for debugging.
 */
export function undoStack(t: { after: (fn: () => Promise<void>) => void }, sandbox: string): (fn: () => unknown) => void {
  const steps: Array<() => unknown> = [() => (process.env.CAPSA_KEEP_E2E ? console.log(`kept ${sandbox}`) : rmSync(sandbox, { recursive: true, force: true }))];
  t.after(async () => {
    for (const undo of steps.reverse()) await within(30_000, Promise.resolve().then(undo).catch((err: Error) => console.error(`cleanup: ${err.message}`)));
  });
  return (fn) => void steps.push(fn);
}

/** Waits for `p`, at most `ms`; the timer is cleared, so a step that ends early does not keep the test process alive. */
async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** Waits for code-server's /healthz on `url`: true once it answers, false if it exits first. */
async function answers(url: string, child: ChildProcess, closed: Promise<void>, log: () => string): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      // the reason for the exit may still be in the pipes at 'exit' (bounded: a leftover process could hold them)
      await within(2000, closed);
      return false;
    }
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return true;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer on ${url}:\n${log()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface CodeServer {
  url: string;
  log(): string;
  /** Stops code-server's whole process group (it runs the server and the extension host in child processes). */
  stop(): Promise<void>;
}

/** Who code-server runs as, when not root: a user of the machine (test/helpers/users.ts). */
export interface CodeServerUser {
  name: string;
  uid: number;
  gid: number;
}

/** Sets `user` as the owner of each path (not recursive: the sandbox's own directories and files). */
function chownAll(paths: string[], user: CodeServerUser): void {
  for (const p of paths) chownSync(p, user.uid, user.gid);
}

/**
 * code-server in its own sandbox, with the extension folder linked into its
 * extensions dir. With `user`, code-server runs as that user (its groups,
 * HOME in the sandbox) and the sandbox's directories are the user's; the
 * sandbox's parent must be traversable by it.
 */
export async function startCodeServer(sandbox: string, workspace: string, settings: Record<string, unknown>, opts: { user?: CodeServerUser } = {}): Promise<CodeServer> {
  const userData = path.join(sandbox, 'user-data');
  const extensions = path.join(sandbox, 'extensions');
  mkdirSync(path.join(userData, 'User'), { recursive: true });
  mkdirSync(extensions, { recursive: true });
  symlinkSync(REPO_ROOT, path.join(extensions, `${pkg.publisher}.${pkg.name}-${pkg.version}`));
  const settingsFile = path.join(userData, 'User', 'settings.json');
  writeFileSync(
    settingsFile,
    JSON.stringify({
      'telemetry.telemetryLevel': 'off',
      'update.mode': 'none',
      'extensions.autoUpdate': false,
      'extensions.autoCheckUpdates': false,
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'security.workspace.trust.enabled': false,
      'terminal.integrated.gpuAcceleration': 'off',
      'terminal.integrated.enablePersistentSessions': false,
      'git.enabled': false,
      ...settings,
    }),
  );
  const dirs = Object.fromEntries(['config', 'data', 'cache', 'tmp', 'home'].map((d) => [d, path.join(sandbox, d)]));
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EXTENSIONS_GALLERY: '{}',
    XDG_CONFIG_HOME: dirs.config,
    XDG_DATA_HOME: dirs.data,
    XDG_CACHE_HOME: dirs.cache,
    TMPDIR: dirs.tmp,
    // a user's own home, so nothing code-server or its terminals write lands in root's
    ...(opts.user ? { HOME: dirs.home, USER: opts.user.name, LOGNAME: opts.user.name } : {}),
  };
  const config = path.join(sandbox, 'code-server.yaml');
  writeFileSync(config, 'auth: none\n');
  if (opts.user) chownAll([sandbox, ...Object.values(dirs), userData, path.join(userData, 'User'), settingsFile, extensions, config], opts.user);
  // A port can be taken between freePort() and code-server's bind: it then exits with EADDRINUSE, and another port is tried.
  let child: ChildProcess;
  let log = '';
  let url = '';
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const argv = [
      process.execPath,
      CODE_SERVER,
      '--config', config,
      '--bind-addr', `127.0.0.1:${port}`,
      '--auth', 'none',
      '--user-data-dir', userData,
      '--extensions-dir', extensions,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--ignore-last-opened',
      workspace,
    ];
    // setpriv execs: the process group's leader, whose pid is ours, is code-server itself
    const [file, ...args] = opts.user ? asUser(opts.user, argv) : argv;
    child = spawn(file, args, { env, cwd: opts.user ? dirs.home : undefined, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const closed = new Promise<void>((r) => child.once('close', () => r()));
    url = `http://127.0.0.1:${port}`;
    if (await answers(url, child, closed, () => log)) break;
    // its process group too: code-server runs the server in a child process
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
    if (!/EADDRINUSE/.test(log) || attempt === 5) throw new Error(`code-server exited with ${child.exitCode}:\n${log}`);
  }
  return {
    url,
    log: () => log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        return;
      }
      await within(5000, exited);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}

/** Headless Chromium (as root, hence --no-sandbox) with a fresh profile in `profile`. */
export async function launchChromium(profile: string): Promise<BrowserContext> {
  const { chromium } = await import('playwright-core');
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** A screenshot of `page` as `dir/name.png`. */
export async function shot(page: Page, dir: string, name: string): Promise<void> {
  await page.screenshot({ path: path.join(dir, `${name}.png`) });
}

/** Opens `workspace` in `page` and waits for the workbench and the Capsa activity bar entry, which it clicks. */
export async function openWorkbench(page: Page, url: string, workspace: string): Promise<void> {
  await page.goto(`${url}/?folder=${encodeURIComponent(workspace)}`);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  const activity = page.locator('.activitybar [aria-label^="Capsa"]').first();
  await activity.waitFor({ timeout: 60_000 });
  await activity.click();
}

/**
 * Runs `title` from the command palette. A palette opened while the
 * workbench moves focus (a terminal closing, a view re-rendering) can close
 * again at once: it is then opened again, up to three times.
 */
export async function runCommand(page: Page, title: string, rowText: string = title.replace(/^[^:]+: /, '')): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  for (let attempt = 1; ; attempt++) {
    await page.keyboard.press('F1');
    try {
      await input.waitFor({ state: 'visible', timeout: 10_000 });
      await input.fill(`>${title}`, { timeout: 5_000 });
      break;
    } catch (err) {
      if (attempt === 3) throw err;
      await page.keyboard.press('Escape');
    }
  }
  // Fuzzy matching also lists similar commands: pick the row that has this title.
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: rowText }).first();
  await row.waitFor({ timeout: 10_000 });
  await row.click();
}

/** Opens a workspace file with Quick Open and waits for its tab. */
export async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('Control+P');
  await page.locator('.quick-input-widget input').fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
  await page.keyboard.press('Enter');
  await page.locator('.tab.active', { hasText: name }).waitFor();
}

/** A new terminal from the contributed profile `profile`, shown and focused. */
export async function openProfileTerminal(page: Page, profile: string): Promise<void> {
  await runCommand(page, 'Terminal: Create New Terminal (With Profile)');
  await page.locator('.quick-input-widget input').fill(profile);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: profile }).first().waitFor();
  await page.keyboard.press('Enter');
  // A terminal created from a profile does not open the panel by itself.
  await runCommand(page, 'Terminal: Focus Terminal', 'Terminal: Focus Terminal');
  await page.locator('.terminal-wrapper.active .xterm').first().click();
}

/** Visible text of the active terminal (the DOM renderer draws rows as text). */
export async function terminalText(page: Page): Promise<string> {
  const rows = page.locator('.terminal-wrapper.active .xterm-rows');
  if ((await rows.count()) === 0) return '';
  return (await rows.first().innerText()).replace(/\u00a0/g, ' ');
}

export async function waitForTerminal(page: Page, re: RegExp, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await terminalText(page);
    if (re.test(text)) return text;
    await page.waitForTimeout(250);
  }
  throw new Error(`terminal never showed ${re}; it shows:\n${text}`);
}

/**
 * Closes the active terminal, whose run has finished ("Press any key to
 * close the terminal."), with a key press, and waits until it is gone: a
 * terminal that lingers takes the focus from the next step. A key pressed
 * before the terminal had the focus is lost: it is pressed again, twice at most.
 */
export async function closeFinishedTerminal(page: Page): Promise<void> {
  const finished = page.locator('.terminal-wrapper', { hasText: 'Press any key to close the terminal' });
  for (let attempt = 1; ; attempt++) {
    await page.locator('.terminal-wrapper.active .xterm').first().click();
    await page.keyboard.press('Enter');
    try {
      await finished.first().waitFor({ state: 'detached', timeout: 5_000 });
      return;
    } catch {
      if (attempt === 3) throw new Error(`the finished terminal did not close on a key press; it shows:\n${await terminalText(page)}`);
    }
  }
}

/** Picks a context menu entry the way a user does with the keyboard: highlight, then Enter. */
export async function contextMenu(page: Page, label: string): Promise<void> {
  const item = page.locator('.context-view .action-item', { hasText: new RegExp(`^${label}$`) }).first();
  await item.hover();
  await page.keyboard.press('Enter');
}

/** Matches of re in the .log files under dir (code-server writes output channels there). */
export function findInFiles(dir: string, re: RegExp): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.log')) continue;
    found.push(...(readFileSync(path.join(entry.parentPath ?? entry.path, entry.name), 'utf8').match(re) ?? []));
  }
  return found;
}

/** Rows of the view titled `view` (Containers, Images, …) that show `text`. */
export function treeRow(page: Page, view: string, text: string | RegExp) {
  return page.locator(`.pane:has(.pane-header[aria-label^="${view}"]) .monaco-list-row`, { hasText: text });
}
