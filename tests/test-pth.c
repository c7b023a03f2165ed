/* test-pth.c: PyTorch checkpoints (torch.save) opened with an architecture,
 * read without running them; golden files from
 * tests/reference/make_pth_golden.py. */
#include "cleave-arch.h"
#include "cleave-error.h"
#include "cleave-model.h"
#include "cleave-net.h"
#include "cleave-pth.h"
#include "cleave-safetensors.h"
#include "cleave-zip-private.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *tmpdir;

static char *
golden (const char *name)
{
  return g_test_build_filename (G_TEST_DIST, "reference", "golden", "pth", name, NULL);
}

static GBytes *
golden_bytes (const char *name)
{
  g_autofree char *path = golden (name);
  g_autoptr(GError) error = NULL;
  char *data;
  gsize len;
  g_assert_true (g_file_get_contents (path, &data, &len, &error));
  g_assert_no_error (error);
  return g_bytes_new_take (data, len);
}

/* Opens @pth with @arch (input @io's "input") and checks the logits against
 * @io's tensor @logits_name within @tol. */
static void
check_logits (const char *pth, const char *arch, const char *io, const char *logits_name, double tol)
{
  g_autofree char *pth_path = golden (pth), *io_path = golden (io);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (io_path, &error);
  g_autoptr(CleaveModel) m = NULL;
  g_autoptr(CleaveBackend) backend = cleave_backend_cpu_new ();
  g_autofree float *x = NULL, *want = NULL, *got = NULL;
  const CleaveSafeTensor *xt;
  int c, h, w, batch;
  CleaveNet *net;
  gsize n;

  g_assert_no_error (error);
  g_assert_cmpint (sscanf (cleave_safetensors_get_metadata (st, "input"), "%dx%dx%d", &c, &h, &w), ==, 3);
  m = cleave_model_load_with_arch (pth_path, arch, c, h, w, 10, &error);
  g_assert_no_error (error);
  xt = cleave_safetensors_find (st, "x");
  x = cleave_safe_tensor_to_f32 (xt, 0, io_path, &error);
  want = cleave_safe_tensor_to_f32 (cleave_safetensors_find (st, logits_name), 0, io_path, &error);
  g_assert_no_error (error);
  batch = (int) xt->shape[0];
  n = (gsize) batch * 10;
  net = cleave_net_new (m->graph, backend, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, batch, FALSE, &error));
  got = g_new (float, n);
  g_assert_true (cleave_net_download_output (net, got, &error));
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (got[i], want[i], tol);
  cleave_net_free (net);
}

/* torch.save(model.state_dict()) of a SimCNN with GradSplitter's names. */
static void
test_simcnn (void)
{
  check_logits ("simcnn.pth", "simcnn:w=0.015625", "simcnn-io.safetensors", "logits", 1e-5);
}

/* {'state_dict': ..., training state}, {'model': Parameters}, the legacy
 * format: the same weights, the same logits. */
static void
test_containers (void)
{
  check_logits ("weak-state_dict.pth", "weak:w=0.125", "weak-io.safetensors", "logits", 1e-5);
  check_logits ("weak-model.pth", "weak:w=0.125", "weak-io.safetensors", "logits", 1e-5);
  check_logits ("weak-legacy.pth", "weak:w=0.125", "weak-io.safetensors", "logits", 1e-5);
}

/* float64 and float16 tensors are converted; a transposed (non-contiguous)
 * tensor is read through its strides; int64 num_batches_tracked is skipped. */
static void
test_mixed_dtypes (void)
{
  g_autofree char *path = golden ("weak-mixed.pth");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_pth_load (path, &error);
  const CleaveSafeTensor *fc;

  g_assert_no_error (error);
  g_assert_cmpstr (cleave_safetensors_find (st, "conv_0.0.weight")->dtype, ==, "F64");
  g_assert_cmpstr (cleave_safetensors_find (st, "conv_0.1.num_batches_tracked")->dtype, ==, "I64");
  fc = cleave_safetensors_find (st, "fc_4.weight");
  g_assert_cmpstr (fc->dtype, ==, "F16");
  g_assert_cmpint (fc->ndim, ==, 2);
  g_assert_cmpint (fc->shape[0], ==, 10);
  check_logits ("weak-mixed.pth", "weak:w=0.125", "weak-io.safetensors", "logits_mixed", 1e-5);
}

/* CNNSplitter's own SimCNN and ResCNN: no BatchNorm, other names. A plain
 * preset picks their variant from the names; ref=cnnsplitter says it. */
static void
test_cnnsplitter (void)
{
  g_autofree char *path = golden ("cnnsplitter-simcnn.pth");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) m = NULL;

  check_logits ("cnnsplitter-simcnn.pth", "simcnn:w=0.015625", "cnnsplitter-io.safetensors", "logits", 1e-5);
  check_logits ("cnnsplitter-simcnn.pth", "simcnn:w=1/64,ref=cnnsplitter", "cnnsplitter-io.safetensors", "logits", 1e-5);
  check_logits ("cnnsplitter-rescnn.pth", "rescnn:w=0.015625", "cnnsplitter-io.safetensors", "logits_rescnn", 1e-5);

  /* GradSplitter's variant, asked for explicitly, needs the BatchNorm tensors. */
  m = cleave_model_load_with_arch (path, "simcnn:w=0.015625,ref=gradsplitter", 3, 32, 32, 10, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "tensor 'conv_0.0.weight'"));
  g_clear_error (&error);
  m = cleave_model_load_with_arch (path, "incecnn:ref=cnnsplitter", 3, 32, 32, 10, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

/* An architecture JSON file instead of a preset. */
static void
test_json_arch (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_arch_build ("weak:w=0.125", 1, 28, 28, 10, &error);
  g_autofree char *json = NULL, *path = g_build_filename (tmpdir, "weak.json", NULL);

  g_assert_no_error (error);
  json = cleave_graph_to_json (g);
  cleave_graph_free (g);
  g_assert_true (g_file_set_contents (path, json, -1, &error));
  check_logits ("weak-state_dict.pth", path, "weak-io.safetensors", "logits", 1e-5);
}

/* A checkpoint that names any other global is refused, naming it and the
 * file, and nothing in it runs: the commands would create "cleave-pth-pwned"
 * in the working directory. */
static void
test_refuses_globals (void)
{
  static const struct { const char *file, *global; } cases[] = {
    { "evil-os-system.pth", "'os.system'" },
    { "evil-builtins-eval.pth", "'builtins.eval'" },
    { "evil-getattr-legacy.pth", "'__builtin__.getattr'" },
    { "whole-model.pth", "'torch.nn.modules.linear.Linear'" },
  };
  g_autofree char *cwd = g_get_current_dir ();
  g_autofree char *marker = g_build_filename (tmpdir, "cleave-pth-pwned", NULL);

  g_assert_cmpint (g_chdir (tmpdir), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = golden (cases[i].file);
      g_autoptr(GError) error = NULL;
      g_autoptr(CleaveModel) m = cleave_model_load_with_arch (path, "weak", 1, 28, 28, 10, &error);
      g_assert_null (m);
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED);
      g_assert_nonnull (strstr (error->message, cases[i].global));
      g_assert_nonnull (strstr (error->message, cases[i].file));
      g_test_message ("%s", error->message);
    }
  g_assert_false (g_file_test (marker, G_FILE_TEST_EXISTS));
  g_assert_cmpint (g_chdir (cwd), ==, 0);
}

static void
assert_refused (const char *file, const char *field, const char *detail)
{
  g_autofree char *path = golden (file);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_pth_load (path, &error);
  g_assert_null (st);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, file));
  g_assert_nonnull (strstr (error->message, field));
  g_assert_nonnull (strstr (error->message, detail));
}

/* Views outside their storage, storages shorter than claimed, big-endian data. */
static void
test_bad_views (void)
{
  assert_refused ("bad-stride.pth", "tensor 'fc.weight'", "reach element 7 of storage '0', which has 6 elements");
  assert_refused ("short-storage.pth", "storage '0'", "has 16 bytes, the pickle claims 6 elements of 4 bytes");
  assert_refused ("long-storage.pth", "storage '0'", "has 32 bytes, the pickle claims 6 elements of 4 bytes");
  assert_refused ("big-endian.pth", "archive/byteorder", "only little-endian checkpoints are supported");
}

/* A byte changed inside a storage keeps the archive well formed: only the
 * entry's CRC-32 tells, and it is checked. */
static void
test_crc_checked (void)
{
  g_autofree char *path = golden ("weak-state_dict.pth"), *contents = NULL;
  g_autofree char *dir = g_dir_make_tmp ("cleave-pth-XXXXXX", NULL);
  g_autofree char *bad = g_build_filename (dir, "flipped.pth", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  gsize len = 0;
  gsize at = 0;

  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  {
    g_autoptr(CleaveZip) zip = cleave_zip_open ((const guint8 *) contents, len, path, &error);
    g_assert_no_error (error);
    for (guint i = 0; i < zip->entries->len && at == 0; i++)
      {
        const CleaveZipEntry *e = zip->entries->pdata[i];
        if (strstr (e->name, "/data/") && e->size > 8)
          at = (gsize) (e->data - (const guint8 *) contents) + e->size / 2;
      }
  }
  g_assert_cmpuint (at, >, 0);
  contents[at] ^= 0x01;   /* one bit of one weight: still a valid float */
  g_assert_true (g_file_set_contents (bad, contents, len, NULL));
  st = cleave_pth_load (bad, &error);
  g_assert_null (st);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "flipped.pth"));
  g_assert_nonnull (strstr (error->message, "CRC-32"));
  g_remove (bad);
  g_rmdir (dir);
}

/* A key the pickle sets twice keeps its last value, as Python's dict does. */
static void
test_duplicate_key (void)
{
  g_autofree char *path = golden ("duplicate-key.pth");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_pth_load (path, &error);
  g_autofree float *v = NULL;
  const CleaveSafeTensor *t;

  g_assert_no_error (error);
  g_assert_cmpuint (st->tensors->len, ==, 1);
  t = cleave_safetensors_find (st, "fc.weight");
  g_assert_cmpint (t->ndim, ==, 1);
  g_assert_cmpint (t->shape[0], ==, 3);
  v = cleave_safe_tensor_to_f32 (t, 3, path, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 3; i++)   /* the storage holds 0, 1, ..., 5; the view starts at 3 */
    g_assert_cmpfloat (v[i], ==, 3 + i);
}

/* Every truncation of a zip and of a legacy checkpoint is a clean error that
 * names the file. */
static void
test_truncated (void)
{
  static const char *const files[] = { "weak-legacy.pth", "weak-state_dict.pth" };
  for (gsize f = 0; f < G_N_ELEMENTS (files); f++)
    {
      g_autoptr(GBytes) b = golden_bytes (files[f]);
      gsize size;
      const guint8 *data = g_bytes_get_data (b, &size);
      for (gsize n = 0; n < size; n++)
        {
          g_autoptr(GError) error = NULL;
          guint8 *copy = g_memdup2 (data, MAX (n, 1));   /* exactly n bytes, so ASan sees any overread */
          g_autoptr(CleaveSafetensors) st = cleave_pth_load_bytes (copy, n, files[f], &error);
          g_assert_null (st);
          g_assert_nonnull (error);
          g_assert_true (g_str_has_prefix (error->message, files[f]));
          g_free (copy);
        }
    }
}

static void
put32 (guint8 *p, guint32 v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (guint8) (v >> (8 * i));
}

static guint8 *
find_sig (guint8 *data, gsize size, const char *sig, gboolean last)
{
  guint8 *hit = NULL;
  for (gsize i = 0; i + 4 <= size; i++)
    if (memcmp (data + i, sig, 4) == 0)
      {
        hit = data + i;
        if (!last)
          break;
      }
  return hit;
}

static void
assert_bytes_refused (const guint8 *data, gsize size, const char *detail)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_pth_load_bytes (data, size, "patched.pth", &error);
  g_assert_null (st);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_true (g_str_has_prefix (error->message, "patched.pth: "));
  if (strstr (error->message, detail) == NULL)
    g_error ("'%s' does not say '%s'", error->message, detail);
}

/* Wrong offsets in the zip structures are named. */
static void
test_wrong_offsets (void)
{
  g_autoptr(GBytes) b = golden_bytes ("weak-state_dict.pth");
  gsize size;
  g_autofree guint8 *data = g_memdup2 (g_bytes_get_data (b, &size), g_bytes_get_size (b));
  guint8 *central = find_sig (data, size, "PK\1\2", FALSE);
  guint8 *end64 = find_sig (data, size, "PK\6\6", TRUE);
  guint8 saved[8];

  g_assert_nonnull (central);
  g_assert_nonnull (end64);
  memcpy (saved, central + 42, 4);
  put32 (central + 42, (guint32) size - 10);   /* the first entry's local header */
  assert_bytes_refused (data, size, "zip entry 'weak-state_dict/data.pkl': local header offset");
  memcpy (central + 42, saved, 4);

  memcpy (saved, end64 + 48, 8);
  put32 (end64 + 48, (guint32) size);   /* the central directory's offset */
  assert_bytes_refused (data, size, "zip: central directory (offset");
  memcpy (end64 + 48, saved, 8);

  memcpy (saved, central + 10, 2);
  central[10] = 8;   /* deflate */
  assert_bytes_refused (data, size, "is compressed (method 8)");
  memcpy (central + 10, saved, 2);

  {
    g_autoptr(GError) error = NULL;
    g_autoptr(CleaveSafetensors) st = cleave_pth_load_bytes (data, size, "restored.pth", &error);
    g_assert_no_error (error);
    g_assert_nonnull (cleave_safetensors_find (st, "fc_4.weight"));
  }
}

/* Random byte changes never crash the reader: it either reads the file or
 * says why not (run under ASan by dev.sh test). */
static void
test_mutations (void)
{
  static const char *const files[] = { "weak-legacy.pth", "evil-os-system.pth", "bad-stride.pth" };
  g_autoptr(GRand) rand = g_rand_new_with_seed (19);
  int failed = 0, read = 0;

  for (gsize f = 0; f < G_N_ELEMENTS (files); f++)
    {
      g_autoptr(GBytes) b = golden_bytes (files[f]);
      gsize size = g_bytes_get_size (b);
      for (int round = 0; round < 600; round++)
        {
          g_autofree guint8 *data = g_memdup2 (g_bytes_get_data (b, NULL), size);
          g_autoptr(GError) error = NULL;
          g_autoptr(CleaveSafetensors) st = NULL;
          int flips = g_rand_int_range (rand, 1, 4);
          for (int k = 0; k < flips; k++)
            data[g_rand_int_range (rand, 0, (gint32) size)] ^= (guint8) g_rand_int_range (rand, 1, 256);
          st = cleave_pth_load_bytes (data, size, files[f], &error);
          g_assert_true ((st == NULL) != (error == NULL));
          if (st)
            read++;
          else
            {
              g_assert_true (g_str_has_prefix (error->message, files[f]));
              failed++;
            }
        }
    }
  g_test_message ("%d mutated files read, %d refused", read, failed);
  g_assert_cmpint (failed, >, 0);
}

/* Without an architecture a checkpoint is refused with a pointer to --arch. */
static void
test_needs_arch (void)
{
  g_autofree char *path = golden ("simcnn.pth");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) m = cleave_model_load (path, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "--arch"));
  g_clear_error (&error);
  /* Readers of other Cleave files (module sets, compositions) say what it is too. */
  g_assert_null (cleave_safetensors_load (path, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "a PyTorch checkpoint (torch.save), not safetensors"));
  g_assert_false (cleave_pth_detect ((const guint8 *) "\x08\0\0\0\0\0\0\0{}", 10));
}

int
main (int argc, char **argv)
{
  int ret;

  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("cleave-test-pth-XXXXXX", NULL);
  g_test_add_func ("/pth/crc-checked", test_crc_checked);
  g_test_add_func ("/pth/simcnn-matches-pytorch", test_simcnn);
  g_test_add_func ("/pth/containers", test_containers);
  g_test_add_func ("/pth/mixed-dtypes", test_mixed_dtypes);
  g_test_add_func ("/pth/cnnsplitter-names", test_cnnsplitter);
  g_test_add_func ("/pth/json-architecture", test_json_arch);
  g_test_add_func ("/pth/refuses-globals", test_refuses_globals);
  g_test_add_func ("/pth/bad-views", test_bad_views);
  g_test_add_func ("/pth/duplicate-key", test_duplicate_key);
  g_test_add_func ("/pth/truncated", test_truncated);
  g_test_add_func ("/pth/wrong-offsets", test_wrong_offsets);
  g_test_add_func ("/pth/mutations", test_mutations);
  g_test_add_func ("/pth/needs-arch", test_needs_arch);
  ret = g_test_run ();
  {
    g_autofree char *json = g_build_filename (tmpdir, "weak.json", NULL);
    g_remove (json);
    g_rmdir (tmpdir);
  }
  g_free (tmpdir);
  return ret;
}
