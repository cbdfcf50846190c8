/**
 * A helper entry for tests: the product helper, whose warm CLI processes run
 * test/helpers/test-cli.ts (the CLI with test-only verbs) instead of the
 * product CLI. startHelper({ testVerbs: true }) starts this one.
 */
import * as path from 'node:path';
import { log, main } from '../../server/main';

main({ warmCliEntry: path.join(__dirname, 'test-cli.js') }).catch((err: unknown) => {
  log(`fatal: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
