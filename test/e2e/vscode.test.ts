/**
 * The extension in a real VS Code: code-server (installed by
 * scripts/install-code-server.sh) driven by Debian's Chromium through
 * playwright-core, against a real helper and a real registry. Screenshots of
 * each step go to test-results/vscode/.
 */
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedBusybox } from '../helpers/oci';
import { startRegistry } from '../helpers/registry';
import { REPO_ROOT, restartHelper, startHelper } from '../helpers/capsa';
import {
  prepareUiTest,
  closeFinishedTerminal,
  contextMenu,
  findInFiles,
  launchChromium,
  openFile,
  openProfileTerminal,
  openWorkbench,
  runCommand,
  shot as shotIn,
  startCodeServer,
  treeRow,
  waitForTerminal,
  undoStack,
  type Page,
} from '../helpers/codeserver';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode');
const shot = (page: Page, name: string) => shotIn(page, RESULTS, name);

test('Containers view, Run in Container, container shell and context menu in a real VS Code', { timeout: 300_000 }, async (t) => {
  const sandbox = prepareUiTest(t, RESULTS, 'capsa-e2e-');
  if (sandbox === undefined) return;
  const after = undoStack(t, sandbox);
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

  const context = await launchChromium(path.join(sandbox, 'chromium'));
  after(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleLines: string[] = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  try {
    // 0. No helper yet: the status bar and the welcome view say so.
    await openWorkbench(page, server.url, workspace);
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
    await openFile(page, 'hello.sh');
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
    await closeFinishedTerminal(page);

    // 3. The "Capsa: container shell" profile: hostname, uid and the workspace mount.
    await page.locator('.tab', { hasText: 'hello.sh' }).first().click();
    await openProfileTerminal(page, 'Capsa: container shell');
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
