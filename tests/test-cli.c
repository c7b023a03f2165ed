/* test-cli.c: cleave-cli end to end on a small synthetic IDX dataset —
 * train, info, eval, split (grad and ga), modules, compose, patch, compare,
 * export, a PyTorch checkpoint with --arch — and the bad inputs a user hits (missing, truncated and foreign
 * files, bad options): a clear message, exit status 1, nothing half-written. */
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <gio/gio.h>
#include <fcntl.h>
#include <locale.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "cleave-safetensors.h"

#include "cleave-safetensors.h"

static char *tmpdir;
static char *data_dir;

static void
put_be32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

/* Three classes of 28×28 images: a bright 8×8 square at a class-specific
 * place, plus noise. Learnable in a few steps. */
static void
write_idx (const char *prefix, int n, guint32 seed)
{
  gsize isize = 16 + (gsize) n * 784, lsize = 8 + n;
  g_autofree guint8 *img = g_malloc0 (isize), *lab = g_malloc0 (lsize);
  g_autofree char *ip = g_strdup_printf ("%s/%s-images-idx3-ubyte", data_dir, prefix);
  g_autofree char *lp = g_strdup_printf ("%s/%s-labels-idx1-ubyte", data_dir, prefix);
  GRand *r = g_rand_new_with_seed (seed);

  put_be32 (img, 0x803);
  put_be32 (img + 4, n);
  put_be32 (img + 8, 28);
  put_be32 (img + 12, 28);
  put_be32 (lab, 0x801);
  put_be32 (lab + 4, n);
  for (int i = 0; i < n; i++)
    {
      int cls = i % 3, x0 = 2 + cls * 9, y0 = 2 + cls * 8;
      guint8 *p = img + 16 + (gsize) i * 784;
      lab[8 + i] = cls;
      for (int k = 0; k < 784; k++)
        p[k] = g_rand_int_range (r, 0, 60);
      for (int y = y0; y < y0 + 8; y++)
        for (int x = x0; x < x0 + 8; x++)
          p[y * 28 + x] = 200 + g_rand_int_range (r, 0, 55);
    }
  g_rand_free (r);
  g_assert_true (g_file_set_contents (ip, (char *) img, isize, NULL));
  g_assert_true (g_file_set_contents (lp, (char *) lab, lsize, NULL));
}

/* Runs cleave-cli; returns its exit status, stdout and stderr. */
static int
cli (char **out, char **err, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  const char *exe = g_getenv ("CLEAVE_CLI");
  g_autoptr(GError) error = NULL;
  char *o = NULL, *e = NULL;
  int status = 0;
  va_list ap;

  g_assert_nonnull (exe);
  g_ptr_array_add (argv, (char *) exe);
  va_start (ap, err);
  for (const char *a = va_arg (ap, const char *); a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (char *) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (tmpdir, (char **) argv->pdata, NULL, 0, NULL, NULL, &o, &e, &status, &error));
  g_assert_no_error (error);
  if (g_test_verbose ())
    g_printerr ("%s%s", o, e);
  if (out)
    *out = o;
  else
    g_free (o);
  if (err)
    *err = e;
  else
    g_free (e);
  return WIFEXITED (status) ? WEXITSTATUS (status) : 128;
}

static char *
path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

static void
assert_contains (const char *haystack, const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("expected '%s' in:\n%s", needle, haystack);
}

static void
test_train_info_eval (void)
{
  g_autofree char *model = path ("m.safetensors"), *out = NULL, *err = NULL;

  g_assert_cmpint (cli (&out, &err, "train", "--arch", "weak", "--dataset", data_dir, "--epochs", "3",
                        "--batch", "32", "--lr", "0.05", "--no-augment", "-o", model, NULL), ==, 0);
  assert_contains (out, "test accuracy");
  g_assert_true (g_file_test (model, G_FILE_TEST_IS_REGULAR));
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "info", model, NULL), ==, 0);
  assert_contains (out, "conv_0.0");
  assert_contains (out, "kernels 48");
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "eval", model, data_dir, NULL), ==, 0);
  assert_contains (out, "accuracy");
  /* The synthetic task is easy: a trained model must get most of it. */
  {
    const char *a = strstr (out, "accuracy ");
    g_assert_nonnull (a);
    g_assert_cmpfloat (g_ascii_strtod (a + 9, NULL), >, 80.0);
  }
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "eval", model, data_dir, "--json", NULL), ==, 0);
  assert_contains (out, "\"confusion\"");
}

static void
test_split_compose_patch (void)
{
  g_autofree char *model = path ("m.safetensors"), *mods = path ("m.modules"), *ga = path ("m-ga.modules");
  g_autofree char *comp = path ("c.safetensors"), *patched = path ("p.safetensors"), *onnx = path ("p.onnx");
  g_autofree char *report = path ("report"), *spec = NULL, *pspec = NULL, *out = NULL, *png = NULL;

  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  g_assert_cmpint (cli (&out, NULL, "split", "--method", "grad", model, data_dir, "-o", mods, "--report", report,
                        "--head-epochs", "1", "--rounds", "1", "--mask-epochs", "1", "--head-only-epochs", "1",
                        "--train-images", "96", "--val-images", "60", "--batch", "32", NULL), ==, 0);
  assert_contains (out, "mean KRR");
  assert_contains (out, "heads refitted together on");   /* the final head refit, on by default */
  g_assert_true (g_file_test (mods, G_FILE_TEST_IS_REGULAR));
  png = g_build_filename (report, "report.json", NULL);
  g_assert_true (g_file_test (png, G_FILE_TEST_IS_REGULAR));
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "split", "--method", "ga", model, data_dir, "-o", ga, "--population", "6",
                        "--generations", "2", "--parents", "3", "--elites", "1", "--val-images", "60", NULL), ==, 0);
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "modules", mods, NULL), ==, 0);
  assert_contains (out, "KRR");
  g_clear_pointer (&out, g_free);
  spec = g_strconcat (mods, ":0,2", NULL);
  g_assert_cmpint (cli (&out, NULL, "compose", "-o", comp, spec, NULL), ==, 0);
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "info", comp, NULL), ==, 0);
  g_clear_pointer (&out, g_free);
  pspec = g_strconcat (ga, ":1", NULL);
  g_assert_cmpint (cli (&out, NULL, "patch", model, pspec, "-o", patched, NULL), ==, 0);
  g_clear_pointer (&out, g_free);
  g_assert_cmpint (cli (&out, NULL, "eval", model, data_dir, "--compare", patched, NULL), ==, 0);
  assert_contains (out, "accuracy");
  g_clear_pointer (&out, g_free);
  /* The comparison as JSON, also under a locale that writes 0,5 (when one
   * is installed): the same numbers, still JSON. */
  for (int loc = 0; loc < 2; loc++)
    {
      g_autoptr(JsonParser) p = json_parser_new ();
      g_autoptr(GError) error = NULL;
      JsonObject *o;
      JsonArray *t;
      if (loc == 1 && setlocale (LC_NUMERIC, "de_DE.UTF-8") == NULL)
        {
          g_test_message ("no de_DE locale: the comparison JSON is checked in the C locale only");
          break;
        }
      if (loc == 1)
        {
          setlocale (LC_NUMERIC, "C");
          g_setenv ("LC_ALL", "de_DE.UTF-8", TRUE);
        }
      g_assert_cmpint (cli (&out, NULL, "eval", model, data_dir, "--compare", patched, "--json", NULL), ==, 0);
      g_unsetenv ("LC_ALL");
      g_assert_true (json_parser_load_from_data (p, out, -1, &error));
      g_assert_no_error (error);
      o = json_node_get_object (json_parser_get_root (p));
      g_assert_cmpfloat (json_object_get_double_member (json_object_get_object_member (o, "a"), "accuracy"), >, 0.5);
      t = json_object_get_array_member (o, "targets");
      g_assert_cmpuint (json_array_get_length (t), ==, 1);
      g_assert_cmpuint (json_array_get_length (json_object_get_array_member (json_array_get_object_element (t, 0), "f1")), ==, 2);
      g_assert_cmpuint (json_array_get_length (json_object_get_array_member (o, "other_accuracy")), ==, 2);
      g_clear_pointer (&out, g_free);
    }
  g_assert_cmpint (cli (&out, NULL, "export", "--onnx", patched, "-o", onnx, NULL), ==, 0);
  g_assert_true (g_file_test (onnx, G_FILE_TEST_IS_REGULAR));
  g_clear_pointer (&out, g_free);
  /* Exports open again with the same accuracy: the patched model and the model */
  {
    g_autofree char *monnx = path ("m.onnx"), *a = NULL, *b = NULL;
    const char *pairs[2][2] = { { patched, onnx }, { model, monnx } };
    g_assert_cmpint (cli (&out, NULL, "export", "--onnx", model, "-o", monnx, NULL), ==, 0);
    g_clear_pointer (&out, g_free);
    for (int k = 0; k < 2; k++)
      {
        g_assert_cmpint (cli (&a, NULL, "eval", pairs[k][0], data_dir, NULL), ==, 0);
        g_assert_cmpint (cli (&b, NULL, "eval", pairs[k][1], data_dir, NULL), ==, 0);
        const char *pa = strstr (a, "accuracy "), *pb = strstr (b, "accuracy ");
        g_assert_nonnull (pa);
        g_assert_nonnull (pb);
        g_assert_cmpfloat (g_ascii_strtod (pa + 9, NULL), ==, g_ascii_strtod (pb + 9, NULL));
        g_clear_pointer (&a, g_free);
        g_clear_pointer (&b, g_free);
      }
    /* a split without the test run leaves the test columns out */
    g_autofree char *omods = path ("o.modules");
    g_assert_cmpint (cli (&out, NULL, "split", "--method", "grad", monnx, data_dir, "-o", omods, "--no-test",
                          "--head-epochs", "1", "--rounds", "1", "--mask-epochs", "1", "--head-only-epochs", "1",
                          "--train-images", "64", "--val-images", "30", "--batch", "32", "--refit-images", "0", NULL), ==, 0);
    assert_contains (out, "val F1");
    g_assert_null (strstr (out, "test F1"));
    g_assert_null (strstr (out, "nan"));
  }
}

/* Whether member @name holds a wall time: "seconds", "images_per_s" and
 * their prefixed forms ("train_seconds"). */
static gboolean
is_time_member (const char *name)
{
  return g_str_has_suffix (name, "seconds") || g_str_has_suffix (name, "images_per_s");
}

/* Removes the members that hold wall times, wherever they are under @node. */
static void
drop_times (JsonNode *node)
{
  if (JSON_NODE_HOLDS_OBJECT (node))
    {
      JsonObject *o = json_node_get_object (node);
      g_autoptr(GList) members = json_object_get_members (o);

      for (GList *m = members; m; m = m->next)
        if (is_time_member (m->data))
          json_object_remove_member (o, m->data);
        else
          drop_times (json_object_get_member (o, m->data));
    }
  else if (JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *a = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (a); i++)
        drop_times (json_array_get_element (a, i));
    }
}

/* @text without its wall times when it is JSON, else as it is. */
static char *
without_times (const char *text, int *n_json)
{
  g_autoptr(JsonParser) p = json_parser_new ();

  if (!json_parser_load_from_data (p, text, -1, NULL) || json_parser_get_root (p) == NULL)
    return g_strdup (text);
  drop_times (json_parser_get_root (p));
  (*n_json)++;
  return json_to_string (json_parser_get_root (p), FALSE);
}

/* Two safetensors files (models, module sets) hold the same: every tensor
 * byte for byte and every metadata entry equal, wall times aside. */
static void
assert_same_file (const char *a, const char *b)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) sa = cleave_safetensors_load (a, &error);
  g_autoptr(CleaveSafetensors) sb = NULL;
  GHashTableIter it;
  gpointer key, value;
  int n_json = 0;

  g_assert_no_error (error);
  sb = cleave_safetensors_load (b, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (sa->tensors->len, >, 0);
  g_assert_cmpuint (sa->tensors->len, ==, sb->tensors->len);
  for (guint i = 0; i < sa->tensors->len; i++)
    {
      const CleaveSafeTensor *ta = sa->tensors->pdata[i], *tb = sb->tensors->pdata[i];
      g_assert_cmpstr (ta->name, ==, tb->name);
      g_assert_cmpstr (ta->dtype, ==, tb->dtype);
      g_assert_cmpuint (ta->nbytes, ==, tb->nbytes);
      for (gsize k = 0; k < ta->nbytes; k++)
        if (ta->data[k] != tb->data[k])
          g_error ("%s and %s: tensor '%s' differs from byte %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT,
                   a, b, ta->name, k, ta->nbytes);
    }
  g_assert_cmpuint (g_hash_table_size (sa->metadata), ==, g_hash_table_size (sb->metadata));
  g_hash_table_iter_init (&it, sa->metadata);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      const char *other = g_hash_table_lookup (sb->metadata, key);
      g_autofree char *va = NULL, *vb = NULL;

      g_assert_nonnull (other);
      va = without_times (value, &n_json);
      vb = without_times (other, &n_json);
      if (strcmp (va, vb) != 0)
        g_error ("%s and %s: metadata '%s' differs:\n%s\n%s", a, b, (const char *) key, va, vb);
    }
  g_assert_cmpint (n_json, >, 0);
}

/* Runs cleave-cli with @args plus "-o det.out" in tmpdir, then renames
 * det.out to @dest: both runs see the same command line (it is recorded in
 * the file). */
static void
run_to (const char *dest, const char *const *args)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *out = path ("det.out");
  const char *exe = g_getenv ("CLEAVE_CLI");
  g_autoptr(GError) error = NULL;
  g_autofree char *o = NULL, *e = NULL;
  int status = 0;

  g_ptr_array_add (argv, (char *) exe);
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, (char *) "-o");
  g_ptr_array_add (argv, (char *) "det.out");
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (tmpdir, (char **) argv->pdata, NULL, 0, NULL, NULL, &o, &e, &status, &error));
  g_assert_no_error (error);
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    g_error ("cleave-cli %s failed:\n%s%s", args[0], o, e);
  g_assert_cmpint (g_rename (out, dest), ==, 0);
}

/* The same command twice (same inputs, seed, device and thread count)
 * writes the same model and the same module sets, bit for bit. Two threads
 * and batches of 128: a batch's weight gradients are summed over image
 * blocks that either thread may have run. */
static void
test_deterministic (void)
{
  const char *train[] = { "train", "--arch", "weak", "--dataset", data_dir, "--epochs", "2", "--batch", "128",
                          "--lr", "0.05", "--seed", "5", "--device", "cpu", NULL };
  const char *grad[] = { "split", "--method", "grad", "det-model.safetensors", data_dir, "--device", "cpu",
                         "--seed", "7", "--head-epochs", "1", "--rounds", "1", "--mask-epochs", "1",
                         "--head-only-epochs", "1", "--train-images", "384", "--val-images", "60",
                         "--batch", "128", NULL };
  const char *ga[] = { "split", "--method", "ga", "det-model.safetensors", data_dir, "--device", "cpu",
                       "--seed", "7", "--population", "6", "--generations", "2", "--parents", "3",
                       "--elites", "1", "--val-images", "60", NULL };
  g_autofree char *model = path ("det-model.safetensors"), *model2 = path ("det-model-2.safetensors");
  g_autofree char *g1 = path ("det-1.modules"), *g2 = path ("det-2.modules");
  g_autofree char *ga1 = path ("det-ga-1.modules"), *ga2 = path ("det-ga-2.modules");
  g_autofree char *threads = g_strdup (g_getenv ("CLEAVE_CPU_THREADS"));

  g_setenv ("CLEAVE_CPU_THREADS", "2", TRUE);
  run_to (model, train);
  run_to (model2, train);
  assert_same_file (model, model2);
  run_to (g1, grad);
  run_to (g2, grad);
  assert_same_file (g1, g2);
  run_to (ga1, ga);
  run_to (ga2, ga);
  assert_same_file (ga1, ga2);
  if (threads)
    g_setenv ("CLEAVE_CPU_THREADS", threads, TRUE);
  else
    g_unsetenv ("CLEAVE_CPU_THREADS");
}

/* Truncated, foreign and missing files; bad options. */
static void
test_bad_input (void)
{
  g_autofree char *model = path ("m.safetensors"), *trunc = path ("trunc.safetensors");
  g_autofree char *text = path ("notes.txt"), *dest = path ("never.safetensors");
  g_autofree char *data = NULL, *err = NULL;
  gsize len;

  g_assert_true (g_file_set_contents (text, "hello, not a model\n", -1, NULL));
  g_assert_cmpint (cli (NULL, &err, "info", text, NULL), ==, 1);
  assert_contains (err, "notes.txt");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "info", "/nonexistent/model.safetensors", NULL), ==, 1);
  assert_contains (err, "model.safetensors");
  g_clear_pointer (&err, g_free);
  if (g_file_get_contents (model, &data, &len, NULL))
    {
      g_assert_true (g_file_set_contents (trunc, data, len / 2, NULL));
      g_assert_cmpint (cli (NULL, &err, "eval", trunc, data_dir, NULL), ==, 1);
      assert_contains (err, "trunc.safetensors");
      g_clear_pointer (&err, g_free);
      /* A failing split must not leave its output behind. */
      g_assert_cmpint (cli (NULL, &err, "split", trunc, data_dir, "-o", dest, NULL), ==, 1);
      g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
      g_clear_pointer (&err, g_free);
    }
  g_assert_cmpint (cli (NULL, &err, "eval", model, "/nonexistent-dataset", NULL), ==, 1);
  assert_contains (err, "nonexistent-dataset");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "train", "--arch", "nosuch", "--dataset", data_dir, "-o", dest, NULL), ==, 1);
  assert_contains (err, "nosuch");
  g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "train", "--device", "no-such-device", "--arch", "weak", "--dataset", data_dir,
                        "-o", dest, NULL), ==, 1);
  assert_contains (err, "no-such-device");
  g_clear_pointer (&err, g_free);
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "train", "--epochs", "0", "--dataset", data_dir, "-o", dest, NULL), ==, 2);
  assert_contains (err, "--epochs must be at least 1");
  g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "split", "--refit-images", "-1", "/nonexistent.safetensors", data_dir,
                        "-o", dest, NULL), ==, 1);
  assert_contains (err, "--refit-images");
  g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "frobnicate", NULL), ==, 2);
  assert_contains (err, "unknown command");
  g_clear_pointer (&err, g_free);
  /* a backend setting with a bad value is refused, not replaced by the default */
  g_assert_cmpint (cli (NULL, &err, "eval", "--conv-algo", "fastest", model, data_dir, NULL), ==, 1);
  assert_contains (err, "conv-algo: 'fastest' is not one of auto, im2col, winograd");
}

/* A PyTorch checkpoint opens with --arch; without one, or naming a global
 * other than a state_dict's, it is refused with a clear message. */
static void
test_pth (void)
{
  g_autofree char *pth = g_test_build_filename (G_TEST_DIST, "reference", "golden", "pth", "simcnn.pth", NULL);
  g_autofree char *evil = g_test_build_filename (G_TEST_DIST, "reference", "golden", "pth", "evil-os-system.pth", NULL);
  g_autofree char *out = NULL, *err = NULL;

  g_assert_cmpint (cli (&out, &err, "info", pth, "--arch", "simcnn:w=0.015625", NULL), ==, 0);
  assert_contains (out, "conv_12.0");
  assert_contains (out, "fc_15");
  g_clear_pointer (&out, g_free);
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "info", pth, NULL), ==, 1);
  assert_contains (err, "simcnn.pth: format: a PyTorch checkpoint holds weights only: name its architecture with --arch");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "info", evil, "--arch", "simcnn", NULL), ==, 1);
  assert_contains (err, "evil-os-system.pth: archive/data.pkl offset 190: global 'os.system' refused");
}

/* Class lists with an empty element ("1,,2", "0,", ",2") get a clear error,
 * in every command that takes one. */
static void
test_class_list_empty_element (void)
{
  g_autofree char *dest = path ("never.safetensors"), *mods = path ("none.modules");
  g_autofree char *m12 = g_strconcat (mods, ":1,,2", NULL), *m2 = g_strconcat (mods, ":,2", NULL);
  g_autofree char *mix = g_strconcat (data_dir, ":1,", NULL), *model = path ("m.safetensors");
  const char *const cases[][8] = {
    { "train", "--classes", "0,", "--dataset", data_dir, "-o", dest, NULL },
    { "compose", "-o", dest, m12, NULL },
    { "patch", model, m2, "-o", dest, NULL },
    { "eval", model, "--mix", mix, NULL },
  };
  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *err = NULL;
      g_assert_cmpint (cli (NULL, &err, cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4],
                            cases[i][5], cases[i][6], NULL), !=, 0);
      assert_contains (err, "empty element");
      g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
    }
}

static void
assert_same_contents (const char *file, const char *before, gsize len)
{
  g_autofree char *now = NULL;
  gsize now_len = 0;
  g_assert_true (g_file_get_contents (file, &now, &now_len, NULL));
  g_assert_cmpmem (now, now_len, before, len);
}

/* No command writes over one of its own inputs, also through a symlink. */
static void
test_output_not_an_input (void)
{
  g_autofree char *model = path ("m.safetensors"), *mods = path ("m.modules"), *link = path ("link.safetensors");
  g_autofree char *spec = g_strconcat (mods, ":0,2", NULL), *mdata = NULL, *sdata = NULL;
  gsize mlen, slen;

  if (!g_file_get_contents (model, &mdata, &mlen, NULL) || !g_file_get_contents (mods, &sdata, &slen, NULL))
    {
      g_test_skip ("needs the files of /cli/train-info-eval and /cli/split-compose-patch-export");
      return;
    }
  g_assert_cmpint (symlink (model, link), ==, 0);
  {
    const char *const cases[][7] = {
      { "compose", "-o", mods, spec, NULL },
      { "export", "--onnx", model, "-o", model, NULL },
      { "export", "--onnx", model, "-o", link, NULL },
      { "patch", model, spec, "-o", model, NULL },
      { "split", model, data_dir, "-o", model, NULL },
      { "train", "--arch", "weak", "--resume", model, "--dataset", data_dir },
    };
    for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
      {
        g_autofree char *err = NULL;
        g_assert_cmpint (cli (NULL, &err, cases[i][0], cases[i][1], cases[i][2], cases[i][3], cases[i][4],
                              cases[i][5], cases[i][6], i == 5 ? "-o" : NULL, link, NULL), ==, 1);
        assert_contains (err, "is also an input");
      }
  }
  assert_same_contents (model, mdata, mlen);
  assert_same_contents (mods, sdata, slen);
  g_unlink (link);
}

/* A second writer of the same output is refused while the first holds its lock. */
static void
test_concurrent_writer_refused (void)
{
  g_autofree char *model = path ("m.safetensors"), *onnx = path ("locked.onnx"), *lock = path (".locked.onnx.lock");
  g_autofree char *err = NULL;
  int fd;

  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  fd = open (lock, O_RDWR | O_CREAT, 0644);
  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (flock (fd, LOCK_EX), ==, 0);
  g_assert_cmpint (cli (NULL, &err, "export", "--onnx", model, "-o", onnx, NULL), ==, 1);
  assert_contains (err, "another cleave-cli is writing");
  g_assert_false (g_file_test (onnx, G_FILE_TEST_EXISTS));
  close (fd);
  /* released: the export runs, and takes its lock file away with it */
  g_assert_cmpint (cli (NULL, NULL, "export", "--onnx", model, "-o", onnx, NULL), ==, 0);
  g_assert_true (g_file_test (onnx, G_FILE_TEST_EXISTS));
  g_assert_false (g_file_test (lock, G_FILE_TEST_EXISTS));
}

/* The hidden temporary a killed writer left beside an output is removed by
 * the next command that writes that output. */
static void
test_stale_temps_removed (void)
{
  g_autofree char *model = path ("m.safetensors"), *onnx = path ("stale.onnx");
  g_autofree char *temp = path (".stale.onnx.tmp-Zz9Yy8"), *err = NULL;

  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  g_assert_true (g_file_set_contents (temp, "half an onnx", -1, NULL));
  g_assert_cmpint (cli (NULL, &err, "export", "--onnx", model, "-o", onnx, NULL), ==, 0);
  assert_contains (err, "removed 1 temporary file");
  g_assert_false (g_file_test (temp, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (onnx, G_FILE_TEST_EXISTS));
}

/* Ctrl-C during a split keeps an existing output as it was and writes the
 * result so far to OUTPUT.partial. */
static void
test_interrupted_split_writes_partial (void)
{
  g_autofree char *model = path ("m.safetensors"), *out = path ("int.modules"), *partial = path ("int.modules.partial");
  g_autofree char *rest = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GSubprocess) proc = NULL;
  g_autoptr(GDataInputStream) in = NULL;
  gboolean signalled = FALSE;
  char *line;

  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  g_assert_true (g_file_set_contents (out, "the user's old modules", -1, NULL));
  proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDERR_PIPE | G_SUBPROCESS_FLAGS_STDOUT_SILENCE, &error,
                           g_getenv ("CLEAVE_CLI"), "split", model, data_dir, "-o", out, "--head-epochs", "400",
                           "--batch", "32", NULL);
  g_assert_no_error (error);
  in = g_data_input_stream_new (g_subprocess_get_stderr_pipe (proc));
  while ((line = g_data_input_stream_read_line (in, NULL, NULL, NULL)) != NULL)
    {
      if (!signalled && strstr (line, "heads 3/"))
        {
          g_subprocess_send_signal (proc, SIGINT);
          signalled = TRUE;
        }
      if (strstr (line, "interrupted"))
        rest = g_strdup (line);
      g_free (line);
    }
  g_assert_true (g_subprocess_wait (proc, NULL, &error));
  g_assert_true (signalled);
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 130);
  g_assert_nonnull (rest);
  assert_contains (rest, "int.modules.partial");
  assert_same_contents (out, "the user's old modules", strlen ("the user's old modules"));
  g_assert_cmpint (cli (NULL, NULL, "modules", partial, NULL), ==, 0);
}

/* Out-of-range, non-finite and negative option values are refused naming the
 * option, before anything is written. */
static void
test_options_validated (void)
{
  g_autofree char *dest = path ("never.safetensors"), *model = path ("m.safetensors");
  const char *const train_cases[][2] = {
    { "--val", "-1" }, { "--val", "1.5" }, { "--dirichlet", "0" }, { "--dirichlet", "nan" },
    { "--max-train", "-1" }, { "--lr", "nan" }, { "--lr", "1e300" }, { "--min-per-class", "-3" },
  };
  const char *const split_cases[][2] = {
    { "--alpha", "-0.1" }, { "--max-loss", "-1" }, { "--max-loss", "inf" }, { "--val", "0" }, { "--lr-mask", "nan" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (train_cases); i++)
    {
      g_autofree char *err = NULL;
      g_assert_cmpint (cli (NULL, &err, "train", "--arch", "weak", "--dataset", data_dir, "--epochs", "1",
                            train_cases[i][0], train_cases[i][1], "-o", dest, NULL), ==, 1);
      assert_contains (err, train_cases[i][0] + 2);
      g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
    }
  for (gsize i = 0; i < G_N_ELEMENTS (split_cases); i++)
    {
      g_autofree char *err = NULL;
      g_assert_cmpint (cli (NULL, &err, "split", model, data_dir, split_cases[i][0], split_cases[i][1],
                            "-o", dest, NULL), ==, 1);
      assert_contains (err, split_cases[i][0] + 2);
      g_assert_false (g_file_test (dest, G_FILE_TEST_EXISTS));
    }
}

/* A batch beyond the dataset is clamped to it; an absurd one is refused. */
static void
test_batch_clamped (void)
{
  g_autofree char *dest = path ("batch.safetensors"), *model = path ("m.safetensors"), *mods = path ("batch.modules");
  g_autofree char *err = NULL;

  g_assert_cmpint (cli (NULL, &err, "train", "--arch", "weak", "--dataset", data_dir, "--epochs", "1", "--batch", "60000",
                        "--no-augment", "-o", dest, NULL), ==, 0);
  assert_contains (err, "batch 720 (all the training images)");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "train", "--arch", "weak", "--dataset", data_dir, "--batch", "2147483647",
                        "-o", dest, NULL), ==, 1);
  assert_contains (err, "option batch");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "split", model, data_dir, "--batch", "2147483647", "-o", mods, NULL), ==, 1);
  assert_contains (err, "--batch must be a whole number from 1 to 65536");
  g_assert_false (g_file_test (mods, G_FILE_TEST_EXISTS));
}

/* eval warns when a model's outputs are not finite (classifier weights near
 * FLT_MAX: finite, so the file loads, but every logit overflows). */
static void
test_eval_warns_non_finite (void)
{
  g_autofree char *model = path ("m.safetensors"), *huge = path ("huge.safetensors"), *err = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  const CleaveSafeTensor *t;

  if (!g_file_test (model, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("needs the model from /cli/train-info-eval");
      return;
    }
  st = cleave_safetensors_load (model, &error);
  g_assert_no_error (error);
  t = cleave_safetensors_find (st, "fc_4.weight");
  g_assert_nonnull (t);
  for (gsize k = 0; k < t->nbytes / 4; k++)
    memcpy (t->data + 4 * k, &(float) { 3e38f }, 4);
  g_assert_true (cleave_safetensors_save (st, huge, &error));
  g_assert_cmpint (cli (NULL, &err, "eval", huge, data_dir, NULL), ==, 0);
  assert_contains (err, "non-finite outputs");
  g_clear_pointer (&err, g_free);
  g_assert_cmpint (cli (NULL, &err, "eval", model, data_dir, NULL), ==, 0);
  g_assert_null (strstr (err, "non-finite"));
}

static void
remove_tree (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      if (g_file_test (p, G_FILE_TEST_IS_DIR))
        remove_tree (p);
      else
        g_unlink (p);
    }
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  int status;
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("cleave-cli-XXXXXX", NULL);
  data_dir = g_build_filename (tmpdir, "shapes", NULL);
  g_mkdir (data_dir, 0755);
  write_idx ("train", 900, 1);
  write_idx ("t10k", 300, 2);
  g_test_add_func ("/cli/train-info-eval", test_train_info_eval);
  g_test_add_func ("/cli/split-compose-patch-export", test_split_compose_patch);
  g_test_add_func ("/cli/deterministic", test_deterministic);
  g_test_add_func ("/cli/bad-input", test_bad_input);
  g_test_add_func ("/cli/pth", test_pth);
  g_test_add_func ("/cli/class-list-empty-element", test_class_list_empty_element);
  g_test_add_func ("/cli/output-is-never-an-input", test_output_not_an_input);
  g_test_add_func ("/cli/concurrent-writer-refused", test_concurrent_writer_refused);
  g_test_add_func ("/cli/interrupted-split-writes-partial", test_interrupted_split_writes_partial);
  g_test_add_func ("/cli/stale-temps-removed", test_stale_temps_removed);
  g_test_add_func ("/cli/options-validated", test_options_validated);
  g_test_add_func ("/cli/batch-clamped-to-dataset", test_batch_clamped);
  g_test_add_func ("/cli/eval-warns-on-non-finite-outputs", test_eval_warns_non_finite);
  status = g_test_run ();
  remove_tree (tmpdir);
  return status;
}
