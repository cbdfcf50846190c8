/* Paths inside the container's root, resolved as the kernel would with that
 * root as "/" (openat2 RESOLVE_IN_ROOT): neither `..` nor a symlink the
 * image planted, absolute ones included, can lead outside it. */
#ifndef CAPSA_SETUP_INROOT_H
#define CAPSA_SETUP_INROOT_H

#include <limits.h>

#include "common/error.h"

/* Opens path (absolute, inside the container) relative to rootfd as if
 * rootfd were "/": `..` and symlinks, absolute ones included, cannot leave it.
 * flags are open(2) flags; O_CLOEXEC is added. */
int open_in_root(int rootfd, const char *path, int flags, struct shim_error *err, const char *step);

/* mkdir -p of path inside the root; returns an O_PATH fd of the directory. */
int mkdir_in_root(int rootfd, const char *path, struct shim_error *err, const char *step);

/* Resolves every symlink of path (absolute, inside the container) as the
 * kernel would with rootfd as "/", into out: a path with no symlink among
 * its existing components; the missing rest is kept as written. */
int resolve_in_root(int rootfd, const char *path, char out[PATH_MAX], struct shim_error *err, const char *step);

/* Opens path inside the root for use as a mount point, creating it first
 * when missing: a directory, or an empty file when as_file. A dangling
 * symlink is followed inside the root and its target created. */
int open_mountpoint(int rootfd, const char *path, int as_file, struct shim_error *err, const char *step);

#endif
