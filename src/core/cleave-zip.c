/* cleave-zip.c: a minimal reader for zip archives of stored entries.
 *
 * Layout read (PKWARE APPNOTE): the end of central directory record
 * (PK\5\6) within the last 64 KiB + 22 bytes; when one of its counts is
 * saturated, or a zip64 locator (PK\6\7) precedes it, the zip64 end record
 * (PK\6\6) gives the 64-bit entry count and central directory range. Each
 * central directory header (PK\1\2) gives an entry's method, sizes and local
 * header offset (zip64 extra field 0x0001 when saturated); the data starts
 * after the local header (PK\3\4) and its own name and extra field. Sizes in
 * local headers are ignored: torch.save writes them as 0 and puts the real
 * ones in data descriptors and the central directory. */
#include "cleave-zip-private.h"
#include "cleave-util-private.h"

#include <string.h>

#define SIG_LOCAL   0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END     0x06054b50u
#define SIG_END64   0x06064b50u
#define SIG_LOC64   0x07064b50u

#define END_LEN     22
#define END64_LEN   56
#define LOC64_LEN   20
#define CENTRAL_LEN 46
#define LOCAL_LEN   30
#define SATURATED32 0xffffffffu

static guint16
rd16 (const guint8 *p)
{
  return (guint16) (p[0] | p[1] << 8);
}

static guint32
rd32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static guint64
rd64 (const guint8 *p)
{
  return rd32 (p) | (guint64) rd32 (p + 4) << 32;
}

/* CRC-32 (ISO 3309, as zip stores it), table-driven. */
static guint32
crc32_of (const guint8 *p, guint64 n)
{
  static guint32 table[256];
  static gsize init = 0;
  guint32 c = 0xffffffffu;

  if (g_once_init_enter (&init))
    {
      for (guint32 i = 0; i < 256; i++)
        {
          guint32 v = i;
          for (int k = 0; k < 8; k++)
            v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
          table[i] = v;
        }
      g_once_init_leave (&init, 1);
    }
  for (guint64 i = 0; i < n; i++)
    c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static void
entry_free (gpointer p)
{
  CleaveZipEntry *e = p;
  g_free (e->name);
  g_free (e);
}

void
cleave_zip_free (CleaveZip *zip)
{
  if (zip == NULL)
    return;
  g_hash_table_unref (zip->by_name);
  g_ptr_array_unref (zip->entries);
  g_free (zip);
}

const CleaveZipEntry *
cleave_zip_find (const CleaveZip *zip, const char *name)
{
  return g_hash_table_lookup (zip->by_name, name);
}

/* The central directory's range and entry count, from the end records. */
static gboolean
read_end (const guint8 *data, gsize size, const char *file, guint64 *cd_off, guint64 *cd_size,
          guint64 *count, GError **error)
{
  gsize lowest = size > END_LEN + 0xffff ? size - END_LEN - 0xffff : 0;
  gsize pos = size - END_LEN;
  const guint8 *e;

  while (rd32 (data + pos) != SIG_END)
    {
      if (pos == lowest)
        return cleave_invalid_file (error, file, "zip: no end of central directory record (truncated file?)");
      pos--;
    }
  e = data + pos;
  *count = rd16 (e + 10);
  *cd_size = rd32 (e + 12);
  *cd_off = rd32 (e + 16);
  if (pos >= LOC64_LEN && rd32 (data + pos - LOC64_LEN) == SIG_LOC64)
    {
      guint64 off64 = rd64 (data + pos - LOC64_LEN + 8);
      const guint8 *z;
      if (off64 > pos - LOC64_LEN || pos - LOC64_LEN - off64 < END64_LEN)
        return cleave_invalid_file (error, file, "zip64 end record offset %" G_GUINT64_FORMAT " is out of range", off64);
      z = data + off64;
      if (rd32 (z) != SIG_END64)
        return cleave_invalid_file (error, file, "zip64 end record: bad signature at offset %" G_GUINT64_FORMAT, off64);
      *count = rd64 (z + 32);
      *cd_size = rd64 (z + 40);
      *cd_off = rd64 (z + 48);
    }
  else if (*count == 0xffff || *cd_size == SATURATED32 || *cd_off == SATURATED32)
    return cleave_invalid_file (error, file, "zip: saturated end record without a zip64 locator");
  if (*cd_off > pos || *cd_size > pos - *cd_off)
    return cleave_invalid_file (error, file, "zip: central directory (offset %" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                                " bytes) lies outside the file", *cd_off, *cd_size);
  if (*count > *cd_size / CENTRAL_LEN)
    return cleave_invalid_file (error, file, "zip: %" G_GUINT64_FORMAT " entries cannot fit in a %" G_GUINT64_FORMAT
                                "-byte central directory", *count, *cd_size);
  return TRUE;
}

/* Replaces saturated sizes and offset by the zip64 extra field's values. */
static gboolean
read_zip64_extra (const guint8 *x, gsize len, guint64 *usize, guint64 *csize, guint64 *offset,
                  const char *file, const char *name, GError **error)
{
  gsize q = 0;
  while (q + 4 <= len)
    {
      guint16 id = rd16 (x + q), n = rd16 (x + q + 2);
      gsize k = q + 4;
      guint64 *fields[3] = { usize, csize, offset };
      if (n > len - q - 4)
        return cleave_invalid_file (error, file, "zip entry '%s': extra field overruns its header", name);
      if (id == 0x0001)
        for (int f = 0; f < 3; f++)
          if (*fields[f] == SATURATED32)
            {
              if (k + 8 > q + 4 + n)
                return cleave_invalid_file (error, file, "zip entry '%s': zip64 extra field too short", name);
              *fields[f] = rd64 (x + k);
              k += 8;
            }
      q += 4 + (gsize) n;
    }
  return TRUE;
}

/* Reads the central directory header at @p (with @avail bytes of directory
 * left) into a new entry; *@len gets the header's length. */
static CleaveZipEntry *
read_central (const guint8 *data, gsize size, const guint8 *p, guint64 avail, gsize *len, const char *file,
              GError **error)
{
  guint16 flags, method, nlen, xlen, clen, lnlen, lxlen;
  guint64 csize, usize, lho, start;
  g_autofree char *name = NULL, *shown = NULL;
  CleaveZipEntry *e;

  if (avail < CENTRAL_LEN || rd32 (p) != SIG_CENTRAL)
    {
      cleave_invalid_file (error, file, "zip: bad central directory header at offset %" G_GSIZE_FORMAT,
                           (gsize) (p - data));
      return NULL;
    }
  flags = rd16 (p + 8);
  method = rd16 (p + 10);
  csize = rd32 (p + 20);
  usize = rd32 (p + 24);
  nlen = rd16 (p + 28);
  xlen = rd16 (p + 30);
  clen = rd16 (p + 32);
  lho = rd32 (p + 42);
  if ((guint64) CENTRAL_LEN + nlen + xlen + clen > avail)
    {
      cleave_invalid_file (error, file, "zip: central directory header at offset %" G_GSIZE_FORMAT
                           " overruns the directory", (gsize) (p - data));
      return NULL;
    }
  name = g_strndup ((const char *) p + CENTRAL_LEN, nlen);
  shown = g_strescape (name, NULL);
  if (strlen (name) != nlen)
    {
      cleave_invalid_file (error, file, "zip entry '%s': name contains a NUL byte", shown);
      return NULL;
    }
  if (!read_zip64_extra (p + CENTRAL_LEN + nlen, xlen, &usize, &csize, &lho, file, shown, error))
    return NULL;
  if (flags & 1)
    {
      cleave_invalid_file (error, file, "zip entry '%s' is encrypted", shown);
      return NULL;
    }
  if (method != 0 || csize != usize)
    {
      cleave_invalid_file (error, file, "zip entry '%s' is compressed (method %u); torch.save stores entries "
                           "uncompressed", shown, method);
      return NULL;
    }
  if (lho > size || size - lho < LOCAL_LEN || rd32 (data + lho) != SIG_LOCAL)
    {
      cleave_invalid_file (error, file, "zip entry '%s': local header offset %" G_GUINT64_FORMAT " is invalid",
                           shown, lho);
      return NULL;
    }
  lnlen = rd16 (data + lho + 26);
  lxlen = rd16 (data + lho + 28);
  start = lho + LOCAL_LEN + lnlen + lxlen;
  if (start > size || usize > size - start)
    {
      cleave_invalid_file (error, file, "zip entry '%s': %" G_GUINT64_FORMAT " bytes at offset %" G_GUINT64_FORMAT
                           " run past the end of the file (%" G_GSIZE_FORMAT " bytes)", shown, usize, start, size);
      return NULL;
    }
  if (crc32_of (data + start, usize) != rd32 (p + 16))
    {
      cleave_invalid_file (error, file, "zip entry '%s': CRC-32 %08x does not match its bytes (%08x): the file "
                           "is damaged", shown, rd32 (p + 16), crc32_of (data + start, usize));
      return NULL;
    }
  e = g_new0 (CleaveZipEntry, 1);
  e->name = g_steal_pointer (&name);
  e->data = data + start;
  e->size = usize;
  *len = CENTRAL_LEN + nlen + xlen + clen;
  return e;
}

CleaveZip *
cleave_zip_open (const guint8 *data, gsize size, const char *file, GError **error)
{
  g_autoptr(CleaveZip) zip = NULL;
  guint64 cd_off = 0, cd_size = 0, count = 0, pos;

  if (size < END_LEN)
    {
      cleave_invalid_file (error, file, "zip: %" G_GSIZE_FORMAT " bytes is too short for a zip archive", size);
      return NULL;
    }
  if (!read_end (data, size, file, &cd_off, &cd_size, &count, error))
    return NULL;
  zip = g_new0 (CleaveZip, 1);
  zip->entries = g_ptr_array_new_with_free_func (entry_free);
  zip->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  pos = cd_off;
  for (guint64 i = 0; i < count; i++)
    {
      gsize len = 0;
      CleaveZipEntry *e = read_central (data, size, data + pos, cd_off + cd_size - pos, &len, file, error);
      if (e == NULL)
        return NULL;
      if (g_hash_table_contains (zip->by_name, e->name))
        {
          g_autofree char *shown = g_strescape (e->name, NULL);
          entry_free (e);
          cleave_invalid_file (error, file, "zip entry '%s' appears twice", shown);
          return NULL;
        }
      g_ptr_array_add (zip->entries, e);
      g_hash_table_insert (zip->by_name, e->name, e);
      pos += len;
    }
  return g_steal_pointer (&zip);
}
