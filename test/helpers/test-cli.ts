/**
 * A CLI entry for tests: the product's `capsa` main with test-only verbs in
 * front of it. Run with `--warm` by a helper started from
 * test/helpers/test-helper.ts, it is what that helper's warm CLI processes
 * serve; the product CLI knows none of these verbs.
 *
 *   __leave-timer   returns 0 and leaves an interval timer running: a call
 *                   that leaves something behind (the warm process must not
 *                   serve again).
 */
import { main } from '../../server/cli/main';
import { runWarmEntry, type CliMain } from '../../server/cli/warm/process';

const TEST_VERBS: Record<string, CliMain> = {
  '__leave-timer': async () => {
    setInterval(() => undefined, 60_000);
    return 0;
  },
};

export const testMain: CliMain = (argv, opts) => (TEST_VERBS[argv[0]] ?? main)(argv, opts);

if (require.main === module && process.argv[2] === '--warm') runWarmEntry(testMain);
