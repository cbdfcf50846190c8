/**
 * Owner-scoped names, shared by named volumes and user-defined networks.
 *
 * Each such object belongs to the uid that created it (objects recorded
 * before owners existed are root's), and names are per owner: two users may
 * each have a volume `data`. A caller other than root names only its own; one
 * of another owner is, to it, exactly a missing one. Root names its own
 * first; a name root does not use is looked up among every owner's, and one
 * that several owners use is refused with an error listing them rather than
 * picked at random.
 */
import { CapsaError } from '../errors';

export const ROOT_UID = 0;

/** Who asks: the uid the kernel gave the connection (server/util/peercred.ts). */
export interface Asker {
  readonly uid: number;
}

/** A name that several owners use, named by root without saying whose. */
export class AmbiguousOwnerError extends CapsaError {
  constructor(code: 'E_VOLUME_AMBIGUOUS' | 'E_NETWORK_AMBIGUOUS', kind: string, name: string, owners: number[], hint: string) {
    const list = [...owners].sort((a, b) => a - b);
    super(code, `${kind} ${JSON.stringify(name)} is owned by several users (uid ${list.join(', ')}): ${hint}`, { fields: { [kind]: name, owners: list.join(',') } });
  }
}

/**
 * What `ref` names for `asker` among `items` (each with its owner): the
 * asker's own match for a non-root asker; for root its own, else the only
 * owner's, else AmbiguousOwnerError. Undefined when nothing matches (the
 * caller throws its not-found error, the same one for every asker).
 */
export function pickOwned<T>(
  asker: Asker,
  items: Iterable<T>,
  ownerOf: (item: T) => number,
  matches: (item: T) => boolean,
  ambiguous: (owners: number[]) => Error,
): T | undefined {
  const found = [...items].filter(matches);
  const own = found.filter((i) => ownerOf(i) === asker.uid);
  if (own.length) return own[0];
  if (asker.uid !== ROOT_UID || found.length === 0) return undefined;
  const owners = [...new Set(found.map(ownerOf))];
  if (owners.length > 1) throw ambiguous(owners);
  return found[0];
}

/** Whether `asker` sees an object of `owner`: root sees every one, anyone else only its own. */
export function visibleTo(asker: Asker, owner: number): boolean {
  return asker.uid === ROOT_UID || asker.uid === owner;
}
