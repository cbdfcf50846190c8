/**
 * `capsa run -it` and `capsa exec -it` driven through a real pty, as a
 * person at a terminal would: util-linux `script` gives the CLI a pty as
 * its controlling terminal; the test types into it and reads the screen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CLI, mountsUnder, startHelper, type TestHelper, fileRegistry } from '../helpers/capsa';

const registry = fileRegistry();

/** A terminal session: everything the program wrote, a way to type, and its exit. */
function terminal(h: TestHelper, command: string, ttyFile: string) {
  const shell = `stty rows 30 cols 100; tty > ${ttyFile}; exec ${process.execPath} ${CLI} ${command}`;
  const child = spawn('script', ['-qefc', shell, '/dev/null'], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => (screen += d.toString()));
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  return {
    get screen() {
      return screen;
    },
    type: (s: string) => child.stdin.write(s),
    async waitFor(re: RegExp, what: string, timeoutMs = 15_000): Promise<string> {
      const start = Date.now();
      while (!re.test(screen)) {
        if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}; screen so far:\n${screen}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return screen;
    },
    exited,
    kill: () => child.kill('SIGKILL'),
  };
}

test('run -it gives an interactive shell: ps, hostname, stty size, resize, and exit 3 returns 3', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const ttyFile = path.join(h.dir, 'tty');
  const term = terminal(h, 'run -it --rm busybox sh', ttyFile);
  t.after(() => term.kill());
  await term.waitFor(/\/ # (\x1b\[6n)?$/, 'the shell prompt');
  term.type('ps -e\n');
  await term.waitFor(/PID\s+USER[\s\S]*\n\s+1 root\s+(\S+\s+)?sh\r*\n/, 'ps output with sh as PID 1');
  const psLines = term.screen.split('\n').filter((l) => /^\s+\d+ root/.test(l));
  assert.ok(psLines.length <= 3, `only the container's processes are listed: ${psLines.join('|')}`);
  term.type('hostname\n');
  await term.waitFor(/hostname\r*\n[0-9a-f]{12}\r*\n/, 'the short id as hostname');
  term.type('stty size\n');
  await term.waitFor(/stty size\r*\n30 100\r*\n/, 'the size of the terminal from the first line');
  // Resize the CLI's terminal from outside, as a terminal emulator does: the kernel sends SIGWINCH.
  const tty = (await fs.readFile(ttyFile, 'utf8')).trim();
  await new Promise<void>((resolve, reject) => spawn('stty', ['-F', tty, 'rows', '40', 'cols', '120']).on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`stty exited ${c}`)))));
  // The resize reaches the container's pty through the CLI and the helper, which can take a while on a
  // loaded machine: ask again until the new size shows (the screen keeps every answer, so match the size alone).
  const deadline = Date.now() + 15_000;
  for (;;) {
    term.type('stty size\n');
    try {
      await term.waitFor(/\n40 120\r*\n/, 'the new size after a resize', 1000);
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
    }
  }
  term.type('exit 3\n');
  assert.equal(await term.exited, 3);
  assert.deepEqual(await mountsUnder(h.dir), []);
});

test('Ctrl-C in run -it reaches the container, not the CLI', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const term = terminal(h, 'run -it --rm busybox sh', path.join(h.dir, 'tty'));
  t.after(() => term.kill());
  await term.waitFor(/\/ # (\x1b\[6n)?$/, 'the shell prompt');
  term.type('sleep 30; echo after-sleep\n');
  await new Promise((r) => setTimeout(r, 300));
  term.type('\x03');
  await term.waitFor(/\^C[\s\S]*\/ # (\x1b\[6n)?$/, 'the prompt again after Ctrl-C');
  assert.ok(!term.screen.includes('after-sleep\r\n/'), 'the interrupted command did not run on');
  term.type('echo still-here\n');
  await term.waitFor(/still-here\r*\n/, 'the shell still alive');
  term.type('exit\n');
  assert.equal(await term.exited, 0);
});

test('exec -it joins a running container with a pty of the right size', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  const run = await h.cli(['run', '-d', '--name', 'box', 'busybox', 'sleep', '60']);
  assert.equal(run.code, 0, run.stderr);
  t.after(async () => void (await h.cli(['rm', '-f', 'box'])));
  const term = terminal(h, 'exec -it box sh', path.join(h.dir, 'tty'));
  t.after(() => term.kill());
  await term.waitFor(/\/ # (\x1b\[6n)?$/, 'the shell prompt');
  term.type('stty size; ps -o pid,comm | grep -c sleep\n');
  await term.waitFor(/30 100\r*\n1\r*\n/, 'the terminal size and the container\'s sleep');
  term.type('exit 5\n');
  assert.equal(await term.exited, 5);
  const nonTty = await h.cli(['exec', 'box', 'sh', '-c', 'echo $$ > /dev/null; cat /proc/1/cmdline | tr "\\0" " "']);
  assert.equal(nonTty.stdout.trim(), 'sleep 60');
});

test('Ctrl-P Ctrl-Q detaches run -it and leaves the container running; attach comes back; --detach-keys picks others', async (t) => {
  const h = await startHelper({ mirror: registry.url });
  t.after(() => h.stop());
  t.after(async () => void (await h.cli(['rm', '-f', 'det'])));
  const term = terminal(h, 'run -it --name det busybox sh', path.join(h.dir, 'tty'));
  t.after(() => term.kill());
  await term.waitFor(/\/ # (\x1b\[6n)?$/, 'the shell prompt');
  term.type('echo before > /tmp/mark\n');
  await new Promise((r) => setTimeout(r, 200));
  term.type('\x10\x11');
  assert.equal(await term.exited, 0);
  const info = JSON.parse((await h.cli(['inspect', 'det'])).stdout)[0];
  assert.equal(info.State.Status, 'running', 'the container goes on without the CLI');
  const again = terminal(h, 'attach --detach-keys ctrl-x,x det', path.join(h.dir, 'tty2'));
  t.after(() => again.kill());
  await new Promise((r) => setTimeout(r, 300));
  again.type('cat /tmp/mark\n');
  await again.waitFor(/before\r*\n/, 'the same shell, its file still there');
  // the old keys are typed into the shell now; the new ones detach
  again.type('\x18x');
  assert.equal(await again.exited, 0);
  assert.equal(JSON.parse((await h.cli(['inspect', 'det'])).stdout)[0].State.Status, 'running');
  const bad = await h.cli(['attach', '--detach-keys', 'alt-q', 'det']);
  assert.equal(bad.code, 125);
  assert.match(bad.stderr, /invalid --detach-keys "alt-q"/);
});
