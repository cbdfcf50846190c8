import { randomBytes, randomInt } from 'node:crypto';

/** A container id: 64 hex digits, like Docker's. */
export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

const ADJECTIVES = [
  'brave', 'calm', 'clever', 'eager', 'fond', 'gentle', 'happy', 'keen', 'kind', 'lucid',
  'merry', 'nimble', 'proud', 'quiet', 'quick', 'sharp', 'steady', 'sunny', 'tidy', 'witty',
];
const NOUNS = [
  'ada', 'babbage', 'curie', 'darwin', 'euler', 'fermi', 'gauss', 'hopper', 'hypatia', 'kepler',
  'lovelace', 'meitner', 'newton', 'noether', 'pascal', 'ritchie', 'shannon', 'thompson', 'turing', 'wozniak',
];

/** A readable default name (`quiet_turing`), with a numeric suffix when taken. */
export function generateName(taken: (name: string) => boolean): string {
  for (let i = 0; i < 50; i++) {
    const base = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NOUNS[randomInt(NOUNS.length)]}`;
    const name = i < 10 ? base : `${base}${randomInt(1000)}`;
    if (!taken(name)) return name;
  }
  return `capsa_${randomBytes(6).toString('hex')}`;
}
