/**
 * The checks of run options that the CLI makes before it sends a request
 * and the helper makes again when it gets one (a client need not be ours):
 * declared once, so that both refuse the same values with the same words.
 * Each returns why the value is refused, or undefined; the caller throws its
 * own typed error with that text (the protocol imports nothing of the helper).
 */
import type { PullPolicy, RunOptions } from './types';

export const PULL_POLICIES: readonly PullPolicy[] = ['always', 'missing', 'never'];

/** Why `pull` is not a pull policy, or undefined when it is one. */
export function pullPolicyProblem(pull: unknown): string | undefined {
  return (PULL_POLICIES as readonly unknown[]).includes(pull) ? undefined : `invalid pull policy ${JSON.stringify(pull)}: expected ${PULL_POLICIES.slice(0, -1).join(', ')} or ${PULL_POLICIES.at(-1)}`;
}

export const USERNS_MODES: readonly NonNullable<RunOptions['userns']>[] = ['host', 'auto'];

/** Why `userns` is not a user-namespace mode (`--userns`), or undefined when it is one. */
export function usernsProblem(userns: unknown): string | undefined {
  return (USERNS_MODES as readonly unknown[]).includes(userns) ? undefined : `invalid --userns ${JSON.stringify(userns)}: expected ${USERNS_MODES.join(' or ')}`;
}
