/**
 * `npm run test:electron`: the extension-host assertions of test/electron/suite
 * inside a desktop VS Code downloaded by @vscode/test-electron. Where VS Code
 * cannot be downloaded (no network), it says so and exits 0: the same
 * extension is covered in a real workbench by test/e2e/vscode.test.ts.
 */
import * as path from 'node:path';
import { downloadAndUnzipVSCode, runTests } from '@vscode/test-electron';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

async function main(): Promise<number> {
  let vscodeExecutablePath: string;
  try {
    vscodeExecutablePath = await Promise.race([
      downloadAndUnzipVSCode({ version: process.env.CAPSA_VSCODE_VERSION ?? 'stable', timeout: 20_000 }),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer within 60 s')), 60_000).unref()),
    ]);
  } catch (err) {
    console.log(`SKIP test:electron: VS Code could not be downloaded (${(err as Error).message.split('\n')[0]}); the extension is tested in code-server by test/e2e/vscode.test.ts`);
    return 0;
  }
  try {
    await runTests({
      vscodeExecutablePath,
      extensionDevelopmentPath: REPO_ROOT,
      extensionTestsPath: path.join(__dirname, 'suite', 'index.js'),
      launchArgs: ['--disable-extensions', '--disable-workspace-trust', path.join(REPO_ROOT, 'test', 'electron')],
    });
    return 0;
  } catch (err) {
    console.error(`test:electron failed: ${(err as Error).message}`);
    return 1;
  }
}

main().then((code) => process.exit(code));
