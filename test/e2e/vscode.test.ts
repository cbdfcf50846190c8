/**
 * The extension in a real VS Code: code-server (installed by
 * scripts/install-code-server.sh) driven by Debian's Chromium through
 * playwright-core, against a real helper and a real registry. Screenshots of
 * each step go to test-results/vscode/.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedBusybox } from '../helpers/oci';
import { freePort, startRegistry } from '../helpers/registry';
import { REPO_ROOT, restartHelper, startHelper } from '../helpers/capsa';

const CODE_SERVER = path.join(REPO_ROOT, '.cache', 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');
const CHROMIUM = '/usr/bin/chromium';
const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode');
const pkg = require(path.join(REPO_ROOT, 'package.json')) as { publisher: string; name: string; version: string };

type Page = import('playwright-core').Page;

function skipReason(): string | undefined {
  if (!existsSync(CODE_SERVER)) return `code-server is not installed (${CODE_SERVER}); run scripts/install-code-server.sh`;
  if (!existsSync(CHROMIUM)) return `Chromium is not installed (${CHROMIUM}); apt-get install chromium`;
  if (process.getuid?.() !== 0) return 'the helper needs root';
  return undefined;
}

/** Waits for code-server's /healthz on `url`: true once it answers, false if it exits first. */
async function answers(url: string, child: ChildProcess, closed: Promise<void>, log: () => string): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      // the reason for the exit may still be in the pipes at 'exit' (bounded: a leftover process could hold them)
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
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

/** code-server in its own sandbox, with the extension folder linked into its extensions dir. */
async function startCodeServer(sandbox: string, workspace: string, settings: Record<string, unknown>): Promise<{ url: string; stop(): Promise<void>; log: () => string }> {
  const userData = path.join(sandbox, 'user-data');
  const extensions = path.join(sandbox, 'extensions');
  mkdirSync(path.join(userData, 'User'), { recursive: true });
  mkdirSync(extensions, { recursive: true });
  symlinkSync(REPO_ROOT, path.join(extensions, `${pkg.publisher}.${pkg.name}-${pkg.version}`));
  writeFileSync(
    path.join(userData, 'User', 'settings.json'),
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
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    EXTENSIONS_GALLERY: '{}',
    XDG_CONFIG_HOME: path.join(sandbox, 'config'),
    XDG_DATA_HOME: path.join(sandbox, 'data'),
    XDG_CACHE_HOME: path.join(sandbox, 'cache'),
    TMPDIR: path.join(sandbox, 'tmp'),
  };
  for (const d of ['config', 'data', 'cache', 'tmp']) mkdirSync(path.join(sandbox, d), { recursive: true });
  const config = path.join(sandbox, 'code-server.yaml');
  writeFileSync(config, 'auth: none\n');
  // A port can be taken between freePort() and code-server's bind: it then exits with EADDRINUSE, and another port is tried.
  let child: ChildProcess;
  let log = '';
  let url = '';
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    child = spawn(
      process.execPath,
      [
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
      ],
      { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
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
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    },
  };
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(RESULTS, `${name}.png`) });
}

async function runCommand(page: Page, title: string, rowText: string = title.replace(/^[^:]+: /, '')): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(`>${title}`);
  // Fuzzy matching also lists similar commands: pick the row that has this title.
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: rowText }).first();
  await row.waitFor({ timeout: 10_000 });
  await row.click();
}

/** Visible text of the active terminal (the DOM renderer draws rows as text). */
async function terminalText(page: Page): Promise<string> {
  const rows = page.locator('.terminal-wrapper.active .xterm-rows');
  if ((await rows.count()) === 0) return '';
  return (await rows.first().innerText()).replace(/\u00a0/g, ' ');
}

async function waitForTerminal(page: Page, re: RegExp, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  while (Date.now() < deadline) {
    text = await terminalText(page);
    if (re.test(text)) return text;
    await page.waitForTimeout(250);
  }
  throw new Error(`terminal never showed ${re}; it shows:\n${text}`);
}

/** Picks a context menu entry the way a user does with the keyboard: highlight, then Enter. */
async function contextMenu(page: Page, label: string): Promise<void> {
  const item = page.locator('.context-view .action-item', { hasText: new RegExp(`^${label}$`) }).first();
  await item.hover();
  await page.keyboard.press('Enter');
}

/** Matches of re in the .log files under dir (code-server writes output channels there). */
function findInFiles(dir: string, re: RegExp): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.log')) continue;
    found.push(...(readFileSync(path.join(entry.parentPath ?? entry.path, entry.name), 'utf8').match(re) ?? []));
  }
  return found;
}

function treeRow(page: Page, view: string, text: string | RegExp) {
  return page.locator(`.pane:has(.pane-header[aria-label^="${view}"]) .monaco-list-row`, { hasText: text });
}

test('Containers view, Run in Container, container shell and context menu in a real VS Code', { timeout: 300_000 }, async (t) => {
  const reason = skipReason();
  if (reason) {
    t.skip(reason);
    return;
  }
  rmSync(RESULTS, { recursive: true, force: true });
  mkdirSync(RESULTS, { recursive: true });
  // package.json's main is the bundle the .vsix ships: build it from the current sources
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'bundle.js')], { stdio: 'inherit' });
  const sandbox = mkdtempSync(path.join(tmpdir(), 'capsa-e2e-'));
  // CAPSA_KEEP_E2E=1 keeps the sandbox (code-server logs, the extension's output) for debugging.
  // node:test runs after-hooks in the order they were added: undo in reverse (browser, code-server, helper, registry), the sandbox last
  const cleanups: Array<() => unknown> = [() => (process.env.CAPSA_KEEP_E2E ? console.log(`kept ${sandbox}`) : rmSync(sandbox, { recursive: true, force: true }))];
  const after = (fn: () => unknown): void => void cleanups.push(fn);
  t.after(async () => {
    for (const undo of cleanups.reverse()) await Promise.race([Promise.resolve().then(undo).catch((err: Error) => console.error(`cleanup: ${err.message}`)), new Promise((r) => setTimeout(r, 30_000))]);
  });
  const registry = await startRegistry();
  after(() => registry.stop());
  await seedBusybox(registry);
  const image = `${registry.url.replace(/^https?:\/\//, '')}/library/busybox:latest`;

  const workspace = path.join(sandbox, 'sample');
  mkdirSync(path.join(workspace, '.devcontainer'), { recursive: true });
  writeFileSync(path.join(workspace, '.devcontainer', 'devcontainer.json'), `// test workspace\n{\n  "image": "${image}",\n  "containerEnv": { "GREETING": "hello" },\n}\n`);
  writeFileSync(path.join(workspace, 'hello.sh'), '#!/bin/sh\necho "$GREETING from $(hostname) in $(pwd)"\nexit 0\n');

  // VS Code starts before the helper: the socket it is told about appears later.
  const socket = path.join(sandbox, 'capsa.sock');
  const server = await startCodeServer(path.join(sandbox, 'code-server'), workspace, { 'capsa.socketPath': socket, 'capsa.launchHelper': false });
  after(() => server.stop());

  const { chromium } = await import('playwright-core');
  const context = await chromium.launchPersistentContext(path.join(sandbox, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  after(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines: string[] = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  try {
    await page.goto(`${server.url}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });

    // 0. No helper yet: the status bar and the welcome view say so.
    const activity = page.locator('.activitybar [aria-label^="Capsa"]').first();
    await activity.waitFor({ timeout: 60_000 });
    await activity.click();
    await page.locator('.statusbar-item', { hasText: 'Capsa: not running' }).first().waitFor({ timeout: 30_000 });
    await page.locator('.welcome-view-content', { hasText: 'The Capsa helper is not running' }).first().waitFor({ timeout: 10_000 });
    const noHelper = page.locator('.notification-toast', { hasText: 'no helper is listening' });
    await noHelper.first().waitFor({ timeout: 10_000 });
    await shot(page, '0-helper-not-running');

    // 1. The helper starts: the window connects by itself and lists the helper's image.
    const helper = await startHelper({ mirror: registry.url });
    after(() => helper.stop());
    const pulled = await helper.cli(['pull', image]);
    assert.equal(pulled.code, 0, pulled.stderr);
    symlinkSync(helper.socket, socket);
    await treeRow(page, 'Images', /busybox/).first().waitFor({ timeout: 30_000 });
    await page.locator('.statusbar-item', { hasText: /Capsa \d/ }).first().waitFor({ timeout: 10_000 });
    await noHelper.first().waitFor({ state: 'detached', timeout: 10_000 });
    await shot(page, '1-containers-view');

    // 2. Run in Container on hello.sh, cold: the image is pulled again, the container created, the script run.
    const removed = await helper.cli(['rmi', image]);
    assert.equal(removed.code, 0, removed.stderr);
    await treeRow(page, 'Images', /busybox/).first().waitFor({ state: 'detached', timeout: 15_000 });
    await page.keyboard.press('Control+P');
    await page.locator('.quick-input-widget input').fill('hello.sh');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'hello.sh' }).first().waitFor();
    await page.keyboard.press('Enter');
    await page.locator('.tab.active', { hasText: 'hello.sh' }).waitFor();
    const clicked = Date.now();
    await runCommand(page, 'Capsa: Run in Container');
    const out = await waitForTerminal(page, /hello from \w+ in \/workspaces\/sample/, 120_000);
    const coldMs = Date.now() - clicked;
    assert.match(out, /Pinned [\s\S]*capsa-lock\.json/);
    await waitForTerminal(page, /process exited with code 0/, 15_000);
    await treeRow(page, 'Containers', /capsa-sample-/).first().waitFor({ timeout: 15_000 });
    await shot(page, '2-run-in-container');
    const lock = JSON.parse(readFileSync(path.join(workspace, '.devcontainer', 'capsa-lock.json'), 'utf8')) as { images: Record<string, { digest: string }> };
    assert.match(lock.images[image]?.digest ?? '', /^sha256:[0-9a-f]{64}$/, 'the first run pinned the image digest');

    // The second run reuses the warm container.
    await page.keyboard.press('Escape');
    await page.locator('.tab', { hasText: 'hello.sh' }).first().click();
    const again = Date.now();
    await runCommand(page, 'Capsa: Run in Container');
    await waitForTerminal(page, /process exited with code 0/, 60_000);
    const warmMs = Date.now() - again;
    t.diagnostic(`Run in Container to the exit shown, driven through the command palette: first ${coldMs} ms (pull, container created), warm ${warmMs} ms`);
    // The extension's own figure, command to first output line, from its output channel's log file.
    for (const line of findInFiles(path.join(sandbox, 'code-server'), /Run in Container: first output \d+ ms[^\n]*/g)) t.diagnostic(line);

    // The finished run's terminal closes on a key press.
    await page.locator('.terminal-wrapper.active .xterm').first().click();
    await page.keyboard.press('Enter');
    await page.waitForTimeout(500);

    // 3. The "Capsa: container shell" profile: hostname, uid and the workspace mount.
    await page.locator('.tab', { hasText: 'hello.sh' }).first().click();
    await runCommand(page, 'Terminal: Create New Terminal (With Profile)');
    await page.locator('.quick-input-widget input').fill('Capsa: container shell');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Capsa: container shell' }).first().waitFor();
    await page.keyboard.press('Enter');
    // A terminal created from a profile does not open the panel by itself.
    await runCommand(page, 'Terminal: Focus Terminal', 'Terminal: Focus Terminal');
    await page.locator('.terminal-wrapper.active .xterm').first().click();
    await waitForTerminal(page, /[#$]\s*$/m, 30_000);
    await page.keyboard.type('hostname; id -u; ls /workspaces\n');
    const shell = await waitForTerminal(page, /\n0\s*\n\s*sample\b/, 20_000);
    assert.match(shell, /^[0-9a-f]{12}\s*$/m, 'hostname is the container short id');
    await shot(page, '3-container-shell');
    await page.keyboard.type('exit\n');

    // 3b. Inspect from the context menu: the container's JSON in a read-only editor.
    await page.locator('.tab', { hasText: 'hello.sh' }).first().click();
    await treeRow(page, 'Containers', /capsa-sample-/).first().click({ button: 'right' });
    await contextMenu(page, 'Inspect');
    await page.locator('.tab.active', { hasText: /capsa-sample-.*\.json/ }).waitFor({ timeout: 15_000 });
    await page.locator('.editor-instance .view-lines', { hasText: /"[Nn]ame":\s*"\/?capsa-sample-/ }).first().waitFor({ timeout: 10_000 });
    await shot(page, '3b-inspect');

    // 3c. Run Interactive from the Images view: a shell in a fresh container of that image.
    await treeRow(page, 'Images', /latest/).first().click({ button: 'right' });
    await contextMenu(page, 'Run Interactive');
    // this terminal shows itself (unlike one made from a profile)
    await page.locator('.terminal-wrapper.active .xterm').first().click();
    await waitForTerminal(page, /[#$]\s*$/m, 30_000);
    await page.keyboard.type('echo image-$((6*7))\n');
    await waitForTerminal(page, /^image-42\s*$/m, 15_000);
    await shot(page, '3c-run-interactive');
    await page.keyboard.type('exit\n');
    // --rm: its row goes; wait for that, or the re-render closes the next context menu
    for (const deadline = Date.now() + 15_000; (await treeRow(page, 'Containers', /./).count()) > 1; ) {
      assert.ok(Date.now() < deadline, 'the interactive container was removed when its shell exited');
      await page.waitForTimeout(200);
    }

    // 4. Stop and remove the workspace container from the context menu.
    await page.locator('.tab', { hasText: 'hello.sh' }).first().click();
    const row = treeRow(page, 'Containers', /capsa-sample-/).first();
    await row.click({ button: 'right' });
    await contextMenu(page, 'Stop');
    await treeRow(page, 'Containers', /exited/).first().waitFor({ timeout: 30_000 });
    await shot(page, '4-stopped');
    await treeRow(page, 'Containers', /capsa-sample-/).first().click({ button: 'right' });
    await contextMenu(page, 'Remove');
    await treeRow(page, 'Containers', /capsa-sample-/).first().waitFor({ state: 'detached', timeout: 30_000 });
    await shot(page, '5-removed');
    const ps = await helper.cli(['ps', '-a']);
    assert.doesNotMatch(ps.stdout, /capsa-sample-/);

    // 5. The helper dies and comes back: the window notices both, without a reload.
    await helper.crash();
    await page.locator('.statusbar-item', { hasText: 'Capsa: not running' }).first().waitFor({ timeout: 15_000 });
    await restartHelper(helper);
    await page.locator('.statusbar-item', { hasText: /Capsa \d/ }).first().waitFor({ timeout: 15_000 });
    await treeRow(page, 'Images', /busybox/).first().waitFor({ timeout: 15_000 });
    await noHelper.first().waitFor({ state: 'detached', timeout: 10_000 });
    await shot(page, '6-reconnected');
  } catch (err) {
    await shot(page, 'failure').catch(() => undefined);
    writeFileSync(path.join(RESULTS, 'failure-console.log'), consoleLines.join('\n') + '\n--- code-server ---\n' + server.log());
    throw err;
  }
});
