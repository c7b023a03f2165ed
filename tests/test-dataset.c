/* test-dataset.c: IDX, CIFAR-10 binary and ImageFolder readers on files the
 * test writes itself, the index utilities, and the real datasets when present. */
#include <glib.h>
#include <glib/gstdio.h>
#include <gio/gio.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <string.h>
#include <math.h>

#include "cleave-dataset.h"
#include "cleave-error.h"

/* ---------------------------------------------------------------- helpers */

static void
rm_rf (const char *path)
{
  GDir *d;
  const char *n;

  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK)
      && (d = g_dir_open (path, 0, NULL)))
    {
      while ((n = g_dir_read_name (d)))
        {
          g_autofree char *p = g_build_filename (path, n, NULL);
          rm_rf (p);
        }
      g_dir_close (d);
      g_rmdir (path);
    }
  else
    g_remove (path);
}

static GBytes *
gzip_bytes (const guint8 *data, gsize len)
{
  g_autoptr (GZlibCompressor) z = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
  gsize cap = len + len / 2 + 1024, in_pos = 0, out_pos = 0;
  guint8 *out = g_malloc (cap);

  for (;;)
    {
      gsize r, w;
      GConverterResult res = g_converter_convert (G_CONVERTER (z), data + in_pos, len - in_pos, out + out_pos,
                                                  cap - out_pos, G_CONVERTER_INPUT_AT_END, &r, &w, NULL);
      g_assert_cmpint (res, !=, G_CONVERTER_ERROR);
      in_pos += r;
      out_pos += w;
      if (res == G_CONVERTER_FINISHED)
        break;
    }
  return g_bytes_new_take (out, out_pos);
}

static void
put_be32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* Writes an IDX images file (magic 0x803) and a labels file (0x801). */
static void
write_idx_pair (const char *dir, const char *prefix, int n, int h, int w, gboolean gz,
                guint8 **pixels_out, guint8 **labels_out)
{
  gsize ilen = 16 + (gsize) n * h * w, llen = 8 + n;
  guint8 *img = g_malloc (ilen), *lab = g_malloc (llen);
  g_autofree char *ipath = g_strdup_printf ("%s/%s-images-idx3-ubyte%s", dir, prefix, gz ? ".gz" : "");
  g_autofree char *lpath = g_strdup_printf ("%s/%s-labels-idx1-ubyte%s", dir, prefix, gz ? ".gz" : "");

  put_be32 (img, 0x803);
  put_be32 (img + 4, n);
  put_be32 (img + 8, h);
  put_be32 (img + 12, w);
  for (gsize i = 16; i < ilen; i++)
    img[i] = (guint8) (i * 37 + 11);
  put_be32 (lab, 0x801);
  put_be32 (lab + 4, n);
  for (int i = 0; i < n; i++)
    lab[8 + i] = (guint8) ((i * 7) % 10);
  if (gz)
    {
      g_autoptr (GBytes) a = gzip_bytes (img, ilen);
      g_autoptr (GBytes) b = gzip_bytes (lab, llen);
      g_assert_true (g_file_set_contents (ipath, g_bytes_get_data (a, NULL), g_bytes_get_size (a), NULL));
      g_assert_true (g_file_set_contents (lpath, g_bytes_get_data (b, NULL), g_bytes_get_size (b), NULL));
    }
  else
    {
      g_assert_true (g_file_set_contents (ipath, (char *) img, ilen, NULL));
      g_assert_true (g_file_set_contents (lpath, (char *) lab, llen, NULL));
    }
  if (pixels_out)
    *pixels_out = g_memdup2 (img + 16, ilen - 16);
  if (labels_out)
    *labels_out = g_memdup2 (lab + 8, n);
  g_free (img);
  g_free (lab);
}

static void
assert_invalid_names (GError *error, const char *file_part)
{
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  if (strstr (error->message, file_part) == NULL)
    g_error ("message \"%s\" does not name %s", error->message, file_part);
  if (g_test_verbose ())
    g_test_message ("%s", error->message);
}

/* An in-memory dataset with @counts[c] images of class c, pixel values a
 * deterministic function of image, channel and position. */
static CleaveDataset *
make_synthetic (int n_classes, const int *counts, int c, int h, int w)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  int n = 0, k = 0;

  for (int i = 0; i < n_classes; i++)
    n += counts[i];
  ds->name = g_strdup ("synthetic");
  ds->source = g_strdup ("memory");
  ds->n = n;
  ds->c = c;
  ds->h = h;
  ds->w = w;
  ds->pixels = g_malloc ((gsize) n * c * h * w);
  ds->labels = g_malloc (n);
  ds->n_classes = n_classes;
  ds->class_names = g_new0 (char *, n_classes + 1);
  for (int i = 0; i < n_classes; i++)
    ds->class_names[i] = g_strdup_printf ("class%d", i);
  /* Interleave classes so grouping code cannot rely on contiguous labels. */
  for (int round = 0; k < n; round++)
    for (int cl = 0; cl < n_classes; cl++)
      if (round < counts[cl])
        ds->labels[k++] = cl;
  for (gsize i = 0; i < (gsize) n * c * h * w; i++)
    ds->pixels[i] = (guint8) ((i * 2654435761u) >> 7);
  return ds;
}

/* ---------------------------------------------------------------- IDX */

static void
test_idx_read (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  g_autofree char *sub_raw = g_build_filename (dir, "raw", NULL);
  g_autofree char *sub_gz = g_build_filename (dir, "gz", NULL);
  g_autoptr (GError) error = NULL;

  g_mkdir (sub_raw, 0755);
  g_mkdir (sub_gz, 0755);
  for (int gz = 0; gz < 2; gz++)
    {
      const char *sub = gz ? sub_gz : sub_raw;
      g_autofree guint8 *px = NULL, *lb = NULL, *tpx = NULL, *tlb = NULL;
      g_autofree char *ip = g_strdup_printf ("%s/train-images-idx3-ubyte%s", sub, gz ? ".gz" : "");
      g_autofree char *lp = g_strdup_printf ("%s/train-labels-idx1-ubyte%s", sub, gz ? ".gz" : "");

      write_idx_pair (sub, "train", 53, 5, 7, gz, &px, &lb);
      write_idx_pair (sub, "t10k", 11, 5, 7, gz, &tpx, &tlb);

      g_autoptr (CleaveDataset) ds = cleave_dataset_load_idx (ip, lp, &error);
      g_assert_no_error (error);
      g_assert_cmpint (ds->n, ==, 53);
      g_assert_cmpint (ds->c, ==, 1);
      g_assert_cmpint (ds->h, ==, 5);
      g_assert_cmpint (ds->w, ==, 7);
      g_assert_cmpint (ds->n_classes, ==, 10);
      g_assert_cmpstr (ds->class_names[9], ==, "9");
      g_assert_null (ds->class_names[10]);
      g_assert_cmpmem (ds->pixels, 53 * 35, px, 53 * 35);
      g_assert_cmpmem (ds->labels, 53, lb, 53);

      /* Through the folder detection, both splits. */
      g_autoptr (CleaveDataset) tr = cleave_dataset_load (sub, CLEAVE_SPLIT_TRAIN, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (tr->n, ==, 53);
      g_assert_cmpstr (tr->name, ==, gz ? "gz" : "raw");
      g_autoptr (CleaveDataset) te = cleave_dataset_load (sub, CLEAVE_SPLIT_TEST, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (te->n, ==, 11);
      g_assert_cmpmem (te->pixels, 11 * 35, tpx, 11 * 35);
      g_assert_cmpmem (te->labels, 11, tlb, 11);
    }
  rm_rf (dir);
}

static void
check_idx_error (const char *images, const char *labels, const char *names)
{
  g_autoptr (GError) error = NULL;
  CleaveDataset *ds = cleave_dataset_load_idx (images, labels, &error);

  g_assert_null (ds);
  assert_invalid_names (error, names);
}

static void
test_idx_errors (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  g_autofree char *ip = NULL, *lp = NULL, *ipz = NULL, *lpz = NULL, *t = NULL;
  g_autofree char *raw = NULL;
  gsize len;

  write_idx_pair (dir, "train", 20, 4, 4, FALSE, NULL, NULL);
  write_idx_pair (dir, "t10k", 19, 4, 4, FALSE, NULL, NULL);
  write_idx_pair (dir, "gz", 20, 4, 4, TRUE, NULL, NULL);
  ip = g_build_filename (dir, "train-images-idx3-ubyte", NULL);
  lp = g_build_filename (dir, "train-labels-idx1-ubyte", NULL);
  ipz = g_build_filename (dir, "gz-images-idx3-ubyte.gz", NULL);
  lpz = g_build_filename (dir, "gz-labels-idx1-ubyte.gz", NULL);

  /* Swapped files: wrong magic in each. */
  check_idx_error (lp, ip, "train-labels-idx1-ubyte: magic 0x00000801, expected 0x00000803");
  {
    g_autofree char *t10k_lab = g_build_filename (dir, "t10k-labels-idx1-ubyte", NULL);
    /* Counts disagree: 20 images, 19 labels. */
    check_idx_error (ip, t10k_lab, "t10k-labels-idx1-ubyte: label count 19 does not match the 20 images");
  }

  /* Truncated raw file. */
  g_assert_true (g_file_get_contents (ip, &raw, &len, NULL));
  t = g_build_filename (dir, "cut-images-idx3-ubyte", NULL);
  g_assert_true (g_file_set_contents (t, raw, len - 5, NULL));
  check_idx_error (t, lp, "cut-images-idx3-ubyte: header says 20 items");
  /* Cut inside the header. */
  g_assert_true (g_file_set_contents (t, raw, 10, NULL));
  check_idx_error (t, lp, "cut-images-idx3-ubyte: dimensions");
  g_assert_true (g_file_set_contents (t, raw, 2, NULL));
  check_idx_error (t, lp, "cut-images-idx3-ubyte: magic");
  /* Extra bytes are as wrong as missing ones. */
  {
    g_autofree char *longer = g_malloc (len + 3);
    memcpy (longer, raw, len);
    memset (longer + len, 0, 3);
    g_assert_true (g_file_set_contents (t, longer, len + 3, NULL));
    check_idx_error (t, lp, "cut-images-idx3-ubyte: header says 20 items");
  }
  /* A zero height and an absurd count. */
  {
    g_autofree char *m = g_memdup2 (raw, len);
    put_be32 ((guint8 *) m + 8, 0);
    g_assert_true (g_file_set_contents (t, m, len, NULL));
    check_idx_error (t, lp, "cut-images-idx3-ubyte: dimension 1 is 0");
    memcpy (m, raw, len);
    put_be32 ((guint8 *) m + 4, 0x7fffffff);
    g_assert_true (g_file_set_contents (t, m, len, NULL));
    check_idx_error (t, lp, "cut-images-idx3-ubyte: header says 2147483647 items");
  }

  /* Truncated gzip stream. */
  g_clear_pointer (&raw, g_free);
  g_assert_true (g_file_get_contents (ipz, &raw, &len, NULL));
  g_clear_pointer (&t, g_free);
  t = g_build_filename (dir, "cut-images-idx3-ubyte.gz", NULL);
  g_assert_true (g_file_set_contents (t, raw, len / 2, NULL));
  check_idx_error (t, lpz, "cut-images-idx3-ubyte.gz");
  /* Corrupt gzip payload. */
  {
    g_autofree char *m = g_memdup2 (raw, len);
    for (gsize i = 12; i < len - 8; i++)
      m[i] ^= 0x5a;
    g_assert_true (g_file_set_contents (t, m, len, NULL));
    check_idx_error (t, lpz, "cut-images-idx3-ubyte.gz");
  }
  /* Gzip whose header claims far more than it can decompress to. */
  {
    guint8 head[16];
    put_be32 (head, 0x803);
    put_be32 (head + 4, 1000000);
    put_be32 (head + 8, 28);
    put_be32 (head + 12, 28);
    g_autoptr (GBytes) z = gzip_bytes (head, 16);
    g_assert_true (g_file_set_contents (t, g_bytes_get_data (z, NULL), g_bytes_get_size (z), NULL));
    check_idx_error (t, lpz, "cut-images-idx3-ubyte.gz: header says 1000000 items");
  }

  /* Missing file: an I/O error. */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *nope = g_build_filename (dir, "nope", NULL);
    g_assert_null (cleave_dataset_load_idx (nope, lp, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
  }
  rm_rf (dir);
}

/* Bytes after the end of a gzip stream, or a gzip trailer whose checksum
 * does not match, are refused, not ignored. */
static void
test_idx_gzip_trailing (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  g_autofree char *ipz = g_build_filename (dir, "gz-images-idx3-ubyte.gz", NULL);
  g_autofree char *lpz = g_build_filename (dir, "gz-labels-idx1-ubyte.gz", NULL);
  g_autofree char *t = g_build_filename (dir, "odd-images-idx3-ubyte.gz", NULL);
  g_autofree char *raw = NULL;
  gsize len;

  write_idx_pair (dir, "gz", 20, 4, 4, TRUE, NULL, NULL);
  g_assert_true (g_file_get_contents (ipz, &raw, &len, NULL));
  {
    g_autofree char *m = g_malloc (len + 7);
    memcpy (m, raw, len);
    memcpy (m + len, "garbage", 7);
    g_assert_true (g_file_set_contents (t, m, len + 7, NULL));
    check_idx_error (t, lpz, "odd-images-idx3-ubyte.gz: 7 bytes follow the end of the gzip stream");
  }
  {
    g_autofree char *m = g_memdup2 (raw, len);
    m[len - 6] ^= 0x01;   /* the CRC-32 in the trailer */
    g_assert_true (g_file_set_contents (t, m, len, NULL));
    check_idx_error (t, lpz, "odd-images-idx3-ubyte.gz: gzip");
  }
  rm_rf (dir);
}

/* ---------------------------------------------------------------- CIFAR-10 binary */

static void
write_cifar_bin (const char *path, const CleaveDataset *ds, int start, int n)
{
  gsize len = (gsize) n * 3073;
  guint8 *buf = g_malloc (len);

  g_assert_cmpint (ds->c * ds->h * ds->w, ==, 3072);
  for (int i = 0; i < n; i++)
    {
      buf[(gsize) i * 3073] = ds->labels[start + i];
      memcpy (buf + (gsize) i * 3073 + 1, ds->pixels + (gsize) (start + i) * 3072, 3072);
    }
  g_assert_true (g_file_set_contents (path, (char *) buf, len, NULL));
  g_free (buf);
}

static void
test_cifar_bin (void)
{
  g_autofree char *root = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  g_autofree char *dir = g_build_filename (root, "cifar-10-batches-bin", NULL);
  int counts[10] = { 4, 4, 4, 4, 4, 4, 4, 4, 3, 2 };
  g_autoptr (CleaveDataset) src = make_synthetic (10, counts, 3, 32, 32);
  g_autoptr (GError) error = NULL;
  g_autofree char *b1 = g_build_filename (dir, "data_batch_1.bin", NULL);
  g_autofree char *b2 = g_build_filename (dir, "data_batch_2.bin", NULL);
  g_autofree char *tb = g_build_filename (dir, "test_batch.bin", NULL);
  g_autofree char *meta = g_build_filename (dir, "batches.meta.txt", NULL);

  g_mkdir (dir, 0755);
  write_cifar_bin (b1, src, 0, 20);
  write_cifar_bin (b2, src, 20, 10);
  write_cifar_bin (tb, src, 30, 7);

  /* Found through the wrapping folder, with the standard names by default. */
  {
    g_autoptr (CleaveDataset) tr = cleave_dataset_load (root, CLEAVE_SPLIT_TRAIN, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (tr->n, ==, 30);
    g_assert_cmpint (tr->c, ==, 3);
    g_assert_cmpint (tr->h, ==, 32);
    g_assert_cmpint (tr->n_classes, ==, 10);
    g_assert_cmpstr (tr->class_names[0], ==, "airplane");
    g_assert_cmpstr (tr->class_names[9], ==, "truck");
    g_assert_false (tr->digits);
    g_assert_cmpmem (tr->pixels, 30 * 3072, src->pixels, 30 * 3072);
    g_assert_cmpmem (tr->labels, 30, src->labels, 30);
  }
  g_assert_true (g_file_set_contents (meta, "a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n", -1, NULL));
  {
    g_autoptr (CleaveDataset) te = cleave_dataset_load (dir, CLEAVE_SPLIT_TEST, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (te->n, ==, 7);
    g_assert_cmpstr (te->class_names[3], ==, "a3");
    g_assert_cmpmem (te->pixels, 7 * 3072, src->pixels + 30 * 3072, 7 * 3072);
  }

  /* Broken files. */
  {
    g_autofree char *buf = NULL;
    gsize len;
    g_autofree char *bad = g_build_filename (root, "bad_batch.bin", NULL);
    const char *files[] = { bad, NULL };

    g_assert_true (g_file_get_contents (b1, &buf, &len, NULL));
    g_assert_true (g_file_set_contents (bad, buf, len - 100, NULL));
    g_assert_null (cleave_dataset_load_cifar_bin (files, &error));
    assert_invalid_names (error, "bad_batch.bin: size");
    g_clear_error (&error);

    buf[3073 * 5] = 10;
    g_assert_true (g_file_set_contents (bad, buf, len, NULL));
    g_assert_null (cleave_dataset_load_cifar_bin (files, &error));
    assert_invalid_names (error, "bad_batch.bin: record 5: label 10");
    g_clear_error (&error);
  }
  rm_rf (root);
}

/* ---------------------------------------------------------------- ImageFolder */

static void
save_png (const char *path, int w, int h, int seed, gboolean grey)
{
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, w, h);
  guint8 *px = gdk_pixbuf_get_pixels (pb);
  int stride = gdk_pixbuf_get_rowstride (pb);

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guint8 *p = px + y * stride + x * 3;
        p[0] = (guint8) (seed * 31 + y * 7 + x);
        p[1] = grey ? p[0] : (guint8) (seed * 17 + x * 5);
        p[2] = grey ? p[0] : (guint8) (seed + y * x);
      }
  g_assert_true (gdk_pixbuf_save (pb, path, "png", NULL, NULL));
}

/* Expected CHW value of pixel (x, y) channel c written by save_png. */
static guint8
png_value (int seed, int c, int y, int x, gboolean grey)
{
  guint8 r = (guint8) (seed * 31 + y * 7 + x);
  if (grey || c == 0)
    return r;
  return c == 1 ? (guint8) (seed * 17 + x * 5) : (guint8) (seed + y * x);
}

static char *
make_folder (const char *root, const char *split, const char *const *classes, const int *counts,
             int w, int h, gboolean grey)
{
  char *base = split ? g_build_filename (root, split, NULL) : g_strdup (root);

  for (int c = 0; classes[c]; c++)
    {
      g_autofree char *cdir = g_build_filename (base, classes[c], NULL);
      g_assert_cmpint (g_mkdir_with_parents (cdir, 0755), ==, 0);
      for (int i = 0; i < counts[c]; i++)
        {
          g_autofree char *n = g_strdup_printf ("%04d.png", i);
          g_autofree char *p = g_build_filename (cdir, n, NULL);
          save_png (p, w, h, c * 100 + i, grey);
        }
    }
  return base;
}

static void
test_image_folder (void)
{
  g_autofree char *root = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  const char *const classes[] = { "dog", "cat", "bird", NULL };   /* sorted: bird, cat, dog */
  const int counts[] = { 3, 5, 300 };
  const int tcounts[] = { 1, 2, 2 };
  g_autofree char *tr_dir = make_folder (root, "train", classes, counts, 6, 5, FALSE);
  g_autofree char *te_dir = make_folder (root, "test", classes, tcounts, 6, 5, FALSE);
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveDataset) tr = cleave_dataset_load (root, CLEAVE_SPLIT_TRAIN, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpint (tr->n, ==, 308);
  g_assert_cmpint (tr->c, ==, 3);
  g_assert_cmpint (tr->h, ==, 5);
  g_assert_cmpint (tr->w, ==, 6);
  g_assert_cmpint (tr->n_classes, ==, 3);
  g_assert_cmpstr (tr->class_names[0], ==, "bird");
  g_assert_cmpstr (tr->class_names[1], ==, "cat");
  g_assert_cmpstr (tr->class_names[2], ==, "dog");
  {
    g_autofree char *base = g_path_get_basename (root);
    g_assert_cmpstr (tr->name, ==, base);
  }
  /* Images in class order, files sorted by name. */
  g_assert_cmpint (tr->labels[0], ==, 0);
  g_assert_cmpint (tr->labels[299], ==, 0);
  g_assert_cmpint (tr->labels[300], ==, 1);
  g_assert_cmpint (tr->labels[305], ==, 2);
  for (int i = 0; i < tr->n; i++)
    {
      /* bird has source index 2 in classes[], cat 1, dog 0. */
      int cls = tr->labels[i] == 0 ? 2 : tr->labels[i] == 1 ? 1 : 0;
      int k = tr->labels[i] == 0 ? i : tr->labels[i] == 1 ? i - 300 : i - 305;
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < 5; y++)
          for (int x = 0; x < 6; x++)
            g_assert_cmpint (tr->pixels[(gsize) i * 90 + c * 30 + y * 6 + x], ==, png_value (cls * 100 + k, c, y, x, FALSE));
    }

  {
    g_autoptr (CleaveDataset) te = cleave_dataset_load (root, CLEAVE_SPLIT_TEST, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (te->n, ==, 5);
    g_assert_cmpint (te->n_classes, ==, 3);
  }

  /* Class folders directly under the root serve both splits; grey PNGs load as c = 1. */
  {
    g_autofree char *groot = g_build_filename (root, "grey", NULL);
    const char *const gc[] = { "0", "1", NULL };
    const int gn[] = { 2, 3 };
    g_autofree char *gd = make_folder (groot, NULL, gc, gn, 4, 4, TRUE);
    g_autoptr (CleaveDataset) g = cleave_dataset_load (groot, CLEAVE_SPLIT_TEST, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (g->n, ==, 5);
    g_assert_cmpint (g->c, ==, 1);
    g_assert_cmpint (g->pixels[16 * 4 + 5], ==, png_value (100 + 2, 0, 1, 1, TRUE));
  }

  /* Size mismatch names the odd file. */
  {
    g_autofree char *odd = g_build_filename (tr_dir, "cat", "0002.png", NULL);
    save_png (odd, 7, 5, 0, FALSE);
    g_assert_null (cleave_dataset_load_image_folder (tr_dir, NULL, &error));
    assert_invalid_names (error, "0002.png: image is 7×5");
    g_clear_error (&error);
    save_png (odd, 6, 5, 0, FALSE);
  }
  /* An unreadable image names the file. */
  {
    g_autofree char *junk = g_build_filename (tr_dir, "dog", "0001.png", NULL);
    g_assert_true (g_file_set_contents (junk, "not a png at all", -1, NULL));
    g_assert_null (cleave_dataset_load_image_folder (tr_dir, NULL, &error));
    assert_invalid_names (error, "0001.png: cannot decode image");
    g_clear_error (&error);
    save_png (junk, 6, 5, 0, FALSE);
  }
  /* An empty class folder names the folder. */
  {
    g_autofree char *empty = g_build_filename (tr_dir, "emu", NULL);
    g_mkdir (empty, 0755);
    g_assert_null (cleave_dataset_load_image_folder (tr_dir, NULL, &error));
    assert_invalid_names (error, "emu: class folder has no images");
    g_clear_error (&error);
    g_rmdir (empty);
  }
  /* A cancelled load stops with G_IO_ERROR_CANCELLED. */
  {
    g_autoptr (GCancellable) cancel = g_cancellable_new ();
    g_cancellable_cancel (cancel);
    g_assert_null (cleave_dataset_load_image_folder (tr_dir, cancel, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
  }
  /* A folder with no classes at all. */
  {
    g_autofree char *bare = g_build_filename (root, "bare", NULL);
    g_mkdir (bare, 0755);
    g_assert_null (cleave_dataset_load (bare, CLEAVE_SPLIT_TRAIN, NULL, &error));
    assert_invalid_names (error, "bare: no class folders");
    g_clear_error (&error);
  }
  rm_rf (root);
}

static guint32
crc32_png (const guint8 *p, gsize n)
{
  guint32 c = 0xffffffffu;
  for (gsize i = 0; i < n; i++)
    {
      c ^= p[i];
      for (int k = 0; k < 8; k++)
        c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
  return c ^ 0xffffffffu;
}

static void
put_be (guint8 *p, int bytes, guint32 v)
{
  for (int k = 0; k < bytes; k++)
    p[k] = (guint8) (v >> (8 * (bytes - 1 - k)));
}

/* Rewrites a saved PNG's or JPEG's declared size (IHDR with its CRC, or the
 * baseline SOF0 segment), leaving the pixel data as it was. */
static void
claim_size (const char *path, int w, int h)
{
  g_autofree guint8 *d = NULL;
  gsize n = 0;
  g_assert_true (g_file_get_contents (path, (char **) &d, &n, NULL));
  if (d[0] == 0x89)
    {
      put_be (d + 16, 4, (guint32) w);
      put_be (d + 20, 4, (guint32) h);
      put_be (d + 29, 4, crc32_png (d + 12, 17));
    }
  else
    {
      gsize i = 2;
      while (i + 9 < n && !(d[i] == 0xff && d[i + 1] == 0xc0))
        i++;
      g_assert_cmpuint (i + 9, <, n);
      put_be (d + i + 5, 2, (guint32) h);
      put_be (d + i + 7, 2, (guint32) w);
    }
  g_assert_true (g_file_set_contents (path, (char *) d, (gssize) n, NULL));
}

/* An image's declared size is read from its header before it is decoded:
 * a few bytes claiming 65535² are refused at once, naming the file. Content
 * other than PNG or JPEG is refused whatever the file's name. */
static void
test_image_size_before_decode (void)
{
  g_autofree char *root = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  const char *const classes[] = { "a", "b", NULL };
  const int counts[] = { 2, 2 };
  g_autofree char *dir = make_folder (root, NULL, classes, counts, 8, 8, FALSE);
  g_autofree char *first = g_build_filename (dir, "a", "0000.png", NULL);
  g_autofree char *later = g_build_filename (dir, "b", "0001.png", NULL);
  g_autoptr (GError) error = NULL;
  gint64 t0;

  /* the first image sets the size: over the limit */
  claim_size (first, 5000, 5000);
  g_assert_null (cleave_dataset_load_image_folder (dir, NULL, &error));
  assert_invalid_names (error, "0000.png: image is 5000×5000, larger than");
  g_clear_error (&error);
  save_png (first, 8, 8, 0, FALSE);

  /* a later image claims 65535², as a PNG and as a JPEG */
  t0 = g_get_monotonic_time ();
  claim_size (later, 65535, 65535);
  g_assert_null (cleave_dataset_load_image_folder (dir, NULL, &error));
  assert_invalid_names (error, "0001.png: image is 65535×65535");
  g_clear_error (&error);
  {
    g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 8, 8);
    gdk_pixbuf_fill (pb, 0x804020ff);
    g_assert_true (gdk_pixbuf_save (pb, later, "jpeg", NULL, NULL));
  }
  claim_size (later, 65500, 65500);
  g_assert_null (cleave_dataset_load_image_folder (dir, NULL, &error));
  assert_invalid_names (error, "0001.png: image is 65500×65500");
  g_clear_error (&error);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 10 * G_USEC_PER_SEC);

  /* a BMP named .png */
  {
    g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 8, 8);
    gdk_pixbuf_fill (pb, 0x804020ff);
    g_assert_true (gdk_pixbuf_save (pb, later, "bmp", NULL, NULL));
  }
  g_assert_null (cleave_dataset_load_image_folder (dir, NULL, &error));
  assert_invalid_names (error, "0001.png: cannot decode image: not a PNG or JPEG");
  g_clear_error (&error);
  rm_rf (root);
}

/* ---------------------------------------------------------------- index utilities */

static void
test_split (void)
{
  int counts[4] = { 500, 120, 37, 3 };
  g_autoptr (CleaveDataset) ds = make_synthetic (4, counts, 1, 2, 2);
  g_autofree int *tr = NULL, *va = NULL, *tr2 = NULL, *va2 = NULL, *tr3 = NULL, *va3 = NULL;
  int ntr, nva, ntr2, nva2, ntr3, nva3;
  g_autofree int *seen = g_new0 (int, ds->n);
  int per_val[4] = { 0 };

  cleave_dataset_split (ds, 0.2, 42, &tr, &ntr, &va, &nva);
  cleave_dataset_split (ds, 0.2, 42, &tr2, &ntr2, &va2, &nva2);
  cleave_dataset_split (ds, 0.2, 43, &tr3, &ntr3, &va3, &nva3);

  g_assert_cmpint (ntr + nva, ==, ds->n);
  g_assert_cmpint (ntr, ==, ntr2);
  g_assert_cmpmem (tr, ntr * sizeof (int), tr2, ntr2 * sizeof (int));
  g_assert_cmpmem (va, nva * sizeof (int), va2, nva2 * sizeof (int));
  g_assert_cmpint (nva, ==, nva3);
  g_assert_true (memcmp (va, va3, nva * sizeof (int)) != 0);

  for (int i = 0; i < ntr; i++)
    seen[tr[i]]++;
  for (int i = 0; i < nva; i++)
    {
      seen[va[i]]++;
      per_val[ds->labels[va[i]]]++;
      if (i)
        g_assert_cmpint (va[i - 1], <, va[i]);
    }
  for (int i = 0; i < ds->n; i++)
    g_assert_cmpint (seen[i], ==, 1);
  /* Stratified: each class keeps its share (rounded). */
  g_assert_cmpint (per_val[0], ==, 100);
  g_assert_cmpint (per_val[1], ==, 24);
  g_assert_cmpint (per_val[2], ==, 7);
  g_assert_cmpint (per_val[3], ==, 1);

  /* Golden values: the split must not change across versions. */
  g_test_message ("first val indices seed 42: %d %d %d", va[0], va[1], va[2]);
  {
    g_autofree int *a = NULL, *b = NULL;
    int na, nb;
    cleave_dataset_split (ds, 0.0, 1, &a, &na, &b, &nb);
    g_assert_cmpint (nb, ==, 0);
    g_assert_cmpint (na, ==, ds->n);
  }
}

static void
test_dirichlet (void)
{
  int counts[10] = { 600, 600, 600, 600, 600, 600, 600, 600, 600, 50 };
  g_autoptr (CleaveDataset) ds = make_synthetic (10, counts, 1, 1, 1);
  g_autofree int *pool = g_new (int, ds->n);
  int npool = 0;

  int pool9 = 0;
  g_autofree int *in_pool = g_new0 (int, ds->n);

  /* Pool: two images in three, as a training split would be. */
  for (int i = 0; i < ds->n; i++)
    if (i % 3 != 0)
      {
        pool[npool++] = i;
        in_pool[i] = 1;
        pool9 += ds->labels[i] == 9;
      }
  for (guint64 seed = 1; seed <= 5; seed++)
    {
      int n, n2, per[10] = { 0 }, lo = G_MAXINT, hi = 0;
      g_autofree int *a = cleave_dataset_dirichlet_subset (ds, pool, npool, 1.0, 20, 1000, seed, &n);
      g_autofree int *b = cleave_dataset_dirichlet_subset (ds, pool, npool, 1.0, 20, 1000, seed, &n2);
      g_autofree int *mark = g_new0 (int, ds->n);

      g_assert_cmpint (n, ==, n2);
      g_assert_cmpmem (a, n * sizeof (int), b, n2 * sizeof (int));
      g_assert_cmpint (n, <=, 1000);
      g_assert_cmpint (n, >=, 990);
      for (int i = 0; i < n; i++)
        {
          g_assert_true (in_pool[a[i]]);
          g_assert_cmpint (mark[a[i]]++, ==, 0);
          per[ds->labels[a[i]]]++;
        }
      for (int c = 0; c < 10; c++)
        {
          g_assert_cmpint (per[c], >=, 20);
          lo = MIN (lo, per[c]);
          hi = MAX (hi, per[c]);
        }
      g_assert_cmpint (per[9], <=, pool9);   /* few of class 9 in the pool */
      /* Dirichlet(1) over 10 classes is far from uniform. */
      g_assert_cmpint (hi, >, 2 * lo);
      g_test_message ("seed %" G_GUINT64_FORMAT ": %d %d %d %d %d %d %d %d %d %d", seed,
                      per[0], per[1], per[2], per[3], per[4], per[5], per[6], per[7], per[8], per[9]);
    }
  /* Minimum wins over the total; a small alpha gives stronger skew, still with the minimum. */
  {
    int n, per[10] = { 0 };
    g_autofree int *a = cleave_dataset_dirichlet_subset (ds, NULL, 0, 0.1, 30, 200, 9, &n);
    for (int i = 0; i < n; i++)
      per[ds->labels[a[i]]]++;
    for (int c = 0; c < 10; c++)
      g_assert_cmpint (per[c], >=, 30);
    g_assert_cmpint (n, ==, 300);
  }
}

static void
test_subset_select_concat (void)
{
  int counts[3] = { 4, 5, 6 };
  g_autoptr (CleaveDataset) ds = make_synthetic (3, counts, 2, 3, 3);
  int idx[3] = { 14, 0, 7 };
  int pick[2] = { 2, 0 };
  int bad[2] = { 1, 1 };
  g_autoptr (GError) error = NULL;
  gsize sz = 18;

  g_autoptr (CleaveDataset) sub = cleave_dataset_subset (ds, idx, 3);
  g_assert_cmpint (sub->n, ==, 3);
  for (int i = 0; i < 3; i++)
    {
      g_assert_cmpmem (sub->pixels + i * sz, sz, ds->pixels + idx[i] * sz, sz);
      g_assert_cmpint (sub->labels[i], ==, ds->labels[idx[i]]);
    }

  g_autoptr (CleaveDataset) sel = cleave_dataset_select_classes (ds, pick, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (sel->n, ==, 10);
  g_assert_cmpint (sel->n_classes, ==, 2);
  g_assert_cmpstr (sel->class_names[0], ==, "class2");
  g_assert_cmpstr (sel->class_names[1], ==, "class0");
  g_assert_null (sel->class_names[2]);
  for (int i = 0, k = 0; i < ds->n; i++)
    if (ds->labels[i] != 1)
      {
        g_assert_cmpint (sel->labels[k], ==, ds->labels[i] == 2 ? 0 : 1);
        g_assert_cmpmem (sel->pixels + k * sz, sz, ds->pixels + i * sz, sz);
        k++;
      }
  g_assert_null (cleave_dataset_select_classes (ds, bad, 2, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  CleaveDataset *parts[2] = { sub, sel };
  g_autoptr (CleaveDataset) cat = cleave_dataset_concat (parts, 2, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cat->n, ==, 13);
  g_assert_cmpint (cat->n_classes, ==, 5);
  g_assert_cmpstr (cat->class_names[3], ==, "class2");
  g_assert_cmpint (cat->labels[3], ==, sel->labels[0] + 3);
  g_assert_cmpmem (cat->pixels + 3 * sz, 10 * sz, sel->pixels, 10 * sz);

  int c1[1] = { 3 };
  g_autoptr (CleaveDataset) other = make_synthetic (1, c1, 1, 3, 3);
  parts[1] = other;
  g_assert_null (cleave_dataset_concat (parts, 2, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static void
test_norm_and_batch (void)
{
  int counts[2] = { 3, 4 };
  g_autoptr (CleaveDataset) ds = make_synthetic (2, counts, 3, 5, 6);
  g_autoptr (GRand) rng = g_rand_new_with_seed (7);
  float mean[3], std[3];
  int idx[4] = { 6, 0, 3, 3 };
  int hw = 30, C = 3, W = 6, H = 5;
  float x[4 * 90], y[4], x2[4 * 90];

  cleave_dataset_compute_norm (ds, NULL, 0, mean, std);
  for (int c = 0; c < 3; c++)
    {
      double s = 0, s2 = 0;
      for (int i = 0; i < ds->n; i++)
        for (int k = 0; k < hw; k++)
          {
            double v = ds->pixels[(i * C + c) * hw + k] / 255.0;
            s += v;
            s2 += v * v;
          }
      double m = s / (ds->n * hw);
      g_assert_cmpfloat_with_epsilon (mean[c], m, 1e-6);
      g_assert_cmpfloat_with_epsilon (std[c], sqrt (s2 / (ds->n * hw) - m * m), 1e-5);
    }
  {
    float m2[3], s2[3];
    int one[1] = { 2 };
    cleave_dataset_compute_norm (ds, one, 1, m2, s2);
    double s = 0;
    for (int k = 0; k < hw; k++)
      s += ds->pixels[(2 * C + 1) * hw + k] / 255.0;
    g_assert_cmpfloat_with_epsilon (m2[1], s / hw, 1e-6);
  }

  /* No augmentation: exact normalisation. */
  cleave_dataset_fill_batch (ds, idx, 4, mean, std, NULL, NULL, x, y);
  for (int b = 0; b < 4; b++)
    {
      g_assert_cmpfloat (y[b], ==, ds->labels[idx[b]]);
      for (int c = 0; c < C; c++)
        for (int k = 0; k < hw; k++)
          g_assert_cmpfloat_with_epsilon (x[b * 90 + c * hw + k],
                                          (ds->pixels[(idx[b] * C + c) * hw + k] / 255.0f - mean[c]) / std[c], 1e-5);
    }

  /* Crop + flip: every output pixel is either a zero-padding value or some
   * source pixel at a consistent shift; a flip reverses columns. */
  {
    CleaveAugment aug = { TRUE, 2, TRUE };
    int flipped = 0, shifted = 0;
    for (int rep = 0; rep < 40; rep++)
      {
        cleave_dataset_fill_batch (ds, idx, 4, mean, std, &aug, rng, x2, NULL);
        for (int b = 0; b < 4; b++)
          {
            gboolean found = FALSE;
            for (int mir = 0; mir < 2 && !found; mir++)
              for (int dy = -2; dy <= 2 && !found; dy++)
                for (int dx = -2; dx <= 2 && !found; dx++)
                  {
                    gboolean ok = TRUE;
                    for (int c = 0; c < C && ok; c++)
                      for (int r = 0; r < H && ok; r++)
                        for (int q = 0; q < W && ok; q++)
                          {
                            int sr = r + dy, sq = (mir ? W - 1 - q : q) + dx;
                            int v = (sr >= 0 && sr < H && sq >= 0 && sq < W) ? ds->pixels[(idx[b] * C + c) * hw + sr * W + sq] : 0;
                            float want = (v / 255.0f - mean[c]) / std[c];
                            ok = fabsf (x2[b * 90 + c * hw + r * W + q] - want) < 1e-4f;
                          }
                    if (ok)
                      {
                        found = TRUE;
                        flipped += mir;
                        shifted += dx != 0 || dy != 0;
                      }
                  }
            g_assert_true (found);
          }
      }
    /* 160 draws: both flips and shifts must occur. */
    g_assert_cmpint (flipped, >, 40);
    g_assert_cmpint (flipped, <, 120);
    g_assert_cmpint (shifted, >, 100);

    /* Digits are never mirrored. */
    ds->digits = TRUE;
    CleaveAugment flip_only = { FALSE, 0, TRUE };
    for (int rep = 0; rep < 10; rep++)
      {
        cleave_dataset_fill_batch (ds, idx, 4, mean, std, &flip_only, rng, x2, NULL);
        g_assert_cmpmem (x2, sizeof x2, x, sizeof x);
      }
  }

  /* Deterministic shuffle. */
  {
    int a[50], b[50], sum = 0;
    g_autoptr (GRand) r1 = g_rand_new_with_seed (5);
    g_autoptr (GRand) r2 = g_rand_new_with_seed (5);
    for (int i = 0; i < 50; i++)
      a[i] = b[i] = i;
    cleave_shuffle_indices (a, 50, r1);
    cleave_shuffle_indices (b, 50, r2);
    g_assert_cmpmem (a, sizeof a, b, sizeof b);
    for (int i = 0; i < 50; i++)
      sum += a[i];
    g_assert_cmpint (sum, ==, 49 * 50 / 2);
    g_assert_true (a[0] != 0 || a[1] != 1 || a[2] != 2);
  }
}

/* ---------------------------------------------------------------- real data */

/* The test environment's data directory (CLEAVE_DATA_DIR, set by
 * tests/meson.build), then the default ones: what a front end passes. */
static const char *const *
data_dirs (void)
{
  static char **dirs;

  if (dirs == NULL)
    {
      const char *const *defaults = cleave_dataset_default_dirs ();
      GPtrArray *a = g_ptr_array_new ();
      if (g_getenv ("CLEAVE_DATA_DIR"))
        g_ptr_array_add (a, g_strdup (g_getenv ("CLEAVE_DATA_DIR")));
      for (int i = 0; defaults[i]; i++)
        g_ptr_array_add (a, g_strdup (defaults[i]));
      g_ptr_array_add (a, NULL);
      dirs = (char **) g_ptr_array_free (a, FALSE);
    }
  return (const char *const *) dirs;
}

static CleaveDataset *
load_or_skip (const char *spec, CleaveSplit split, double *secs)
{
  g_autoptr (GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  CleaveDataset *ds = cleave_dataset_load_from (spec, data_dirs (), split, NULL, &error);

  *secs = (g_get_monotonic_time () - t0) / 1e6;
  if (ds == NULL && g_error_matches (error, CLEAVE_ERROR, CLEAVE_ERROR_IO))
    {
      g_autofree char *msg = g_strdup_printf ("%s not available: %s", spec, error->message);
      g_test_skip (msg);
      return NULL;
    }
  g_assert_no_error (error);
  return ds;
}

static void
check_mnist_like (const char *spec, gboolean digits, const int *train_counts)
{
  double t;
  g_autoptr (CleaveDataset) tr = load_or_skip (spec, CLEAVE_SPLIT_TRAIN, &t);
  int per[10] = { 0 };

  if (tr == NULL)
    return;
  g_test_message ("%s train loaded in %.2f s", spec, t);
  g_assert_cmpstr (tr->name, ==, spec);
  g_assert_cmpint (tr->n, ==, 60000);
  g_assert_cmpint (tr->c, ==, 1);
  g_assert_cmpint (tr->h, ==, 28);
  g_assert_cmpint (tr->w, ==, 28);
  g_assert_cmpint (tr->n_classes, ==, 10);
  g_assert_cmpint (tr->digits, ==, digits);
  g_assert_nonnull (tr->class_names[9]);
  g_assert_null (tr->class_names[10]);
  for (int i = 0; i < tr->n; i++)
    per[tr->labels[i]]++;
  for (int c = 0; c < 10; c++)
    g_assert_cmpint (per[c], ==, train_counts[c]);
  {
    float m, s;
    cleave_dataset_compute_norm (tr, NULL, 0, &m, &s);
    g_test_message ("%s mean %.4f std %.4f", spec, m, s);
    g_assert_cmpfloat (m, >, 0.1);
    g_assert_cmpfloat (m, <, 0.4);
  }

  g_autoptr (CleaveDataset) te = load_or_skip (spec, CLEAVE_SPLIT_TEST, &t);
  g_assert_nonnull (te);
  g_assert_cmpint (te->n, ==, 10000);
  g_assert_cmpint (te->n_classes, ==, 10);
}

static void
test_fashion_mnist (void)
{
  const int counts[10] = { 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000, 6000 };
  check_mnist_like ("fashion-mnist", FALSE, counts);
  if (!g_test_failed ())
    {
      double t;
      g_autoptr (CleaveDataset) ds = load_or_skip ("fashion-mnist", CLEAVE_SPLIT_TEST, &t);
      if (ds)
        {
          g_assert_cmpstr (ds->class_names[0], ==, "T-shirt/top");
          g_assert_cmpstr (ds->class_names[9], ==, "Ankle boot");
        }
    }
}

static void
test_mnist (void)
{
  /* The official MNIST training-set class counts. */
  const int counts[10] = { 5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949 };
  check_mnist_like ("mnist", TRUE, counts);
}

/* Real CIFAR-10: the test split from the JPEG copy (extracted into the
 * cache once), then a slice written as CIFAR-10 binary and read back. The
 * 50 000-image training split is loaded only in slow mode (-m slow). */
static void
test_cifar10 (void)
{
  double t;
  g_autoptr (CleaveDataset) te = load_or_skip ("cifar10", CLEAVE_SPLIT_TEST, &t);
  int per[10] = { 0 };

  if (te == NULL)
    return;
  g_test_message ("cifar10 test loaded in %.2f s", t);
  g_assert_cmpstr (te->name, ==, "cifar10");
  g_assert_cmpint (te->n, ==, 10000);
  g_assert_cmpint (te->c, ==, 3);
  g_assert_cmpint (te->h, ==, 32);
  g_assert_cmpint (te->w, ==, 32);
  g_assert_cmpint (te->n_classes, ==, 10);
  g_assert_cmpstr (te->class_names[0], ==, "airplane");
  g_assert_cmpstr (te->class_names[1], ==, "automobile");
  g_assert_cmpstr (te->class_names[9], ==, "truck");
  for (int i = 0; i < te->n; i++)
    per[te->labels[i]]++;
  for (int c = 0; c < 10; c++)
    g_assert_cmpint (per[c], ==, 1000);

  /* Loading again uses the cache and gives the same data. */
  {
    g_autoptr (CleaveDataset) again = load_or_skip ("cifar10", CLEAVE_SPLIT_TEST, &t);
    g_test_message ("cifar10 test loaded again in %.2f s", t);
    g_assert_cmpint (again->n, ==, te->n);
    g_assert_cmpmem (again->labels, te->n, te->labels, te->n);
    g_assert_cmpmem (again->pixels, (gsize) te->n * 3072, te->pixels, (gsize) te->n * 3072);
    g_assert_cmpstr (again->class_names[9], ==, "truck");
  }

  /* Binary CIFAR-10 files written from the real images read back identically. */
  {
    g_autofree char *dir = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
    g_autofree char *b1 = g_build_filename (dir, "data_batch_1.bin", NULL);
    g_autofree char *tb = g_build_filename (dir, "test_batch.bin", NULL);
    g_autoptr (GError) error = NULL;
    int step = 1000;
    g_autofree int *slice = g_new (int, 200);

    /* 20 images from each class. */
    for (int i = 0; i < 200; i++)
      slice[i] = (i % 10) * step + i / 10;
    g_autoptr (CleaveDataset) sub = cleave_dataset_subset (te, slice, 200);
    write_cifar_bin (b1, sub, 0, 150);
    write_cifar_bin (tb, sub, 150, 50);
    g_autoptr (CleaveDataset) rb = cleave_dataset_load (dir, CLEAVE_SPLIT_TRAIN, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (rb->n, ==, 150);
    g_assert_cmpmem (rb->pixels, 150 * 3072, sub->pixels, 150 * 3072);
    g_assert_cmpmem (rb->labels, 150, sub->labels, 150);
    g_assert_cmpstr (rb->class_names[3], ==, "cat");
    rm_rf (dir);
  }

  if (g_test_slow ())
    {
      g_autoptr (CleaveDataset) tr = load_or_skip ("cifar10", CLEAVE_SPLIT_TRAIN, &t);
      g_test_message ("cifar10 train loaded in %.2f s", t);
      g_assert_cmpint (tr->n, ==, 50000);
    }
}

/* The "cifar10" name end to end on a tiny synthetic tarball: extraction into
 * the cache, the decoded cache, and a corrupt archive leaving nothing behind.
 * Runs in a subprocess so its cache and data folders stay its own. */
static void
test_cifar10_cache_child (void)
{
  static const char *const names[] = { "airplane", "automobile", "bird", "cat", "deer",
                                       "dog", "frog", "horse", "ship", "truck", NULL };
  const char *cache = g_getenv ("XDG_CACHE_HOME");
  g_autofree char *ext = g_build_filename (cache, "cleave", "datasets", "cifar10", NULL);
  g_autofree char *dec = g_build_filename (cache, "cleave", "datasets", "cifar10-decoded", "test.bin", NULL);
  g_autofree char *dsdir = g_build_filename (cache, "cleave", "datasets", NULL);
  g_autoptr (GError) error = NULL;
  GDir *d;
  const char *n;

  g_autoptr (CleaveDataset) te = cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TEST, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (te->n, ==, 10);
  g_assert_cmpint (te->c, ==, 3);
  g_assert_cmpint (te->h, ==, 32);
  for (int c = 0; c < 10; c++)
    {
      g_assert_cmpstr (te->class_names[c], ==, names[c]);
      g_assert_cmpint (te->labels[c], ==, c);
    }
  g_assert_true (g_file_test (ext, G_FILE_TEST_IS_DIR));
  g_assert_true (g_file_test (dec, G_FILE_TEST_IS_REGULAR));
  d = g_dir_open (dsdir, 0, NULL);
  while ((n = g_dir_read_name (d)))
    g_assert_false (g_str_has_prefix (n, ".cifar10-extract"));
  g_dir_close (d);

  /* From the decoded cache: identical. */
  g_autoptr (CleaveDataset) again = cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TEST, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpmem (again->pixels, 10 * 3072, te->pixels, 10 * 3072);
  g_assert_cmpstr (again->class_names[9], ==, "truck");

  /* A decoded cache that no longer matches its record count and checksum
   * (labels zeroed, then the file truncated) is rebuilt, not trusted. */
  for (int damage = 0; damage < 2; damage++)
    {
      g_autofree char *bin = NULL;
      gsize len;
      g_assert_true (g_file_get_contents (dec, &bin, &len, NULL));
      g_assert_cmpuint (len, ==, 10 * 3073);
      if (damage == 0)
        for (int i = 0; i < 10; i++)
          bin[i * 3073] = 0;
      g_assert_true (g_file_set_contents (dec, bin, damage == 0 ? (gssize) len : 3073 * 4, NULL));
      g_autoptr (CleaveDataset) re = cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TEST, NULL, &error);
      g_assert_no_error (error);
      g_assert_cmpint (re->n, ==, 10);
      for (int c = 0; c < 10; c++)
        g_assert_cmpint (re->labels[c], ==, c);
      g_assert_cmpmem (re->pixels, 10 * 3072, te->pixels, 10 * 3072);
    }
  g_autoptr (CleaveDataset) tr = cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TRAIN, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (tr->n, ==, 20);

  /* A different tarball (another size) replaces the caches: drop one class. */
  {
    g_autofree char *tarball = g_build_filename (g_getenv ("CLEAVE_DATA_DIR"), "cifar10", "cifar10-jpg.tar.gz", NULL);
    g_autofree char *src = g_build_filename (g_getenv ("CLEAVE_TEST_TAR_SRC"), NULL);
    g_autofree char *truck = g_build_filename (src, "cifar10", "test", "truck", "0000.png", NULL);
    const char *argv[] = { "tar", "-czf", tarball, "-C", src, "cifar10", NULL };
    int status;

    g_assert_cmpint (g_remove (truck), ==, 0);
    g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status, NULL));
    g_assert_true (g_spawn_check_wait_status (status, NULL));
    g_autoptr (CleaveDataset) re = cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TEST, NULL, &error);
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);   /* truck/ is now empty */
    g_assert_nonnull (strstr (error->message, "truck"));
    g_clear_error (&error);
  }

  /* A corrupt archive: an error, no half-extracted folder, no temp folder. */
  {
    g_autofree char *tarball = g_build_filename (g_getenv ("CLEAVE_DATA_DIR"), "cifar10", "cifar10-jpg.tar.gz", NULL);
    g_autofree char *contents = NULL;
    gsize len;
    g_assert_true (g_file_get_contents (tarball, &contents, &len, NULL));
    g_assert_true (g_file_set_contents (tarball, contents, len / 2, NULL));
    rm_rf (ext);
    g_remove (dec);
    g_assert_null (cleave_dataset_load_from ("cifar10", data_dirs (), CLEAVE_SPLIT_TEST, NULL, &error));
    assert_invalid_names (error, "cifar10-jpg.tar.gz: tar failed to unpack cifar10/test");
    {
      g_autofree char *ext_test = g_build_filename (ext, "test", NULL);
      g_assert_false (g_file_test (ext_test, G_FILE_TEST_EXISTS));
    }
    d = g_dir_open (dsdir, 0, NULL);
    while ((n = g_dir_read_name (d)))
      g_assert_false (g_str_has_prefix (n, ".cifar10-extract"));
    g_dir_close (d);
  }
}

static void
test_cifar10_cache (void)
{
  g_autofree char *root = g_dir_make_tmp ("cleave-ds-XXXXXX", NULL);
  g_autofree char *src = g_build_filename (root, "src", NULL);
  g_autofree char *data = g_build_filename (root, "data", NULL);
  g_autofree char *cache = g_build_filename (root, "cache", NULL);
  g_autofree char *tardir = g_build_filename (data, "cifar10", NULL);
  g_autofree char *tarball = g_build_filename (tardir, "cifar10-jpg.tar.gz", NULL);
  g_autofree char *inner = g_build_filename (src, "cifar10", NULL);
  const char *const classes[] = { "truck", "ship", "horse", "frog", "dog", "deer", "cat", "bird", "automobile", "airplane", NULL };
  const int two[10] = { 2, 2, 2, 2, 2, 2, 2, 2, 2, 2 };
  const int one[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  g_autofree char *old_cache = g_strdup (g_getenv ("XDG_CACHE_HOME"));
  g_autofree char *old_data = g_strdup (g_getenv ("CLEAVE_DATA_DIR"));
  g_autofree char *a = make_folder (inner, "train", classes, two, 32, 32, FALSE);
  g_autofree char *b = make_folder (inner, "test", classes, one, 32, 32, FALSE);
  const char *argv[] = { "tar", "-czf", tarball, "-C", src, "cifar10", NULL };
  int status;

  g_mkdir_with_parents (tardir, 0755);
  g_mkdir_with_parents (cache, 0755);
  g_assert_true (g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status, NULL));
  g_assert_true (g_spawn_check_wait_status (status, NULL));

  g_setenv ("XDG_CACHE_HOME", cache, TRUE);
  g_setenv ("CLEAVE_DATA_DIR", data, TRUE);
  g_setenv ("CLEAVE_TEST_TAR_SRC", src, TRUE);
  g_test_trap_subprocess ("/core/dataset/cifar10-name/extract-and-cache/subprocess", 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
  if (old_cache)
    g_setenv ("XDG_CACHE_HOME", old_cache, TRUE);
  else
    g_unsetenv ("XDG_CACHE_HOME");
  if (old_data)
    g_setenv ("CLEAVE_DATA_DIR", old_data, TRUE);
  else
    g_unsetenv ("CLEAVE_DATA_DIR");
  g_unsetenv ("CLEAVE_TEST_TAR_SRC");
  rm_rf (root);
  g_test_trap_assert_passed ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/dataset/idx/raw-and-gzip", test_idx_read);
  g_test_add_func ("/core/dataset/idx/errors-name-file-and-field", test_idx_errors);
  g_test_add_func ("/core/dataset/idx/gzip-trailing-data-refused", test_idx_gzip_trailing);
  g_test_add_func ("/core/dataset/cifar-bin/read-and-errors", test_cifar_bin);
  g_test_add_func ("/core/dataset/image-folder/read-and-errors", test_image_folder);
  g_test_add_func ("/core/dataset/image-folder/size-read-before-decode", test_image_size_before_decode);
  g_test_add_func ("/core/dataset/split/stable-and-stratified", test_split);
  g_test_add_func ("/core/dataset/dirichlet-subset/min-per-class", test_dirichlet);
  g_test_add_func ("/core/dataset/subset-select-concat", test_subset_select_concat);
  g_test_add_func ("/core/dataset/norm-and-batch", test_norm_and_batch);
  g_test_add_func ("/core/dataset/cifar10-name/extract-and-cache", test_cifar10_cache);
  g_test_add_func ("/core/dataset/cifar10-name/extract-and-cache/subprocess", test_cifar10_cache_child);
  g_test_add_func ("/core/dataset/real/fashion-mnist", test_fashion_mnist);
  g_test_add_func ("/core/dataset/real/mnist", test_mnist);
  g_test_add_func ("/core/dataset/real/cifar10", test_cifar10);
  return g_test_run ();
}
