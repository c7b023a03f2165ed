/* cleave-zip-private.h: a minimal reader for zip archives of stored
 * (uncompressed) entries, as torch.save writes them.
 *
 * The archive is a byte range the caller keeps alive (a mapped file). The
 * reader walks the central directory (zip64 records included), checks every
 * offset and size against the archive, and points each entry at its bytes;
 * nothing is copied or allocated from an unchecked size. Compressed or
 * encrypted entries are refused. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *name;            /* as stored, NUL-free */
  const guint8 *data;    /* into the archive's bytes */
  guint64 size;
} CleaveZipEntry;

typedef struct {
  GPtrArray *entries;    /* of CleaveZipEntry*, central directory order */
  GHashTable *by_name;   /* name -> CleaveZipEntry* */
} CleaveZip;

/* Errors (CLEAVE_ERROR_INVALID_FILE) start with @file. */
CleaveZip            *cleave_zip_open (const guint8 *data, gsize size, const char *file, GError **error);
const CleaveZipEntry *cleave_zip_find (const CleaveZip *zip, const char *name);
void                  cleave_zip_free (CleaveZip *zip);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveZip, cleave_zip_free)

G_END_DECLS
