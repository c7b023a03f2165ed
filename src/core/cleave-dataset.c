/* cleave-dataset.c: IDX, CIFAR-10 binary and ImageFolder readers, and the
 * index utilities (splits, class-skewed subsets, normalisation, batches).
 *
 * Readers check every size in a file against the file before allocating
 * from it; errors are CLEAVE_ERROR_INVALID_FILE and name the file and field. */
#include "cleave-dataset.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <string.h>
#include <math.h>
#include <errno.h>
#include <glib/gstdio.h>
#include <gdk-pixbuf/gdk-pixbuf.h>

#define CIFAR_RECORD (1 + 3 * 32 * 32)
#define MAX_SIDE 4096

static const char *const fashion_names[] = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot", NULL
};

static const char *const cifar10_names[] = {
  "airplane", "automobile", "bird", "cat", "deer",
  "dog", "frog", "horse", "ship", "truck", NULL
};

static void
set_io_error (GError **error, GError *local)
{
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s", local->message);
}

/* Allocates an empty dataset; NULL with an error when the pixel buffer does
 * not fit in memory. */
static CleaveDataset *
dataset_alloc (const char *name, const char *source, int n, int c, int h, int w, GError **error)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  gsize bytes = (gsize) n * c * h * w;

  ds->name = g_strdup (name);
  ds->source = g_strdup (source);
  ds->n = n;
  ds->c = c;
  ds->h = h;
  ds->w = w;
  ds->pixels = g_try_malloc (MAX (bytes, 1));
  ds->labels = g_try_malloc (MAX (n, 1));
  if (ds->pixels == NULL || ds->labels == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY,
                   "%s: cannot allocate %" G_GSIZE_FORMAT " bytes for %d images", source, bytes, n);
      cleave_dataset_free (ds);
      return NULL;
    }
  return ds;
}

void
cleave_dataset_free (CleaveDataset *ds)
{
  if (ds == NULL)
    return;
  g_free (ds->name);
  g_free (ds->source);
  g_free (ds->pixels);
  g_free (ds->labels);
  g_strfreev (ds->class_names);
  g_free (ds);
}

static char **
names_copy (const char *const *names)
{
  return g_strdupv ((char **) names);
}

static char **
names_numeric (int n)
{
  char **v = g_new0 (char *, n + 1);

  for (int i = 0; i < n; i++)
    v[i] = g_strdup_printf ("%d", i);
  return v;
}

static gsize
image_size (const CleaveDataset *ds)
{
  return (gsize) ds->c * ds->h * ds->w;
}

/* ---------------------------------------------------------------- IDX */

/* A byte source over a whole file in memory, gunzipped on the fly when it
 * starts with the gzip magic. */
typedef struct {
  const char *path;
  const guint8 *in;
  gsize in_len, in_pos;
  GConverter *gz;
  gboolean finished;
} Source;

static gboolean
source_read (Source *s, guint8 *dst, gsize len, gsize *got, GError **error)
{
  *got = 0;
  if (s->gz == NULL)
    {
      gsize n = MIN (len, s->in_len - s->in_pos);
      memcpy (dst, s->in + s->in_pos, n);
      s->in_pos += n;
      *got = n;
      return TRUE;
    }
  while (*got < len && !s->finished)
    {
      gsize r = 0, w = 0;
      g_autoptr (GError) local = NULL;
      GConverterResult res;

      res = g_converter_convert (s->gz, s->in + s->in_pos, s->in_len - s->in_pos,
                                 dst + *got, len - *got, G_CONVERTER_INPUT_AT_END, &r, &w, &local);
      if (res == G_CONVERTER_ERROR)
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT))
            return cleave_invalid_file (error, s->path, "gzip stream is truncated");
          return cleave_invalid_file (error, s->path, "gzip data is corrupt: %s", local->message);
        }
      s->in_pos += r;
      *got += w;
      if (res == G_CONVERTER_FINISHED)
        s->finished = TRUE;
      else if (r == 0 && w == 0)
        return cleave_invalid_file (error, s->path, "gzip stream is truncated");
    }
  return TRUE;
}

/* TRUE when the payload read so far is all there is: for gzip, the stream
 * ends there, its trailer checks out and no bytes follow it. */
static gboolean
source_at_end (Source *s, guint n_items, GError **error)
{
  guint8 b;
  gsize got = 0;

  if (s->gz != NULL && !source_read (s, &b, 1, &got, error))
    return FALSE;
  if (got > 0 || (s->gz == NULL && s->in_pos != s->in_len))
    return cleave_invalid_file (error, s->path, "data continues past the %u items the header declares", n_items);
  if (s->in_pos != s->in_len)
    return cleave_invalid_file (error, s->path, "%" G_GSIZE_FORMAT " bytes follow the end of the gzip stream",
                                s->in_len - s->in_pos);
  return TRUE;
}

/* Reads an IDX file of unsigned bytes with @want_dims dimensions; returns
 * the payload (g_free) and fills @dims. */
static guint8 *
read_idx (const char *path, int want_dims, guint32 *dims, GError **error)
{
  g_autofree char *raw = NULL;
  g_autoptr (GError) local = NULL;
  gsize raw_len, got, total = 1;
  guint8 head[4 + 4 * 3];
  guint32 magic;
  guint8 *payload;
  Source s = { path, NULL, 0, 0, NULL, FALSE };
  guint8 *result = NULL;

  if (!g_file_get_contents (path, &raw, &raw_len, &local))
    {
      set_io_error (error, local);
      return NULL;
    }
  s.in = (const guint8 *) raw;
  s.in_len = raw_len;
  if (raw_len >= 2 && s.in[0] == 0x1f && s.in[1] == 0x8b)
    s.gz = G_CONVERTER (g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP));

  if (!source_read (&s, head, 4, &got, error))
    goto out;
  if (got < 4)
    {
      cleave_invalid_file (error, path, "magic: file too short (%" G_GSIZE_FORMAT " bytes)", got);
      goto out;
    }
  magic = ((guint32) head[0] << 24) | ((guint32) head[1] << 16) | ((guint32) head[2] << 8) | head[3];
  if (magic != (0x0800u | (guint32) want_dims))
    {
      cleave_invalid_file (error, path, "magic 0x%08x, expected 0x%08x (unsigned-byte %s, %d dimension%s)",
               magic, 0x0800u | want_dims, want_dims == 1 ? "labels" : "images", want_dims,
               want_dims == 1 ? "" : "s");
      goto out;
    }
  if (!source_read (&s, head + 4, 4 * want_dims, &got, error))
    goto out;
  if (got < (gsize) 4 * want_dims)
    {
      cleave_invalid_file (error, path, "dimensions: file truncated in the header");
      goto out;
    }
  for (int i = 0; i < want_dims; i++)
    {
      const guint8 *p = head + 4 + 4 * i;
      dims[i] = ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
      if (i > 0 && (dims[i] == 0 || dims[i] > MAX_SIDE))
        {
          cleave_invalid_file (error, path, "dimension %d is %u (expected 1..%d)", i, dims[i], MAX_SIDE);
          goto out;
        }
      total *= dims[i];
    }
  if (dims[0] == 0 || dims[0] > G_MAXINT)
    {
      cleave_invalid_file (error, path, "item count %u is out of range", dims[0]);
      goto out;
    }
  /* Bound the allocation by what the file can hold: exactly for raw files,
   * by deflate's maximum ratio (about 1032:1) for gzip. */
  if (s.gz == NULL && total != raw_len - s.in_pos)
    {
      cleave_invalid_file (error, path, "header says %u items (%" G_GSIZE_FORMAT " bytes of data) but the file holds %"
               G_GSIZE_FORMAT " bytes%s", dims[0], total, raw_len - s.in_pos,
               total > raw_len - s.in_pos ? " (truncated)" : "");
      goto out;
    }
  if (s.gz != NULL && total / 1032 > raw_len)
    {
      cleave_invalid_file (error, path, "header says %u items (%" G_GSIZE_FORMAT " bytes), more than %" G_GSIZE_FORMAT
               " compressed bytes can hold", dims[0], total, raw_len);
      goto out;
    }
  payload = g_try_malloc (MAX (total, 1));
  if (payload == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "%s: cannot allocate %" G_GSIZE_FORMAT " bytes", path, total);
      goto out;
    }
  if (!source_read (&s, payload, total, &got, error))
    {
      g_free (payload);
      goto out;
    }
  if (got != total)
    {
      cleave_invalid_file (error, path, "header says %u items (%" G_GSIZE_FORMAT " bytes of data) but the file holds %"
               G_GSIZE_FORMAT " (truncated)", dims[0], total, got);
      g_free (payload);
      goto out;
    }
  if (!source_at_end (&s, dims[0], error))
    {
      g_free (payload);
      goto out;
    }
  result = payload;

out:
  g_clear_object (&s.gz);
  return result;
}

CleaveDataset *
cleave_dataset_load_idx (const char *images_path, const char *labels_path, GError **error)
{
  guint32 idims[3], ldims[1];
  g_autofree guint8 *img = NULL;
  g_autofree guint8 *lab = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *name = NULL;
  CleaveDataset *ds;
  int maxl = 0;

  img = read_idx (images_path, 3, idims, error);
  if (img == NULL)
    return NULL;
  lab = read_idx (labels_path, 1, ldims, error);
  if (lab == NULL)
    return NULL;
  if (ldims[0] != idims[0])
    {
      cleave_invalid_file (error, labels_path, "label count %u does not match the %u images in %s",
               ldims[0], idims[0], images_path);
      return NULL;
    }
  for (guint32 i = 0; i < ldims[0]; i++)
    maxl = MAX (maxl, lab[i]);

  dir = g_path_get_dirname (images_path);
  name = g_path_get_basename (dir);
  ds = g_new0 (CleaveDataset, 1);
  ds->name = g_steal_pointer (&name);
  ds->source = g_steal_pointer (&dir);
  ds->n = idims[0];
  ds->c = 1;
  ds->h = idims[1];
  ds->w = idims[2];
  ds->pixels = g_steal_pointer (&img);
  ds->labels = g_steal_pointer (&lab);
  ds->n_classes = maxl + 1;
  ds->class_names = names_numeric (ds->n_classes);
  return ds;
}

/* Finds "<prefix>-images-idx3-ubyte[.gz]" style files in @dir; also accepts
 * the "train-images.idx3-ubyte" spelling some copies use. */
static gboolean
find_idx_pair (const char *dir, CleaveSplit split, char **images, char **labels)
{
  const char *prefix = split == CLEAVE_SPLIT_TRAIN ? "train" : "t10k";
  static const char *const img_fmt[] = { "%s-images-idx3-ubyte.gz", "%s-images-idx3-ubyte", "%s-images.idx3-ubyte.gz", "%s-images.idx3-ubyte" };
  static const char *const lab_fmt[] = { "%s-labels-idx1-ubyte.gz", "%s-labels-idx1-ubyte", "%s-labels.idx1-ubyte.gz", "%s-labels.idx1-ubyte" };

  *images = *labels = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (img_fmt) && *images == NULL; i++)
    {
      g_autofree char *base = g_strdup_printf (img_fmt[i], prefix);
      char *p = g_build_filename (dir, base, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        *images = p;
      else
        g_free (p);
    }
  for (guint i = 0; i < G_N_ELEMENTS (lab_fmt) && *labels == NULL; i++)
    {
      g_autofree char *base = g_strdup_printf (lab_fmt[i], prefix);
      char *p = g_build_filename (dir, base, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        *labels = p;
      else
        g_free (p);
    }
  if (*images && *labels)
    return TRUE;
  g_clear_pointer (images, g_free);
  g_clear_pointer (labels, g_free);
  return FALSE;
}

static gboolean
has_idx_files (const char *dir)
{
  char *a, *b;

  if (find_idx_pair (dir, CLEAVE_SPLIT_TRAIN, &a, &b) || find_idx_pair (dir, CLEAVE_SPLIT_TEST, &a, &b))
    {
      g_free (a);
      g_free (b);
      return TRUE;
    }
  return FALSE;
}

/* ---------------------------------------------------------------- CIFAR-10 binary */

static char **
read_meta_names (const char *dir)
{
  g_autofree char *path = g_build_filename (dir, "batches.meta.txt", NULL);
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;
  GPtrArray *names;

  if (!g_file_get_contents (path, &text, NULL, NULL) || !g_utf8_validate (text, -1, NULL))
    return NULL;
  lines = g_strsplit (text, "\n", -1);
  names = g_ptr_array_new ();
  for (int i = 0; lines[i]; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l)
        g_ptr_array_add (names, g_strdup (l));
    }
  if (names->len != 10)
    {
      g_ptr_array_set_free_func (names, g_free);
      g_ptr_array_free (names, TRUE);
      return NULL;
    }
  g_ptr_array_add (names, NULL);
  return (char **) g_ptr_array_free (names, FALSE);
}

CleaveDataset *
cleave_dataset_load_cifar_bin (const char *const *files, GError **error)
{
  gsize total = 0;
  int nfiles = 0;
  CleaveDataset *ds;
  gsize pos = 0;
  g_autofree char *dir = NULL;

  g_return_val_if_fail (files != NULL, NULL);
  for (; files[nfiles]; nfiles++)
    {
      GStatBuf st;

      if (g_stat (files[nfiles], &st) != 0)
        {
          int e = errno;
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: %s", files[nfiles], g_strerror (e));
          return NULL;
        }
      if (st.st_size <= 0 || st.st_size % CIFAR_RECORD != 0)
        {
          cleave_invalid_file (error, files[nfiles], "size %" G_GINT64_FORMAT " is not a positive multiple of the %d-byte "
                   "CIFAR-10 record (1 label byte + 3×32×32 pixels)", (gint64) st.st_size, CIFAR_RECORD);
          return NULL;
        }
      total += st.st_size / CIFAR_RECORD;
    }
  if (nfiles == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "no CIFAR-10 batch files given");
      return NULL;
    }
  if (total > G_MAXINT)
    {
      cleave_invalid_file (error, files[0], "%" G_GSIZE_FORMAT " records in all, too many", total);
      return NULL;
    }

  dir = g_path_get_dirname (files[0]);
  ds = dataset_alloc ("cifar10", dir, (int) total, 3, 32, 32, error);
  if (ds == NULL)
    return NULL;
  for (int f = 0; f < nfiles; f++)
    {
      g_autofree char *buf = NULL;
      g_autoptr (GError) local = NULL;
      gsize len;

      if (!g_file_get_contents (files[f], &buf, &len, &local))
        {
          set_io_error (error, local);
          cleave_dataset_free (ds);
          return NULL;
        }
      /* The file may have changed since the stat; never write past the buffer. */
      if (len % CIFAR_RECORD != 0 || pos + len / CIFAR_RECORD > total)
        {
          cleave_invalid_file (error, files[f], "size changed while reading");
          cleave_dataset_free (ds);
          return NULL;
        }
      for (gsize r = 0; r < len / CIFAR_RECORD; r++, pos++)
        {
          const guint8 *rec = (const guint8 *) buf + r * CIFAR_RECORD;
          if (rec[0] >= 10)
            {
              cleave_invalid_file (error, files[f], "record %" G_GSIZE_FORMAT ": label %u is not below 10", r, rec[0]);
              cleave_dataset_free (ds);
              return NULL;
            }
          ds->labels[pos] = rec[0];
          memcpy (ds->pixels + pos * (CIFAR_RECORD - 1), rec + 1, CIFAR_RECORD - 1);
        }
    }
  if (pos != total)
    {
      cleave_invalid_file (error, files[nfiles - 1], "size changed while reading");
      cleave_dataset_free (ds);
      return NULL;
    }
  ds->n_classes = 10;
  ds->class_names = read_meta_names (dir);
  if (ds->class_names == NULL)
    ds->class_names = names_copy (cifar10_names);
  return ds;
}

/* Batch files of @split in @dir (NULL when there are none). */
static char **
find_cifar_bins (const char *dir, CleaveSplit split)
{
  GPtrArray *v = g_ptr_array_new ();

  if (split == CLEAVE_SPLIT_TRAIN)
    for (int i = 1; i <= 5; i++)
      {
        g_autofree char *b = g_strdup_printf ("data_batch_%d.bin", i);
        char *p = g_build_filename (dir, b, NULL);
        if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
          g_ptr_array_add (v, p);
        else
          g_free (p);
      }
  else
    {
      char *p = g_build_filename (dir, "test_batch.bin", NULL);
      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (v, p);
      else
        g_free (p);
    }
  if (v->len == 0)
    {
      g_ptr_array_free (v, TRUE);
      return NULL;
    }
  g_ptr_array_add (v, NULL);
  return (char **) g_ptr_array_free (v, FALSE);
}

static gboolean
has_cifar_bins (const char *dir)
{
  g_auto (GStrv) a = find_cifar_bins (dir, CLEAVE_SPLIT_TRAIN);
  g_auto (GStrv) b = find_cifar_bins (dir, CLEAVE_SPLIT_TEST);
  return a != NULL || b != NULL;
}

/* ---------------------------------------------------------------- ImageFolder */

static gboolean
is_image_name (const char *n)
{
  g_autofree char *lower = g_ascii_strdown (n, -1);

  return g_str_has_suffix (lower, ".png") || g_str_has_suffix (lower, ".jpg") || g_str_has_suffix (lower, ".jpeg");
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* Sorted entry names in @dir: subdirectories when @dirs, else image files. */
static GPtrArray *
list_sorted (const char *dir, gboolean dirs, GError **error)
{
  g_autoptr (GError) local = NULL;
  GDir *d = g_dir_open (dir, 0, &local);
  GPtrArray *v;
  const char *n;

  if (d == NULL)
    {
      if (error)
        set_io_error (error, local);
      return NULL;
    }
  v = g_ptr_array_new_with_free_func (g_free);
  while ((n = g_dir_read_name (d)))
    {
      g_autofree char *p = NULL;

      if (n[0] == '.')
        continue;
      if (!dirs && !is_image_name (n))
        continue;
      p = g_build_filename (dir, n, NULL);
      if (dirs ? g_file_test (p, G_FILE_TEST_IS_DIR) : g_file_test (p, G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (v, g_strdup (n));
    }
  g_dir_close (d);
  g_ptr_array_sort (v, cmp_str);
  return v;
}

typedef struct {
  GPtrArray *paths;
  CleaveDataset *ds;
  const char *first_path;
  GCancellable *cancellable;
  GMutex lock;
  GError *error;              /* first failure, under lock */
  gint failed;                /* atomic: stop early */
  gint colour;                /* atomic: some image has r != g or g != b */
  int chunk;
} DecodeJob;

/* Reads an image's declared size from its header, without decoding it. Only
 * PNG and JPEG content is accepted: gdk-pixbuf reads their headers
 * incrementally, while other loaders may decode the whole file to report a size. */
static gboolean
image_header (const char *path, int *w, int *h, GError **error)
{
  static const guint8 png[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
  guint8 magic[8] = { 0 };
  FILE *f = g_fopen (path, "rb");
  gsize got;

  if (f == NULL)
    return cleave_invalid_file (error, path, "cannot open: %s", g_strerror (errno));
  got = fread (magic, 1, sizeof magic, f);
  fclose (f);
  if (!(got == 8 && memcmp (magic, png, 8) == 0) && !(got >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff))
    return cleave_invalid_file (error, path, "cannot decode image: not a PNG or JPEG file");
  if (gdk_pixbuf_get_file_info (path, w, h) == NULL || *w < 1 || *h < 1)
    return cleave_invalid_file (error, path, "cannot decode image: unreadable header");
  return TRUE;
}

static gboolean
decode_one (DecodeJob *job, int i, gboolean *colour, GError **error)
{
  const char *path = job->paths->pdata[i];
  CleaveDataset *ds = job->ds;
  g_autoptr (GError) local = NULL;
  g_autoptr (GdkPixbuf) pb = NULL;
  const guint8 *src;
  int stride, nch, hw = ds->h * ds->w, w, h;
  guint8 *dst = ds->pixels + (gsize) i * 3 * hw;

  if (!image_header (path, &w, &h, error))
    return FALSE;
  if (w != ds->w || h != ds->h)
    return cleave_invalid_file (error, path, "image is %d×%d; expected %d×%d like %s",
                                w, h, ds->w, ds->h, job->first_path);
  pb = gdk_pixbuf_new_from_file (path, &local);
  if (pb == NULL)
    return cleave_invalid_file (error, path, "cannot decode image: %s", local->message);
  if (gdk_pixbuf_get_width (pb) != ds->w || gdk_pixbuf_get_height (pb) != ds->h
      || gdk_pixbuf_get_bits_per_sample (pb) != 8 || gdk_pixbuf_get_n_channels (pb) < 3)
    return cleave_invalid_file (error, path, "image is %d×%d with %d channels of %d bits; expected %d×%d RGB like %s",
                    gdk_pixbuf_get_width (pb), gdk_pixbuf_get_height (pb), gdk_pixbuf_get_n_channels (pb),
                    gdk_pixbuf_get_bits_per_sample (pb), ds->w, ds->h, job->first_path);
  src = gdk_pixbuf_read_pixels (pb);
  stride = gdk_pixbuf_get_rowstride (pb);
  nch = gdk_pixbuf_get_n_channels (pb);
  for (int y = 0; y < ds->h; y++)
    {
      const guint8 *row = src + (gsize) y * stride;
      for (int x = 0; x < ds->w; x++)
        {
          const guint8 *p = row + x * nch;
          int o = y * ds->w + x;
          dst[o] = p[0];
          dst[hw + o] = p[1];
          dst[2 * hw + o] = p[2];
          if (p[0] != p[1] || p[1] != p[2])
            *colour = TRUE;
        }
    }
  return TRUE;
}

static void
decode_chunk (gpointer data, gpointer user_data)
{
  DecodeJob *job = user_data;
  int start = (GPOINTER_TO_INT (data) - 1) * job->chunk;
  int end = MIN (start + job->chunk, job->ds->n);
  gboolean colour = FALSE;

  for (int i = start; i < end; i++)
    {
      GError *err = NULL;

      if (g_atomic_int_get (&job->failed))
        return;
      if (g_cancellable_is_cancelled (job->cancellable))
        {
          g_atomic_int_set (&job->failed, 1);
          return;
        }
      if (!decode_one (job, i, &colour, &err))
        {
          g_mutex_lock (&job->lock);
          if (job->error == NULL)
            job->error = err;
          else
            g_error_free (err);
          g_mutex_unlock (&job->lock);
          g_atomic_int_set (&job->failed, 1);
          return;
        }
    }
  if (colour)
    g_atomic_int_set (&job->colour, 1);
}

/* Drops the two redundant planes when every image is grey (R = G = B), so a
 * folder of greyscale PNGs loads as c = 1 like the IDX version. */
static void
collapse_grey (CleaveDataset *ds)
{
  gsize hw = (gsize) ds->h * ds->w;

  for (int i = 0; i < ds->n; i++)
    memmove (ds->pixels + i * hw, ds->pixels + (gsize) i * 3 * hw, hw);
  ds->c = 1;
  ds->pixels = g_realloc (ds->pixels, MAX ((gsize) ds->n * hw, 1));
}

CleaveDataset *
cleave_dataset_load_image_folder (const char *root, GCancellable *cancellable, GError **error)
{
  g_autoptr (GPtrArray) classes = NULL;
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) labels = g_array_new (FALSE, FALSE, 1);
  g_autoptr (GError) local = NULL;
  g_autofree char *name = NULL;
  CleaveDataset *ds;
  DecodeJob job = { 0 };
  GThreadPool *pool;
  int nchunks, nthreads, w, h;

  classes = list_sorted (root, TRUE, error);
  if (classes == NULL)
    return NULL;
  if (classes->len == 0)
    {
      cleave_invalid_file (error, root, "no class folders (expected root/<class>/*.png|jpg)");
      return NULL;
    }
  if (classes->len > 256)
    {
      cleave_invalid_file (error, root, "%u class folders; at most 256 are supported", classes->len);
      return NULL;
    }
  for (guint c = 0; c < classes->len; c++)
    {
      g_autofree char *cdir = g_build_filename (root, classes->pdata[c], NULL);
      g_autoptr (GPtrArray) files = list_sorted (cdir, FALSE, error);
      guint8 lab = c;

      if (files == NULL)
        return NULL;
      if (files->len == 0)
        {
          cleave_invalid_file (error, cdir, "class folder has no images (*.png, *.jpg, *.jpeg)");
          return NULL;
        }
      for (guint i = 0; i < files->len; i++)
        {
          g_ptr_array_add (paths, g_build_filename (cdir, files->pdata[i], NULL));
          g_array_append_val (labels, lab);
        }
    }
  if (paths->len > G_MAXINT / 2)
    {
      cleave_invalid_file (error, root, "too many images (%u)", paths->len);
      return NULL;
    }

  if (!image_header (paths->pdata[0], &w, &h, error))
    return NULL;
  if (w > MAX_SIDE || h > MAX_SIDE)
    {
      cleave_invalid_file (error, paths->pdata[0], "image is %d×%d, larger than %d pixels a side", w, h, MAX_SIDE);
      return NULL;
    }

  name = g_path_get_basename (root);
  ds = dataset_alloc (name, root, paths->len, 3, h, w, error);
  if (ds == NULL)
    return NULL;
  memcpy (ds->labels, labels->data, ds->n);
  ds->n_classes = classes->len;
  ds->class_names = g_new0 (char *, classes->len + 1);
  for (guint c = 0; c < classes->len; c++)
    ds->class_names[c] = g_strdup (classes->pdata[c]);

  /* Small chunks keep both cores busy to the end and let a cancel land fast. */
  job.paths = paths;
  job.ds = ds;
  job.first_path = paths->pdata[0];
  job.cancellable = cancellable;
  job.chunk = 256;
  g_mutex_init (&job.lock);
  nchunks = (ds->n + job.chunk - 1) / job.chunk;
  nthreads = CLAMP ((int) g_get_num_processors (), 1, 64);
  pool = g_thread_pool_new (decode_chunk, &job, MIN (nthreads, nchunks), FALSE, NULL);
  for (int k = 0; k < nchunks; k++)
    g_thread_pool_push (pool, GINT_TO_POINTER (k + 1), NULL);
  g_thread_pool_free (pool, FALSE, TRUE);
  g_mutex_clear (&job.lock);

  if (job.error || g_cancellable_is_cancelled (cancellable))
    {
      if (job.error)
        g_propagate_error (error, job.error);
      else
        g_cancellable_set_error_if_cancelled (cancellable, error);
      cleave_dataset_free (ds);
      return NULL;
    }
  if (!job.colour)
    collapse_grey (ds);
  return ds;
}

/* ---------------------------------------------------------------- named datasets */

static const char *const dataset_names[CLEAVE_N_DATASET_NAMES + 1] = { "fashion-mnist", "mnist", "cifar10", NULL };

const char *const *
cleave_dataset_names (void)
{
  return dataset_names;
}

const char *const *
cleave_dataset_default_dirs (void)
{
  static char **dirs;

  if (g_once_init_enter (&dirs))
    {
      const char *const *sys = g_get_system_data_dirs ();
      GPtrArray *a = g_ptr_array_new ();
      g_ptr_array_add (a, g_build_filename (g_get_user_data_dir (), "cleave", "datasets", NULL));
      for (int i = 0; sys[i]; i++)
        g_ptr_array_add (a, g_build_filename (sys[i], "datasets", NULL));
      g_ptr_array_add (a, NULL);
      g_once_init_leave (&dirs, (char **) g_ptr_array_free (a, FALSE));
    }
  return (const char *const *) dirs;
}

/* The first of @dirs holding @sub, as a new path; NULL when none does. */
static char *
find_data_dir (const char *const *dirs, const char *sub)
{
  for (int i = 0; dirs && dirs[i]; i++)
    {
      char *p = g_build_filename (dirs[i], sub, NULL);
      if (g_file_test (p, G_FILE_TEST_EXISTS))
        return p;
      g_free (p);
    }
  return NULL;
}

/* "@sub: not found in A/@sub, B/@sub" (+ @hint). */
static void
set_not_found (const char *const *dirs, const char *sub, const char *hint, GError **error)
{
  GString *s = g_string_new (NULL);

  for (int i = 0; dirs && dirs[i]; i++)
    {
      g_autofree char *p = g_build_filename (dirs[i], sub, NULL);
      g_string_append_printf (s, "%s%s", i ? ", " : "", p);
    }
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: not found (looked in %s)%s", sub,
               s->len ? s->str : "no data directory", hint ? hint : "");
  g_string_free (s, TRUE);
}

static CleaveDataset *
load_idx_dir (const char *dir, CleaveSplit split, GError **error)
{
  g_autofree char *images = NULL;
  g_autofree char *labels = NULL;

  if (!find_idx_pair (dir, split, &images, &labels))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: no %s IDX files (%s-images-idx3-ubyte[.gz] and %s-labels-idx1-ubyte[.gz])",
                   dir, split == CLEAVE_SPLIT_TRAIN ? "training" : "test",
                   split == CLEAVE_SPLIT_TRAIN ? "train" : "t10k", split == CLEAVE_SPLIT_TRAIN ? "train" : "t10k");
      return NULL;
    }
  return cleave_dataset_load_idx (images, labels, error);
}

/* Turns a generic IDX dataset into one of the two ten-class digit/clothes sets. */
static CleaveDataset *
finish_mnist_like (CleaveDataset *ds, const char *name, gboolean digits, GError **error)
{
  if (ds == NULL)
    return NULL;
  if (ds->n_classes > 10 || ds->h != 28 || ds->w != 28)
    {
      cleave_invalid_file (error, ds->source, "%s must have 28×28 images and labels below 10 (found %d×%d, largest label %d)",
               name, ds->h, ds->w, ds->n_classes - 1);
      cleave_dataset_free (ds);
      return NULL;
    }
  g_free (ds->name);
  ds->name = g_strdup (name);
  g_strfreev (ds->class_names);
  ds->n_classes = 10;
  ds->class_names = digits ? names_numeric (10) : names_copy (fashion_names);
  ds->digits = digits;
  return ds;
}

static gboolean
rm_rf (const char *path)
{
  GDir *d;
  const char *n;

  if (!g_file_test (path, G_FILE_TEST_IS_SYMLINK) && g_file_test (path, G_FILE_TEST_IS_DIR)
      && (d = g_dir_open (path, 0, NULL)) != NULL)
    {
      while ((n = g_dir_read_name (d)))
        {
          g_autofree char *p = g_build_filename (path, n, NULL);
          rm_rf (p);
        }
      g_dir_close (d);
      return g_rmdir (path) == 0;
    }
  return g_remove (path) == 0;
}

/* Runs tar to unpack @member of @tarball into @dir; FALSE with tar's
 * message in @err_text when tar fails. */
static gboolean
run_tar (const char *tarball, const char *dir, const char *member, char **err_text,
         GCancellable *cancellable, GError **error)
{
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GError) local = NULL;

  proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &local,
                           "tar", "-xzf", tarball, "-C", dir, member, NULL);
  if (proc == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "cannot run tar: %s", local->message);
      return FALSE;
    }
  if (!g_subprocess_communicate_utf8 (proc, NULL, cancellable, NULL, err_text, &local))
    {
      g_subprocess_force_exit (proc);
      g_subprocess_wait (proc, NULL, NULL);
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  return g_subprocess_get_if_exited (proc) && g_subprocess_get_exit_status (proc) == 0;
}

/* Unpacks one split of the CIFAR-10 JPEG tarball (cifar10/<split>/<class>/
 * *.jpg) into @dest/<split>. tar writes into a fresh temporary folder beside
 * @dest that is renamed into place only when tar succeeded, so an
 * interrupted extraction never leaves a half-filled split. Only the split
 * asked for is unpacked: the test split alone is 10 000 files, not 60 000. */
static gboolean
extract_cifar10 (const char *tarball, const char *dest, const char *split_name,
                 GCancellable *cancellable, GError **error)
{
  g_autofree char *parent = g_path_get_dirname (dest);
  g_autofree char *tmpl = g_build_filename (parent, ".cifar10-extract-XXXXXX", NULL);
  g_autofree char *member = g_build_filename ("cifar10", split_name, NULL);
  g_autofree char *inner = NULL;
  g_autofree char *final = g_build_filename (dest, split_name, NULL);
  g_autofree char *err_text = NULL;
  g_autoptr (GError) local = NULL;
  gboolean ok = FALSE;

  if (g_mkdir_with_parents (dest, 0755) != 0 || g_mkdtemp (tmpl) == NULL)
    {
      int e = errno;
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: cannot create cache folder: %s", dest, g_strerror (e));
      return FALSE;
    }
  if (!run_tar (tarball, tmpl, member, &err_text, cancellable, &local))
    {
      g_autofree char *err2 = NULL;

      if (local)
        {
          g_propagate_error (error, g_steal_pointer (&local));
          goto out;
        }
      /* An archive without the wrapping cifar10/ folder. */
      if (!run_tar (tarball, tmpl, split_name, &err2, cancellable, error))
        {
          if (error == NULL || *error == NULL)
            cleave_invalid_file (error, tarball, "tar failed to unpack %s: %s", member,
                     err_text ? g_strstrip (err_text) : "unknown error");
          goto out;
        }
      inner = g_build_filename (tmpl, split_name, NULL);
    }
  else
    inner = g_build_filename (tmpl, member, NULL);
  if (!g_file_test (inner, G_FILE_TEST_IS_DIR))
    {
      cleave_invalid_file (error, tarball, "archive has no %s folder", member);
      goto out;
    }
  if (g_rename (inner, final) != 0)
    {
      int e = errno;
      /* Another process may have finished the same extraction first. */
      if (!g_file_test (final, G_FILE_TEST_IS_DIR))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: cannot move extracted data into place: %s", final, g_strerror (e));
          goto out;
        }
    }
  ok = TRUE;

out:
  rm_rf (tmpl);
  return ok;
}

/* The decoded pixels of the cached CIFAR-10 copy, in CIFAR-10 binary format,
 * so later loads skip 50 000 JPEG decodes. */
static char *
decoded_cache_path (const char *cache_root, CleaveSplit split)
{
  return g_build_filename (cache_root, "cifar10-decoded", split == CLEAVE_SPLIT_TRAIN ? "train.bin" : "test.bin", NULL);
}

/* What the decoded cache must match, kept beside it (PATH.check): the
 * source's stamp, the record count and the SHA-256 of the cache itself. */
static char *
decoded_cache_check (const char *stamp, const guint8 *data, gsize len)
{
  g_autofree char *sum = g_compute_checksum_for_data (G_CHECKSUM_SHA256, data, len);
  return g_strdup_printf ("source %srecords %" G_GSIZE_FORMAT "\nsha256 %s\n", stamp ? stamp : "none\n",
                          len / CIFAR_RECORD, sum);
}

/* The decoded cache when it is exactly what @stamp's source gave; NULL (and
 * the stale files removed) otherwise. */
static CleaveDataset *
read_decoded_cache (const char *path, const char *stamp)
{
  g_autofree char *check_path = g_strconcat (path, ".check", NULL);
  g_autofree char *want = NULL, *data = NULL, *got = NULL;
  gsize len = 0;
  CleaveDataset *ds = NULL;

  if (g_file_get_contents (check_path, &want, NULL, NULL) && g_file_get_contents (path, &data, &len, NULL) &&
      len % CIFAR_RECORD == 0 && (got = decoded_cache_check (stamp, (const guint8 *) data, len)) &&
      strcmp (got, want) == 0)
    {
      const char *files[] = { path, NULL };
      ds = cleave_dataset_load_cifar_bin (files, NULL);
    }
  if (ds == NULL)
    {
      g_remove (path);
      g_remove (check_path);
    }
  return ds;
}

static void
write_decoded_cache (const CleaveDataset *ds, const char *cache_root, CleaveSplit split, const char *stamp)
{
  g_autofree char *path = decoded_cache_path (cache_root, split);
  g_autofree char *check_path = g_strconcat (path, ".check", NULL);
  g_autofree char *check = NULL;
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *meta = g_build_filename (dir, "batches.meta.txt", NULL);
  g_autofree char *names = NULL;
  gsize len = (gsize) ds->n * CIFAR_RECORD;
  guint8 *buf;

  if (ds->c != 3 || ds->h != 32 || ds->w != 32 || ds->n_classes != 10 || g_mkdir_with_parents (dir, 0755) != 0)
    return;
  buf = g_try_malloc (len);
  if (buf == NULL)
    return;
  for (int i = 0; i < ds->n; i++)
    {
      buf[(gsize) i * CIFAR_RECORD] = ds->labels[i];
      memcpy (buf + (gsize) i * CIFAR_RECORD + 1, ds->pixels + (gsize) i * 3072, 3072);
    }
  names = g_strjoinv ("\n", ds->class_names);
  check = decoded_cache_check (stamp, buf, len);
  /* The cache is an optimisation: failing to write it is not an error. */
  if (g_file_set_contents (meta, names, -1, NULL) && g_file_set_contents (path, (const char *) buf, len, NULL))
    g_file_set_contents (check_path, check, -1, NULL);
  g_free (buf);
}

/* The source tarball's identity: size, mtime and a SHA-256 of its first and
 * last MiB (a content hash that stays cheap for a 160 MB file). */
static char *
source_stamp (const char *path)
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree guint8 *buf = g_malloc (1 << 20);
  GStatBuf st;
  FILE *f;

  if (g_stat (path, &st) != 0 || (f = g_fopen (path, "rb")) == NULL)
    return NULL;
  for (int part = 0; part < 2; part++)
    {
      gsize got;
      if (part == 1 && fseeko (f, MAX ((gint64) st.st_size - (1 << 20), 0), SEEK_SET) != 0)
        break;
      got = fread (buf, 1, 1 << 20, f);
      g_checksum_update (sum, buf, got);
    }
  fclose (f);
  return g_strdup_printf ("%" G_GINT64_FORMAT " %" G_GINT64_FORMAT " %s\n", (gint64) st.st_size, (gint64) st.st_mtime,
                          g_checksum_get_string (sum));
}

static CleaveDataset *
load_cifar10 (const char *const *dirs, CleaveSplit split, GCancellable *cancellable, GError **error)
{
  g_autofree char *data_dir = find_data_dir (dirs, "cifar10");
  g_autofree char *cache_root = g_build_filename (g_get_user_cache_dir (), "cleave", "datasets", NULL);
  g_autofree char *dest = g_build_filename (cache_root, "cifar10", NULL);
  g_autofree char *split_dir = g_build_filename (dest, split == CLEAVE_SPLIT_TRAIN ? "train" : "test", NULL);
  g_autofree char *decoded = decoded_cache_path (cache_root, split);
  g_autofree char *tarball = data_dir ? g_build_filename (data_dir, "cifar10-jpg.tar.gz", NULL) : NULL;
  g_autofree char *stamp_path = g_build_filename (cache_root, "cifar10-source.txt", NULL);
  g_autofree char *dec_dir = g_path_get_dirname (decoded);
  g_autofree char *stamp = tarball ? source_stamp (tarball) : NULL;
  g_autofree char *old_stamp = NULL;
  CleaveDataset *ds;

  /* The caches remember the tarball they came from (size and mtime, not
   * its path, which differs with the working directory); another tarball
   * replaces them. */
  if (stamp && (g_file_test (dest, G_FILE_TEST_EXISTS) || g_file_test (dec_dir, G_FILE_TEST_EXISTS))
      && (!g_file_get_contents (stamp_path, &old_stamp, NULL, NULL) || strcmp (old_stamp, stamp) != 0))
    {
      rm_rf (dec_dir);
      rm_rf (dest);
    }

  if (g_file_test (decoded, G_FILE_TEST_IS_REGULAR) && (ds = read_decoded_cache (decoded, stamp)) != NULL)
    {
      g_free (ds->name);
      ds->name = g_strdup ("cifar10");
      g_free (ds->source);
      ds->source = g_strdup (split_dir);
      return ds;
    }

  if (!g_file_test (split_dir, G_FILE_TEST_IS_DIR))
    {
      if (tarball == NULL || !g_file_test (tarball, G_FILE_TEST_IS_REGULAR))
        {
          set_not_found (dirs, "cifar10/cifar10-jpg.tar.gz", "; pass the path of a CIFAR-10 folder instead", error);
          return NULL;
        }
      if (!extract_cifar10 (tarball, dest, split == CLEAVE_SPLIT_TRAIN ? "train" : "test", cancellable, error))
        return NULL;
      g_file_set_contents (stamp_path, stamp, -1, NULL);
    }
  ds = cleave_dataset_load_image_folder (split_dir, cancellable, error);
  if (ds == NULL)
    return NULL;
  g_free (ds->name);
  ds->name = g_strdup ("cifar10");
  write_decoded_cache (ds, cache_root, split, stamp);
  return ds;
}

static CleaveDataset *
load_path (const char *path, CleaveSplit split, GCancellable *cancellable, GError **error)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *bins = g_build_filename (path, "cifar-10-batches-bin", NULL);
  const char *split_name = split == CLEAVE_SPLIT_TRAIN ? "train" : "test";
  g_autofree char *split_dir = g_build_filename (path, split_name, NULL);
  g_autofree char *other_dir = g_build_filename (path, split == CLEAVE_SPLIT_TRAIN ? "test" : "train", NULL);
  CleaveDataset *ds;

  if (!g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: not a dataset name (fashion-mnist, mnist, cifar10) "
                   "or a folder", path);
      return NULL;
    }

  if (has_idx_files (path))
    {
      ds = load_idx_dir (path, split, error);
      if (g_strcmp0 (base, "fashion-mnist") == 0)
        return finish_mnist_like (ds, "fashion-mnist", FALSE, error);
      if (g_strcmp0 (base, "mnist") == 0)
        return finish_mnist_like (ds, "mnist", TRUE, error);
      return ds;
    }

  if (!has_cifar_bins (path) && has_cifar_bins (bins))
    return load_path (bins, split, cancellable, error);
  if (has_cifar_bins (path))
    {
      g_auto (GStrv) files = find_cifar_bins (path, split);
      if (files == NULL)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: no %s batch files (%s)", path, split_name,
                       split == CLEAVE_SPLIT_TRAIN ? "data_batch_1.bin … data_batch_5.bin" : "test_batch.bin");
          return NULL;
        }
      return cleave_dataset_load_cifar_bin ((const char *const *) files, error);
    }

  if (g_file_test (split_dir, G_FILE_TEST_IS_DIR))
    ds = cleave_dataset_load_image_folder (split_dir, cancellable, error);
  else if (g_file_test (other_dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: has no %s/ folder", path, split_name);
      return NULL;
    }
  else
    {
      /* One wrapping folder around train/ and test/, as an unpacked archive has. */
      g_autoptr (GPtrArray) subs = list_sorted (path, TRUE, NULL);
      if (subs && subs->len == 1)
        {
          g_autofree char *inner = g_build_filename (path, subs->pdata[0], NULL);
          g_autofree char *inner_split = g_build_filename (inner, split_name, NULL);
          if (g_file_test (inner_split, G_FILE_TEST_IS_DIR))
            return load_path (inner, split, cancellable, error);
        }
      ds = cleave_dataset_load_image_folder (path, cancellable, error);
    }
  if (ds)
    {
      g_free (ds->name);
      ds->name = g_strdup (base);
      g_free (ds->source);
      ds->source = g_strdup (path);
    }
  return ds;
}

CleaveDataset *
cleave_dataset_load (const char *spec, CleaveSplit split, GCancellable *cancellable, GError **error)
{
  return cleave_dataset_load_from (spec, NULL, split, cancellable, error);
}

CleaveDataset *
cleave_dataset_load_from (const char *spec, const char *const *data_dirs, CleaveSplit split,
                          GCancellable *cancellable, GError **error)
{
  g_return_val_if_fail (spec != NULL, NULL);

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  if (data_dirs == NULL)
    data_dirs = cleave_dataset_default_dirs ();

  if (strcmp (spec, "fashion-mnist") == 0 || strcmp (spec, "mnist") == 0)
    {
      gboolean digits = strcmp (spec, "mnist") == 0;
      g_autofree char *dir = find_data_dir (data_dirs, spec);

      if (dir == NULL)
        {
          set_not_found (data_dirs, spec, digits ? NULL : " (install the Debian package dataset-fashion-mnist)",
                         error);
          return NULL;
        }
      return finish_mnist_like (load_idx_dir (dir, split, error), spec, digits, error);
    }
  if (strcmp (spec, "cifar10") == 0)
    return load_cifar10 (data_dirs, split, cancellable, error);
  /* Any other bare name that is not a path here: a folder in a data directory. */
  if (strchr (spec, G_DIR_SEPARATOR) == NULL && !g_file_test (spec, G_FILE_TEST_EXISTS))
    {
      g_autofree char *dir = find_data_dir (data_dirs, spec);
      if (dir)
        return load_path (dir, split, cancellable, error);
    }
  return load_path (spec, split, cancellable, error);
}

/* ---------------------------------------------------------------- derived datasets */

static CleaveDataset *
dataset_like (const CleaveDataset *ds, int n)
{
  CleaveDataset *out = g_new0 (CleaveDataset, 1);

  out->name = g_strdup (ds->name);
  out->source = g_strdup (ds->source);
  out->n = n;
  out->c = ds->c;
  out->h = ds->h;
  out->w = ds->w;
  out->pixels = g_malloc (MAX ((gsize) n * image_size (ds), 1));
  out->labels = g_malloc (MAX (n, 1));
  out->n_classes = ds->n_classes;
  out->class_names = g_strdupv (ds->class_names);
  out->digits = ds->digits;
  return out;
}

CleaveDataset *
cleave_dataset_subset (const CleaveDataset *ds, const int *indices, int n)
{
  gsize sz = image_size (ds);
  CleaveDataset *out;

  g_return_val_if_fail (ds != NULL && n >= 0 && (n == 0 || indices != NULL), NULL);
  for (int i = 0; i < n; i++)
    g_return_val_if_fail (indices[i] >= 0 && indices[i] < ds->n, NULL);
  out = dataset_like (ds, n);
  for (int i = 0; i < n; i++)
    {
      memcpy (out->pixels + i * sz, ds->pixels + (gsize) indices[i] * sz, sz);
      out->labels[i] = ds->labels[indices[i]];
    }
  return out;
}

CleaveDataset *
cleave_dataset_select_classes (const CleaveDataset *ds, const int *classes, int n_classes, GError **error)
{
  int map[256];
  int count = 0, k = 0;
  g_autofree int *idx = NULL;
  CleaveDataset *out;

  g_return_val_if_fail (ds != NULL, NULL);
  if (n_classes <= 0 || n_classes > ds->n_classes)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s: cannot select %d of %d classes",
                   ds->name, n_classes, ds->n_classes);
      return NULL;
    }
  for (int c = 0; c < 256; c++)
    map[c] = -1;
  for (int i = 0; i < n_classes; i++)
    {
      if (classes[i] < 0 || classes[i] >= ds->n_classes || map[classes[i]] >= 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s: class %d is %s",
                       ds->name, classes[i], classes[i] < 0 || classes[i] >= ds->n_classes ? "out of range" : "listed twice");
          return NULL;
        }
      map[classes[i]] = i;
    }
  for (int i = 0; i < ds->n; i++)
    count += map[ds->labels[i]] >= 0;
  idx = g_new (int, MAX (count, 1));
  for (int i = 0; i < ds->n; i++)
    if (map[ds->labels[i]] >= 0)
      idx[k++] = i;
  out = cleave_dataset_subset (ds, idx, count);
  for (int i = 0; i < count; i++)
    out->labels[i] = map[out->labels[i]];
  g_strfreev (out->class_names);
  out->class_names = g_new0 (char *, n_classes + 1);
  for (int i = 0; i < n_classes; i++)
    out->class_names[i] = g_strdup (ds->class_names && ds->class_names[classes[i]] ? ds->class_names[classes[i]] : "?");
  out->n_classes = n_classes;
  return out;
}

CleaveDataset *
cleave_dataset_concat (CleaveDataset **parts, int n_parts, GError **error)
{
  int n = 0, classes = 0, off = 0, ci = 0;
  gsize sz, pos = 0;
  CleaveDataset *out;
  g_autoptr (GString) name = g_string_new (NULL);
  g_autoptr (GString) source = g_string_new (NULL);

  if (n_parts <= 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "nothing to concatenate");
      return NULL;
    }
  for (int p = 0; p < n_parts; p++)
    {
      const CleaveDataset *d = parts[p];
      if (d->c != parts[0]->c || d->h != parts[0]->h || d->w != parts[0]->w)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "cannot concatenate %s (%d×%d×%d) with %s (%d×%d×%d): image shapes differ",
                       parts[0]->name, parts[0]->c, parts[0]->h, parts[0]->w, d->name, d->c, d->h, d->w);
          return NULL;
        }
      n += d->n;
      classes += d->n_classes;
      g_string_append_printf (name, "%s%s", p ? "+" : "", d->name);
      g_string_append_printf (source, "%s%s", p ? ";" : "", d->source ? d->source : "");
    }
  if (classes > 256)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "concatenation would have %d classes (at most 256)", classes);
      return NULL;
    }
  out = dataset_alloc (name->str, source->str, n, parts[0]->c, parts[0]->h, parts[0]->w, error);
  if (out == NULL)
    return NULL;
  sz = image_size (out);
  out->n_classes = classes;
  out->class_names = g_new0 (char *, classes + 1);
  for (int p = 0; p < n_parts; p++)
    {
      const CleaveDataset *d = parts[p];
      memcpy (out->pixels + pos * sz, d->pixels, (gsize) d->n * sz);
      for (int i = 0; i < d->n; i++)
        out->labels[pos + i] = d->labels[i] + off;
      for (int c = 0; c < d->n_classes; c++)
        out->class_names[ci++] = g_strdup (d->class_names && d->class_names[c] ? d->class_names[c] : "?");
      out->digits |= d->digits;
      pos += d->n;
      off += d->n_classes;
    }
  return out;
}

/* ---------------------------------------------------------------- sampling */

/* SplitMix64: a small generator whose output is fixed by its definition, so
 * splits stay identical across GLib versions and platforms. */
static guint64
mix_next (guint64 *s)
{
  guint64 z = (*s += G_GUINT64_CONSTANT (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static double
mix_uniform (guint64 *s)
{
  return (mix_next (s) >> 11) * (1.0 / 9007199254740992.0);   /* [0, 1) */
}

static guint64
mix_below (guint64 *s, guint64 n)
{
  return (guint64) (mix_uniform (s) * n);
}

static void
mix_shuffle (int *v, int n, guint64 *s)
{
  for (int i = n - 1; i > 0; i--)
    {
      int j = (int) mix_below (s, (guint64) i + 1);
      int t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
}

static int
cmp_int (gconstpointer a, gconstpointer b)
{
  int x = *(const int *) a, y = *(const int *) b;
  return (x > y) - (x < y);
}

/* Indices of @pool (or of all images) grouped by class, each group ascending. */
static GArray **
group_by_class (const CleaveDataset *ds, const int *pool, int n_pool)
{
  GArray **g = g_new0 (GArray *, MAX (ds->n_classes, 1));
  int n = pool ? n_pool : ds->n;

  for (int c = 0; c < ds->n_classes; c++)
    g[c] = g_array_new (FALSE, FALSE, sizeof (int));
  for (int i = 0; i < n; i++)
    {
      int idx = pool ? pool[i] : i;
      int lab;
      if (idx < 0 || idx >= ds->n)
        continue;
      lab = ds->labels[idx];
      if (lab < ds->n_classes)
        g_array_append_val (g[lab], idx);
    }
  for (int c = 0; c < ds->n_classes; c++)
    g_array_sort (g[c], cmp_int);
  return g;
}

static void
free_groups (GArray **g, int n)
{
  for (int c = 0; c < n; c++)
    g_array_unref (g[c]);
  g_free (g);
}

gboolean
cleave_dataset_validate_split (double val_fraction, GError **error)
{
  return cleave_check_option (error, "val", val_fraction, 0, TRUE, 1, TRUE);
}

gboolean
cleave_dataset_validate_subset (double alpha, int min_per_class, int total, GError **error)
{
  return cleave_check_option (error, "dirichlet", alpha, 0, TRUE, 1e6, FALSE) &&
         cleave_check_option (error, "min-per-class", min_per_class, 0, FALSE, G_MAXINT, FALSE) &&
         cleave_check_option (error, "max-train", total, 0, FALSE, G_MAXINT, FALSE);
}

void
cleave_dataset_split (const CleaveDataset *ds, double val_fraction, guint64 seed,
                      int **train_idx, int *n_train, int **val_idx, int *n_val)
{
  GArray **g;
  GArray *tr, *va;

  g_return_if_fail (ds != NULL && train_idx && n_train && val_idx && n_val);
  if (!(val_fraction > 0))
    val_fraction = 0;
  if (val_fraction > 1)
    val_fraction = 1;

  g = group_by_class (ds, NULL, 0);
  tr = g_array_new (FALSE, FALSE, sizeof (int));
  va = g_array_new (FALSE, FALSE, sizeof (int));
  for (int c = 0; c < ds->n_classes; c++)
    {
      /* Each class draws from its own stream, so the split of one class does
       * not depend on how many images the others have. */
      guint64 s = seed ^ (G_GUINT64_CONSTANT (0xd1b54a32d192ed03) * (guint64) (c + 1));
      int cnt = g[c]->len;
      int nv = (int) floor (cnt * val_fraction + 0.5);

      mix_shuffle ((int *) g[c]->data, cnt, &s);
      g_array_append_vals (va, g[c]->data, nv);
      g_array_append_vals (tr, (int *) g[c]->data + nv, cnt - nv);
    }
  free_groups (g, ds->n_classes);
  g_array_sort (tr, cmp_int);
  g_array_sort (va, cmp_int);
  *n_train = tr->len;
  *n_val = va->len;
  *train_idx = (int *) g_array_free (tr, FALSE);
  *val_idx = (int *) g_array_free (va, FALSE);
}

static double
mix_normal (guint64 *s)
{
  double u1 = 1.0 - mix_uniform (s);   /* (0, 1] */
  double u2 = mix_uniform (s);
  return sqrt (-2.0 * log (u1)) * cos (2.0 * G_PI * u2);
}

/* Gamma(alpha, 1) by Marsaglia and Tsang; alpha < 1 via the boost
 * Gamma(alpha) = Gamma(alpha + 1) · U^(1/alpha). */
static double
mix_gamma (double alpha, guint64 *s)
{
  double boost = 1.0, d, c;

  if (alpha < 1.0)
    {
      boost = pow (1.0 - mix_uniform (s), 1.0 / alpha);
      alpha += 1.0;
    }
  d = alpha - 1.0 / 3.0;
  c = 1.0 / sqrt (9.0 * d);
  for (;;)
    {
      double x = mix_normal (s), v = 1.0 + c * x, u;
      if (v <= 0)
        continue;
      v = v * v * v;
      u = 1.0 - mix_uniform (s);
      if (log (u) < 0.5 * x * x + d - d * v + d * log (v))
        return boost * d * v;
    }
}

int *
cleave_dataset_dirichlet_subset (const CleaveDataset *ds, const int *pool, int n_pool, double alpha,
                                 int min_per_class, int total, guint64 seed, int *n_out)
{
  int K = ds->n_classes;
  GArray **g = group_by_class (ds, pool, n_pool);
  g_autofree double *p = g_new0 (double, MAX (K, 1));
  g_autofree int *take = g_new0 (int, MAX (K, 1));
  g_autofree double *share = g_new0 (double, MAX (K, 1));
  guint64 s = seed;
  double psum = 0;
  int used = 0, remaining;
  GArray *out;

  g_return_val_if_fail (n_out != NULL, NULL);
  if (!(alpha > 0))
    alpha = 1.0;
  min_per_class = MAX (min_per_class, 0);

  for (int c = 0; c < K; c++)
    {
      p[c] = mix_gamma (alpha, &s);
      psum += p[c];
    }
  for (int c = 0; c < K; c++)
    p[c] = psum > 0 ? p[c] / psum : 1.0 / K;

  /* The per-class minimum comes first (it wins over @total when both cannot
   * hold); the rest of the budget follows the drawn proportions. */
  for (int c = 0; c < K; c++)
    {
      take[c] = MIN (min_per_class, (int) g[c]->len);
      used += take[c];
    }
  remaining = MAX (total - used, 0);
  while (remaining > 0)
    {
      double open_p = 0;
      int given = 0;

      for (int c = 0; c < K; c++)
        if (take[c] < (int) g[c]->len)
          open_p += p[c];
      if (open_p <= 0)
        break;
      /* Largest-remainder apportionment among classes that still have images. */
      for (int c = 0; c < K; c++)
        {
          share[c] = take[c] < (int) g[c]->len ? remaining * p[c] / open_p : 0;
          int whole = MIN ((int) floor (share[c]), (int) g[c]->len - take[c]);
          take[c] += whole;
          given += whole;
          share[c] -= floor (share[c]);
        }
      while (given < remaining)
        {
          int best = -1;
          for (int c = 0; c < K; c++)
            if (take[c] < (int) g[c]->len && share[c] >= 0 && (best < 0 || share[c] > share[best]))
              best = c;
          if (best < 0)
            break;
          take[best]++;
          share[best] = -1;
          given++;
        }
      if (given == 0)
        break;
      remaining -= given;
    }

  out = g_array_new (FALSE, FALSE, sizeof (int));
  for (int c = 0; c < K; c++)
    {
      guint64 cs = seed ^ (G_GUINT64_CONSTANT (0xa0761d6478bd642f) * (guint64) (c + 1));
      mix_shuffle ((int *) g[c]->data, g[c]->len, &cs);
      g_array_append_vals (out, g[c]->data, take[c]);
    }
  free_groups (g, K);
  g_array_sort (out, cmp_int);
  *n_out = out->len;
  return (int *) g_array_free (out, FALSE);
}

/* ---------------------------------------------------------------- batches */

void
cleave_dataset_compute_norm (const CleaveDataset *ds, const int *indices, int n, float *mean, float *std)
{
  gsize hw = (gsize) ds->h * ds->w;

  if (indices == NULL)
    n = ds->n;
  for (int c = 0; c < ds->c; c++)
    {
      guint64 sum = 0, sq = 0;
      double cnt = (double) n * hw, m, var;

      for (int i = 0; i < n; i++)
        {
          int idx = indices ? indices[i] : i;
          const guint8 *p = ds->pixels + ((gsize) idx * ds->c + c) * hw;
          guint64 s1 = 0, s2 = 0;
          for (gsize k = 0; k < hw; k++)
            {
              s1 += p[k];
              s2 += (guint64) p[k] * p[k];
            }
          sum += s1;
          sq += s2;
        }
      if (cnt <= 0)
        {
          mean[c] = 0;
          std[c] = 1;
          continue;
        }
      m = sum / cnt / 255.0;
      var = sq / cnt / (255.0 * 255.0) - m * m;
      mean[c] = (float) m;
      /* A constant channel would divide by zero when normalising. */
      std[c] = var > 1e-12 ? (float) sqrt (var) : 1.0f;
    }
}

void
cleave_dataset_fill_batch (const CleaveDataset *ds, const int *indices, int count,
                           const float *mean, const float *std, const CleaveAugment *aug,
                           GRand *rng, float *x, float *y)
{
  int C = ds->c, H = ds->h, W = ds->w;
  gsize hw = (gsize) H * W;
  float scale[64], shift[64];
  gboolean crop = aug && aug->crop && aug->pad > 0;
  /* Mirrored digits are different symbols: never flip them. */
  gboolean flip = aug && aug->flip && !ds->digits;
  int pad = crop ? aug->pad : 0;

  g_return_if_fail (C <= 64);
  g_return_if_fail (!(crop || flip) || rng != NULL);
  for (int c = 0; c < C; c++)
    {
      float sd = std ? std[c] : 1.0f;
      float mu = mean ? mean[c] : 0.0f;
      scale[c] = 1.0f / (255.0f * sd);
      shift[c] = -mu / sd;
    }

  for (int b = 0; b < count; b++)
    {
      int idx = indices ? indices[b] : b;
      const guint8 *img = ds->pixels + (gsize) idx * C * hw;
      float *dst = x + (gsize) b * C * hw;
      int dx = 0, dy = 0;
      gboolean mirror = FALSE;

      g_return_if_fail (idx >= 0 && idx < ds->n);
      if (y)
        y[b] = ds->labels[idx];
      if (crop)
        {
          dy = g_rand_int_range (rng, -pad, pad + 1);
          dx = g_rand_int_range (rng, -pad, pad + 1);
        }
      if (flip)
        mirror = g_rand_boolean (rng);

      if (!crop && !mirror)
        {
          for (int c = 0; c < C; c++)
            for (gsize k = 0; k < hw; k++)
              dst[c * hw + k] = img[c * hw + k] * scale[c] + shift[c];
          continue;
        }
      /* Output (r, q) reads source (r + dy, q' + dx) with q' the possibly
       * mirrored column; outside the image is a zero pixel, as torchvision's
       * RandomCrop pads before normalising. */
      for (int c = 0; c < C; c++)
        for (int r = 0; r < H; r++)
          {
            int sr = r + dy;
            float *drow = dst + c * hw + (gsize) r * W;
            for (int q = 0; q < W; q++)
              {
                int sq = (mirror ? W - 1 - q : q) + dx;
                guint8 v = (sr >= 0 && sr < H && sq >= 0 && sq < W) ? img[c * hw + (gsize) sr * W + sq] : 0;
                drow[q] = v * scale[c] + shift[c];
              }
          }
    }
}

void
cleave_shuffle_indices (int *idx, int n, GRand *rng)
{
  for (int i = n - 1; i > 0; i--)
    {
      int j = g_rand_int_range (rng, 0, i + 1);
      int t = idx[i];
      idx[i] = idx[j];
      idx[j] = t;
    }
}
