/**
 * The extension in a real VS Code run by users of the machine other than
 * root: two users created by the test each run code-server as themselves
 * (Chromium stays root) against one helper started as root, its socket open
 * to them. User A's window lists A's container, runs a script in it, opens
 * the container shell, and what the container writes in the workspace
 * belongs to A on the host. User B's window, live with B's own container,
 * never shows A's. Screenshots of each step go to test-results/vscode-user/.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedBusybox } from '../helpers/oci';
import { startRegistry } from '../helpers/registry';
import { newCgroupParent, REPO_ROOT, removeCgroupParent, startHelper, until, type TestHelper } from '../helpers/capsa';
import { createUser, type TestUser } from '../helpers/users';
import {
  prepareUiTest,
  closeFinishedTerminal,
  launchChromium,
  openFile,
  openProfileTerminal,
  openWorkbench,
  runCommand,
  shot as shotIn,
  startCodeServer,
  treeRow,
  undoStack,
  waitForTerminal,
  type BrowserContext,
  type CodeServer,
  type Page,
} from '../helpers/codeserver';

const RESULTS = path.join(REPO_ROOT, 'test-results', 'vscode-user');
const shot = (page: Page, name: string) => shotIn(page, RESULTS, name);

/** `folder`, a workspace of `user`'s own (mode 0700 above it), whose devcontainer runs `image` and whose hello.sh writes a file. */
function userWorkspace(sandbox: string, user: TestUser, folder: string, image: string): { home: string; workspace: string } {
  const home = path.join(sandbox, user.name);
  const workspace = path.join(home, folder);
  mkdirSync(path.join(workspace, '.devcontainer'), { recursive: true });
  writeFileSync(path.join(workspace, '.devcontainer', 'devcontainer.json'), `{\n  "image": "${image}",\n  "containerEnv": { "GREETING": "hello" },\n}\n`);
  writeFileSync(path.join(workspace, 'hello.sh'), '#!/bin/sh\ntouch made-by-run\necho "$GREETING from $(hostname) in $(pwd) as $(id -u)"\nexit 0\n');
  for (const p of [home, workspace, path.join(workspace, '.devcontainer'), path.join(workspace, '.devcontainer', 'devcontainer.json'), path.join(workspace, 'hello.sh')]) {
    chownSync(p, user.uid, user.gid);
  }
  chmodSync(home, 0o700);
  return { home, workspace };
}

/** A window of `server` on `workspace`, connected to the helper (the status bar shows its version). */
async function window(context: BrowserContext, server: CodeServer, workspace: string, failures: Array<() => void>, tag: string): Promise<Page> {
  const page = await context.newPage();
  const consoleLines: string[] = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  failures.push(() => writeFileSync(path.join(RESULTS, `failure-${tag}-console.log`), consoleLines.join('\n') + '\n--- code-server ---\n' + server.log()));
  await openWorkbench(page, server.url, workspace);
  await page.locator('.statusbar-item', { hasText: /Capsa \d/ }).first().waitFor({ timeout: 30_000 });
  return page;
}

/** Run in Container on hello.sh in `page`'s workspace, to the exit shown; the terminal then closes. */
async function runHello(page: Page, folder: string): Promise<string> {
  await openFile(page, 'hello.sh');
  await runCommand(page, 'Capsa: Run in Container');
  const out = await waitForTerminal(page, new RegExp(`hello from \\w+ in /workspaces/${folder} as 0`), 120_000);
  await waitForTerminal(page, /process exited with code 0/, 15_000);
  await treeRow(page, 'Containers', new RegExp(`capsa-${folder}-`)).first().waitFor({ timeout: 15_000 });
  return out;
}

function ownerOf(file: string): string {
  const st = statSync(file);
  return `${st.uid}:${st.gid}`;
}

test('as users other than root: Containers view, Run in Container and the container shell are their own, and the workspace stays theirs', { timeout: 240_000 }, async (t) => {
  const sandbox = prepareUiTest(t, RESULTS, 'capsa-e2e-user-');
  if (sandbox === undefined) return;
  // each user reaches its own directory in it, and nothing else
  chmodSync(sandbox, 0o711);
  const after = undoStack(t, sandbox);
  // removed after everything they run has stopped (the stack unwinds last added first)
  const a = createUser({ after });
  const b = createUser({ after });
  const registry = await startRegistry();
  after(() => registry.stop());
  await seedBusybox(registry);
  const image = `${registry.url.replace(/^https?:\/\//, '')}/library/busybox:latest`;

  const cgroupParent = newCgroupParent();
  after(() => removeCgroupParent(cgroupParent));
  const helper = await startHelper({ mirror: registry.url, env: { CAPSA_CGROUP_PARENT: cgroupParent } });
  after(() => helper.stop());
  // the socket's directory is the helper's test directory: traversable, not listable
  chmodSync(helper.dir, 0o711);
  await until('the socket to be opened to users', async () => (statSync(helper.socket).mode & 0o777) === 0o666);
  const settings = { 'capsa.socketPath': helper.socket, 'capsa.launchHelper': false };

  const wa = userWorkspace(sandbox, a, 'alpha', image);
  const wb = userWorkspace(sandbox, b, 'beta', image);
  const serverA = await startCodeServer(path.join(wa.home, 'code-server'), wa.workspace, settings, { user: a });
  after(() => serverA.stop());
  const context = await launchChromium(path.join(sandbox, 'chromium'));
  after(() => context.close());
  const failures: Array<() => void> = [];
  const pages: Page[] = [];
  try {
    // 1. A's window: connected as A, nothing of A's yet.
    const pageA = await window(context, serverA, wa.workspace, failures, 'a');
    pages.push(pageA);
    await pageA.locator('.welcome-view-content', { hasText: 'No containers yet.' }).first().waitFor({ timeout: 15_000 });
    await shot(pageA, '1-a-connected');

    // 2. Run in Container as A: the image is pulled into A's names, the container is A's.
    const out = await runHello(pageA, 'alpha');
    assert.doesNotMatch(out, /E_PERMISSION_DENIED|refused for uid/);
    await treeRow(pageA, 'Images', /busybox/).first().waitFor({ timeout: 15_000 });
    await shot(pageA, '2-a-run-in-container');
    const inspected = JSON.parse((await helper.cli(['inspect', await containerNamed(helper, 'alpha')])).stdout)[0] as { owner?: number };
    assert.equal(inspected.owner, a.uid, "the workspace container is A's");

    // The finished run's terminal closes on a key press.
    await closeFinishedTerminal(pageA);

    // 3. The container shell profile as A: root in the container, a file written in the workspace.
    await pageA.locator('.tab', { hasText: 'hello.sh' }).first().click();
    await openProfileTerminal(pageA, 'Capsa: container shell');
    await waitForTerminal(pageA, /[#$]\s*$/m, 30_000);
    await pageA.keyboard.type('id -u; touch /workspaces/alpha/made-by-shell; stat -c "in-container %u:%g" /workspaces/alpha/made-by-shell\n');
    await waitForTerminal(pageA, /^in-container 0:0\s*$/m, 20_000);
    await shot(pageA, '3-a-container-shell');
    await pageA.keyboard.type('exit\n');

    // 4. On the host, what A's container and A's window wrote in the workspace is A's.
    const mine = `${a.uid}:${a.gid}`;
    assert.equal(ownerOf(path.join(wa.workspace, 'made-by-run')), mine, 'a file written by Run in Container belongs to A on the host');
    assert.equal(ownerOf(path.join(wa.workspace, 'made-by-shell')), mine, 'a file written in the container shell belongs to A on the host');
    assert.equal(ownerOf(path.join(wa.workspace, '.devcontainer', 'capsa-lock.json')), mine, 'the lock file the window wrote belongs to A');
    const lock = JSON.parse(readFileSync(path.join(wa.workspace, '.devcontainer', 'capsa-lock.json'), 'utf8')) as { images: Record<string, { digest: string }> };
    assert.match(lock.images[image]?.digest ?? '', /^sha256:[0-9a-f]{64}$/);

    // 5. B's window, on the same helper: empty at first (no container, no image), then B's own container, never A's.
    const serverB = await startCodeServer(path.join(wb.home, 'code-server'), wb.workspace, settings, { user: b });
    after(() => serverB.stop());
    const pageB = await window(context, serverB, wb.workspace, failures, 'b');
    pages.push(pageB);
    await pageB.locator('.welcome-view-content', { hasText: 'No containers yet.' }).first().waitFor({ timeout: 15_000 });
    // image names are per user too: A's pull is not among B's
    await pageB.locator('.welcome-view-content', { hasText: 'No images yet.' }).first().waitFor({ timeout: 15_000 });
    await shot(pageB, '4-b-connected-empty');
    await runHello(pageB, 'beta');
    await shot(pageB, '5-b-own-container');
    assert.equal(await treeRow(pageB, 'Containers', /capsa-alpha-/).count(), 0, "B's window does not show A's container");
    assert.equal(ownerOf(path.join(wb.workspace, 'made-by-run')), `${b.uid}:${b.gid}`, "B's run writes as B");
    // A's window, told of B's container by nothing, still shows A's alone
    await pageA.bringToFront();
    await treeRow(pageA, 'Containers', /capsa-alpha-/).first().waitFor({ timeout: 5_000 });
    assert.equal(await treeRow(pageA, 'Containers', /capsa-beta-/).count(), 0, "A's window does not show B's container");
    await shot(pageA, '6-a-after-b');
    // root sees both, each with its owner
    const all = await helper.cli(['ps', '-a']);
    assert.match(all.stdout, /capsa-alpha-/);
    assert.match(all.stdout, /capsa-beta-/);
  } catch (err) {
    for (const [i, page] of pages.entries()) await shot(page, `failure-${i === 0 ? 'a' : 'b'}`).catch(() => undefined);
    for (const write of failures) write();
    throw err;
  }
});

/** The name of the workspace container capsa-FOLDER-…, from root's `ps -a`. */
async function containerNamed(helper: TestHelper, folder: string): Promise<string> {
  const m = new RegExp(`capsa-${folder}-[0-9a-f]+`).exec((await helper.cli(['ps', '-a'])).stdout);
  assert.ok(m, `root's ps -a lists capsa-${folder}-…`);
  return m[0];
}
