/**
 * `.catch(ifMissing(fallback))`: a file or directory that does not exist
 * (ENOENT, or ENOTDIR for a parent that is not a directory) gives `fallback`;
 * any other failure (permissions, I/O) still propagates, so it is not taken
 * for absence.
 */
export function ifMissing<T>(fallback: T): (err: unknown) => T {
  return (err: unknown) => {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return fallback;
    throw err;
  };
}
