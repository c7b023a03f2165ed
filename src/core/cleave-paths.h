/* cleave-paths.h: where the programs find the data files installed with them
 * (the demo models). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The folders searched for Cleave's data files, in order (NULL-terminated;
 * free with g_strfreev).
 *
 * A program running from the build tree it was compiled in (tests,
 * `./build/src/cli/cleave-cli`; its /proc/self/exe path starts with the build
 * directory's path as meson saw it) reads the source tree's data/ and nothing
 * else. Any other copy is an installed one and never looks at the source or
 * build tree: it reads PKGDATADIR (PREFIX/share/cleave), first under the root
 * its own location implies (a program at ROOT/PREFIX/bin reads
 * ROOT/PREFIX/share/cleave, so a tree staged with `meson install --destdir`
 * runs as it will once installed), then PKGDATADIR itself. */
char **cleave_data_dirs (void);

/* The first existing regular file @relative (e.g. "models/demo.safetensors")
 * in cleave_data_dirs(), or NULL. */
char *cleave_find_data_file (const char *relative);

G_END_DECLS
