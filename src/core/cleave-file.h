/* cleave-file.h: how the core replaces files. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Replaces @path atomically: writes a hidden temporary ".NAME.tmp-XXXXXX"
 * beside it (file mode @mode before the umask), syncs it and renames it over
 * @path, so readers see the old file or the new one, never a part. On
 * failure the temporary is removed and CLEAVE_ERROR_IO names @path. */
gboolean cleave_file_replace (const char *path, const void *data, gsize len, int mode, GError **error);

/* Removes the temporaries cleave_file_replace leaves beside @path when it is
 * killed between writing and renaming. Only safe while no other writer of
 * @path can be running (the CLI calls it holding the output's lock).
 * Returns how many were removed. */
int cleave_file_remove_stale_temps (const char *path);

G_END_DECLS
