/**
 * Layer whiteouts (OCI image-spec layer.md, "Whiteouts"), converted to the
 * form overlayfs reads, so that unpacked layers stack as lowerdirs:
 *
 *   dir/.wh.NAME        → dir/NAME as a 0/0 character device (overlayfs whiteout)
 *   dir/.wh..wh..opq    → xattr trusted.overlay.opaque=y on dir (opaque directory)
 *
 * Other `.wh..wh.` names (AUFS's hard-link bookkeeping) carry no meaning for
 * the image and are skipped.
 */
import { UnsafeLayerError } from './errors';

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_META_PREFIX = '.wh..wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

export type Whiteout =
  /** Hide everything lower layers have in `dir` (relative to the layer root; '' for the root). */
  | { kind: 'opaque'; dir: string }
  /** Hide `dir/name` of lower layers. */
  | { kind: 'whiteout'; dir: string; name: string }
  /** An AUFS bookkeeping entry to skip. */
  | { kind: 'meta' };

/**
 * Classifies a cleaned entry name (relative, no `.`/`..` components, see
 * unpack.cleanEntryName). Returns undefined for an ordinary entry. Throws
 * UnsafeLayerError for a whiteout whose target name is not a plain name.
 */
export function classifyWhiteout(cleanName: string): Whiteout | undefined {
  const slash = cleanName.lastIndexOf('/');
  const dir = slash < 0 ? '' : cleanName.slice(0, slash);
  const base = slash < 0 ? cleanName : cleanName.slice(slash + 1);
  if (base === WHITEOUT_OPAQUE) return { kind: 'opaque', dir };
  // AUFS keeps hard-link bookkeeping under /.wh..wh.plnk/ etc.; skip it whole.
  if (cleanName.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  if (!base.startsWith(WHITEOUT_PREFIX)) return undefined;
  if (base.startsWith(WHITEOUT_META_PREFIX)) return { kind: 'meta' };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new UnsafeLayerError(`whiteout ${JSON.stringify(cleanName)} names ${JSON.stringify(name)}, which is not a file name`, cleanName);
  }
  return { kind: 'whiteout', dir, name };
}
