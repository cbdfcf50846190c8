/**
 * Extension-host assertions, run inside VS Code by test/electron/run.ts: the
 * extension activates, contributes its views, commands and terminal profile,
 * and reports the helper's state. Plain assertions (no mocha) so the suite
 * needs nothing beyond VS Code itself.
 */
import assert from 'node:assert/strict';
import * as vscode from 'vscode';

const checks: Array<[string, () => Promise<void>]> = [
  [
    'the extension activates',
    async () => {
      const ext = vscode.extensions.getExtension('capsa.capsa');
      assert.ok(ext, 'capsa.capsa is installed');
      await ext.activate();
      assert.ok(ext.isActive);
    },
  ],
  [
    'its commands are registered',
    async () => {
      const all = new Set(await vscode.commands.getCommands(true));
      for (const id of ['capsa.runInContainer', 'capsa.refresh', 'capsa.pullImage', 'capsa.container.stop', 'capsa.image.run', 'capsa.startHelper']) {
        assert.ok(all.has(id), `${id} is registered`);
      }
    },
  ],
  [
    'it contributes the views and the container shell profile',
    async () => {
      const pkg = vscode.extensions.getExtension('capsa.capsa')!.packageJSON as { contributes: { views: { capsa: Array<{ id: string }> }; terminal: { profiles: Array<{ id: string }> } } };
      assert.deepEqual(pkg.contributes.views.capsa.map((v) => v.id), ['capsa.containers', 'capsa.images']);
      assert.equal(pkg.contributes.terminal.profiles[0].id, 'capsa.containerShell');
      await vscode.commands.executeCommand('workbench.view.extension.capsa');
    },
  ],
];

export async function run(): Promise<void> {
  const failures: string[] = [];
  for (const [name, fn] of checks) {
    try {
      await fn();
      console.log(`ok - ${name}`);
    } catch (err) {
      failures.push(`${name}: ${(err as Error).message}`);
      console.log(`not ok - ${name}: ${(err as Error).message}`);
    }
  }
  if (failures.length > 0) throw new Error(`${failures.length} extension-host check(s) failed:\n${failures.join('\n')}`);
}
