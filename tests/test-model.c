/* test-model.c: model files, architecture presets, and PyTorch state_dicts of
 * the paper's architectures opened with an architecture preset. */
#include "cleave-arch.h"
#include "cleave-device.h"
#include "cleave-error.h"
#include "cleave-model.h"
#include "cleave-net.h"
#include "cleave-safetensors.h"
#include "cleave-train.h"

#include "json-mutate.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

static char *tmpdir;

static char *
golden_path (const char *name)
{
  return g_test_build_filename (G_TEST_DIST, "reference", "golden", name, NULL);
}

/* The state_dict PyTorch saved opens with --arch and gives PyTorch's logits. */
static void
test_statedict (gconstpointer data)
{
  const char *name = data;
  g_autofree char *sd_name = g_strdup_printf ("statedict-%s.safetensors", name);
  g_autofree char *io_name = g_strdup_printf ("statedict-%s-io.safetensors", name);
  g_autofree char *sd = golden_path (sd_name), *io = golden_path (io_name);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (io, &error);
  g_autoptr(CleaveModel) m = NULL;
  g_autoptr(CleaveBackend) backend = cleave_backend_cpu_new ();
  g_autofree float *x = NULL, *want = NULL, *got = NULL;
  const char *arch, *input;
  int c, h, w, batch;
  CleaveNet *net;
  gsize n;

  g_assert_no_error (error);
  arch = cleave_safetensors_get_metadata (st, "arch");
  input = cleave_safetensors_get_metadata (st, "input");
  g_assert_cmpint (sscanf (input, "%dx%dx%d", &c, &h, &w), ==, 3);
  m = cleave_model_load_with_arch (sd, arch, c, h, w, 10, &error);
  g_assert_no_error (error);
  x = cleave_safe_tensor_to_f32 (cleave_safetensors_find (st, "x"), 0, io, &error);
  want = cleave_safe_tensor_to_f32 (cleave_safetensors_find (st, "logits"), 0, io, &error);
  g_assert_no_error (error);
  batch = (int) cleave_safetensors_find (st, "x")->shape[0];
  n = (gsize) batch * 10;
  net = cleave_net_new (m->graph, backend, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, batch, FALSE, &error));
  got = g_new (float, n);
  g_assert_true (cleave_net_download_output (net, got, &error));
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (got[i], want[i], 1e-4 + 1e-4 * fabs (want[i]));
  cleave_net_free (net);

  /* The wrong architecture is refused, naming a tensor. */
  g_clear_pointer (&m, cleave_model_free);
  m = cleave_model_load_with_arch (sd, g_str_equal (name, "simcnn") ? "rescnn:w=0.0625" : "simcnn:w=0.0625",
                                   c, h, w, 10, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "tensor '"));
}

static void
test_presets (void)
{
  static const struct { const char *spec; int c, h; int sites, kernels; } cases[] = {
    { "simcnn:w=0.125", 1, 28, 13, 528 },
    { "simcnn:w=1/8", 3, 32, 13, 528 },
    { "rescnn:w=0.125", 3, 32, 12, 536 },
    { "incecnn:w=0.125", 1, 28, 12, 400 },
    { "weak", 1, 28, 4, 48 },
    { "bench", 1, 28, 4, 192 },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CleaveGraph) g = cleave_arch_build (cases[i].spec, cases[i].c, cases[i].h, cases[i].h, 10, &error);
      int tied = 0;
      g_assert_no_error (error);
      g_assert_cmpint (cleave_graph_n_mask_sites (g), ==, cases[i].sites);
      g_assert_cmpint (cleave_graph_total_kernels (g), ==, cases[i].kernels);
      g_assert_cmpint (cleave_graph_n_outputs (g), ==, 10);
      for (int s = 0; s < cleave_graph_n_mask_sites (g); s++)
        tied += cleave_graph_mask_site (g, s)->tie != s;
      /* ResCNN: conv_3, conv_7, conv_11 share the mask of their block's input. */
      g_assert_cmpint (tied, ==, g_str_has_prefix (cases[i].spec, "rescnn") ? 3 : 0);
      g_assert_cmpint (cleave_graph_find_param (g, "conv_0.0.weight"), >=, 0);
      g_assert_cmpint (cleave_graph_find_param (g, "conv_0.1.running_var"), >=, 0);
    }
  {
    g_autoptr(GError) error = NULL;
    g_assert_null (cleave_arch_build ("vgg99", 1, 28, 28, 10, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    g_assert_null (cleave_arch_build ("simcnn:w=-1", 1, 28, 28, 10, &error));
    g_assert_nonnull (strstr (error->message, "width"));
  }
}

static CleaveModel *
small_model (void)
{
  g_autoptr(GError) error = NULL;
  const char *names[] = { "a", "b", "c", NULL };
  CleaveGraph *g = cleave_arch_build ("weak", 1, 12, 12, 3, &error);
  CleaveModel *m;
  g_assert_no_error (error);
  cleave_graph_init_params (g, 3);
  m = cleave_model_new (g, 3, names);
  m->mean[0] = 0.25f;
  m->std[0] = 0.5f;
  cleave_model_set_provenance (m, "command", "\"cleave-cli train …\"");
  return m;
}

static void
test_round_trip (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(CleaveModel) back = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "m.safetensors", NULL);

  g_assert_true (cleave_model_save (m, path, &error));
  g_assert_no_error (error);
  back = cleave_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (back->n_classes, ==, 3);
  g_assert_cmpstr (back->class_names[2], ==, "c");
  g_assert_cmpfloat (back->mean[0], ==, 0.25f);
  g_assert_cmpfloat (back->std[0], ==, 0.5f);
  g_assert_nonnull (back->sha256);
  g_assert_nonnull (strstr (back->provenance_json, "command"));
  g_assert_cmpint (cleave_graph_n_params (back->graph), ==, cleave_graph_n_params (m->graph));
  for (int i = 0; i < cleave_graph_n_params (m->graph); i++)
    {
      CleaveParam *a = cleave_graph_param (m->graph, i), *b = cleave_graph_param (back->graph, i);
      g_assert_cmpstr (a->name, ==, b->name);
      g_assert_cmpmem (a->data, cleave_param_numel (a) * 4, b->data, cleave_param_numel (b) * 4);
    }
}

/* Rewrites a saved model with one change and checks the error names the field. */
static void
expect_invalid (CleaveSafetensors *st, const char *file, const char *needle)
{
  g_autofree char *path = g_build_filename (tmpdir, file, NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) m = NULL;
  g_assert_true (cleave_safetensors_save (st, path, &error));
  m = cleave_model_load (path, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  if (strstr (error->message, file) == NULL || strstr (error->message, needle) == NULL)
    g_error ("error '%s' should name %s and %s", error->message, file, needle);
}

static void
test_malformed (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "good.safetensors", NULL);
  int shape[1] = { 3 };
  float junk[3] = { 0 };

  g_assert_true (cleave_model_save (m, path, &error));
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    g_hash_table_remove (st->metadata, "cleave.graph");
    expect_invalid (st, "nograph.safetensors", "cleave.graph");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    cleave_safetensors_set_metadata (st, "cleave.graph", "{\"input\":[1,12,12],\"nodes\":[{\"name\":\"x\",\"op\":\"warp\"}]}");
    expect_invalid (st, "badop.safetensors", "warp");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    cleave_safetensors_add_f32 (st, "conv_0.0.bias", 1, shape, junk);
    expect_invalid (st, "shape.safetensors", "conv_0.0.bias");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    for (guint i = 0; i < st->tensors->len; i++)
      if (g_str_equal (((CleaveSafeTensor *) st->tensors->pdata[i])->name, "fc_4.weight"))
        g_ptr_array_remove_index (st->tensors, i);
    expect_invalid (st, "missing.safetensors", "fc_4.weight");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    cleave_safetensors_add_f32 (st, "mystery.weight", 1, shape, junk);
    expect_invalid (st, "extra.safetensors", "mystery.weight");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    cleave_safetensors_set_metadata (st, "cleave.classes", "[\"only one\"]");
    expect_invalid (st, "classes.safetensors", "cleave.classes");
  }
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
    cleave_safetensors_set_metadata (st, "cleave.normalize", "{\"mean\": [0], \"std\": [0]}");
    expect_invalid (st, "norm.safetensors", "cleave.normalize");
  }
}

/* The graph JSON's sizes are checked (against limits, then against the file's
 * tensors) before parameters are allocated from them: two convolutions
 * claiming 2^20 kernels would need 40 TB. */
static void
test_param_size_checked (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "sizes.safetensors", NULL);
  static const char *const claims[] = { "1048576", "4096" };

  g_assert_true (cleave_model_save (m, path, &error));
  for (gsize i = 0; i < G_N_ELEMENTS (claims); i++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
      g_autoptr(GRegex) re = g_regex_new ("(\"out_channels\" *: *)16", 0, 0, NULL);
      g_autofree char *repl = g_strconcat ("\\g<1>", claims[i], NULL);
      g_autofree char *graph = g_regex_replace (re, cleave_safetensors_get_metadata (st, "cleave.graph"),
                                                -1, 0, repl, 0, NULL);
      g_assert_nonnull (strstr (graph, claims[i]));
      cleave_safetensors_set_metadata (st, "cleave.graph", graph);
      expect_invalid (st, "huge.safetensors", i == 0 ? "too large" : "conv_2.0.weight");
    }
}

/* Sets value @k of tensor @name in a loaded file (F32). */
static void
poke (CleaveSafetensors *st, const char *name, gsize k, float v)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, name);
  g_assert_nonnull (t);
  g_assert_cmpuint ((k + 1) * 4, <=, t->nbytes);
  memcpy (t->data + 4 * k, &v, 4);
}

/* Weights that would poison every result are refused, naming the tensor:
 * NaN, ±Inf, a negative BN running variance. */
static void
test_non_finite_weights (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "finite.safetensors", NULL);
  g_autofree char *bad = g_build_filename (tmpdir, "nonfinite.safetensors", NULL);
  const struct { const char *tensor; float v; const char *needle; } cases[] = {
    { "conv_0.0.weight", NAN, "not finite" },
    { "fc_4.bias", INFINITY, "not finite" },
    { "conv_1.1.running_mean", -INFINITY, "not finite" },
    { "conv_1.1.running_var", -0.5f, "negative" },
  };

  g_assert_true (cleave_model_save (m, path, &error));
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
      poke (st, cases[i].tensor, 1, cases[i].v);
      expect_invalid (st, "nonfinite.safetensors", cases[i].tensor);
      {
        g_autoptr(CleaveModel) back = cleave_model_load (bad, &error);
        g_assert_null (back);
        if (strstr (error->message, cases[i].needle) == NULL)
          g_error ("'%s' should say %s", error->message, cases[i].needle);
        g_clear_error (&error);
      }
    }
}

/* A graph stored in a model file names every attribute Cleave writes: one
 * missing (a conv's pad, a pool's stride) would otherwise take its
 * hand-written-architecture default and run another network on the same
 * weights, without a word. */
static void
test_graph_attributes_required (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "attrs.safetensors", NULL);
  static const char *const keys[] = { "pad", "stride", "kernel", "groups", "bias", "inputs", "eps" };

  g_assert_true (cleave_model_save (m, path, &error));
  for (gsize k = 0; k < G_N_ELEMENTS (keys); k++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
      g_autoptr(JsonParser) p = json_parser_new ();
      g_autoptr(JsonGenerator) gen = json_generator_new ();
      g_autofree char *text = NULL, *needle = g_strdup_printf ("'%s' is missing", keys[k]);
      JsonArray *nodes;
      gboolean removed = FALSE;

      g_assert_no_error (error);
      g_assert_true (json_parser_load_from_data (p, cleave_safetensors_get_metadata (st, "cleave.graph"), -1, NULL));
      nodes = json_object_get_array_member (json_node_get_object (json_parser_get_root (p)), "nodes");
      for (guint i = 0; i < json_array_get_length (nodes) && !removed; i++)
        {
          JsonObject *o = json_array_get_object_element (nodes, i);
          if (json_object_has_member (o, keys[k]))
            {
              json_object_remove_member (o, keys[k]);
              removed = TRUE;
            }
        }
      g_assert_true (removed);
      json_generator_set_root (gen, json_parser_get_root (p));
      text = json_generator_to_data (gen, NULL);
      cleave_safetensors_set_metadata (st, "cleave.graph", text);
      expect_invalid (st, "attrs-missing.safetensors", needle);
    }
}

/* cleave.normalize holds numbers, finite and usable as floats: no strings or
 * booleans, nothing that overflows to inf or underflows to 0 as a float. */
static void
test_normalize_numbers (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename (tmpdir, "norm.safetensors", NULL);
  static const char *const bad[] = {
    "{\"mean\": [\"0.5\"], \"std\": [0.3]}",
    "{\"mean\": [0.5], \"std\": [true]}",
    "{\"mean\": [1e308], \"std\": [0.3]}",
    "{\"mean\": [0.5], \"std\": [1e-300]}",
    "{\"mean\": [0.5], \"std\": [1e-40]}",
    "{\"mean\": [0.5], \"std\": [1e39]}",
    "{\"mean\": [0.5], \"std\": [null]}",
    /* finite floats, but no normalisation of pixels in [0, 1] */
    "{\"mean\": [9007199254740992], \"std\": [0.3]}",
    "{\"mean\": [-2147483648], \"std\": [0.3]}",
    "{\"mean\": [0.5], \"std\": [4294967297]}",
    "{\"mean\": [0.5], \"std\": [1e-9]}",
    /* json-glib would read 2^64 as 0, a plausible mean */
    "{\"mean\": [18446744073709551616], \"std\": [0.3]}",
  };

  g_assert_true (cleave_model_save (m, path, &error));
  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
      cleave_safetensors_set_metadata (st, "cleave.normalize", bad[i]);
      expect_invalid (st, "badnorm.safetensors", "cleave.normalize");
    }
}

typedef struct {
  const char *good, *key, *path;
  int n;
} MetaVariant;

static void
load_variant (const char *json, gpointer user_data)
{
  MetaVariant *v = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (v->good, &error);
  g_autoptr(CleaveModel) m = NULL;
  cleave_safetensors_set_metadata (st, v->key, json);
  g_assert_true (cleave_safetensors_save (st, v->path, &error));
  m = cleave_model_load (v->path, &error);
  g_assert_true ((m == NULL) != (error == NULL));
  v->n++;
}

/* Every field of a model's JSON metadata given a value of the wrong type: a
 * clean error or a model, never a json-glib critical (fatal in tests). */
static void
test_metadata_wrong_types (void)
{
  g_autoptr(CleaveModel) m = small_model ();
  g_autoptr(GError) error = NULL;
  g_autofree char *good = g_build_filename (tmpdir, "typed.safetensors", NULL);
  g_autofree char *bad = g_build_filename (tmpdir, "retyped.safetensors", NULL);
  static const char *const keys[] = { "cleave.graph", "cleave.normalize", "cleave.classes" };

  g_assert_true (cleave_model_save (m, good, &error));
  json_mutate_max_elements = 100;
  for (gsize i = 0; i < G_N_ELEMENTS (keys); i++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (good, &error);
      MetaVariant v = { good, keys[i], bad, 0 };
      json_mutate_each (cleave_safetensors_get_metadata (st, keys[i]), load_variant, &v);
      g_test_message ("%s: %d variants", keys[i], v.n);
      g_assert_cmpint (v.n, >, 20);
    }
}

/* Trains @m for one epoch of one batch on 6 images, validating on 6 others. */
static gboolean
train_briefly (CleaveModel *m, CleaveDataset *ds, GError **error)
{
  g_autoptr(CleaveBackend) backend = cleave_backend_cpu_new ();
  int train_idx[6] = { 0, 1, 2, 3, 4, 5 }, val_idx[6] = { 6, 7, 8, 9, 10, 11 };
  CleaveTrainOptions opt;
  CleaveTrainResult result = { 0 };
  gboolean ok;

  cleave_train_options_init (&opt);
  opt.epochs = 1;
  opt.batch = 6;
  opt.lr = 0.1f;
  opt.use_augment = FALSE;
  ok = cleave_train (m, backend, ds, train_idx, 6, val_idx, 6, &opt, NULL, NULL, NULL, &result, error);
  cleave_train_result_clear (&result);
  return ok;
}

/* Training stops with an error, rather than keep (and save) weights, once
 * the loss is no longer finite: during an epoch (classifier weights near
 * FLT_MAX overflow the logits at once), or at its end (inputs scaled to
 * ~1e30 keep the one step's training loss finite, but its update overflows
 * the logits on the validation images). */
static void
test_train_stops_on_non_finite_loss (void)
{
  g_autoptr(CleaveDataset) ds = g_new0 (CleaveDataset, 1);
  const char *names[] = { "a", "b", "c", NULL };

  ds->name = g_strdup ("noise");
  ds->n = 12, ds->c = 1, ds->h = 2, ds->w = 2, ds->n_classes = 3;
  ds->pixels = g_malloc (12 * 4);
  ds->labels = g_malloc (12);
  ds->class_names = g_strdupv ((char **) names);
  for (int i = 0; i < 12; i++)
    ds->labels[i] = i % 3;
  for (int i = 0; i < 12 * 4; i++)
    ds->pixels[i] = (guint8) (1 + ((i * 2654435761u) >> 11) % 254);
  for (int when = 0; when < 2; when++)
    {
      g_autoptr(GError) error = NULL;
      CleaveGraph *g = cleave_graph_new (1, 2, 2);
      g_autoptr(CleaveModel) m = NULL;
      CleaveParam *w;
      cleave_graph_add_linear (g, "fc", cleave_graph_add_flatten (g, "flat", 0), 3, TRUE);
      g_assert_true (cleave_graph_finalize (g, &error));
      cleave_graph_init_params (g, 5);
      w = cleave_graph_param (g, cleave_graph_find_param (g, "fc.weight"));
      for (gsize k = 0; k < cleave_param_numel (w); k++)
        w->data[k] = when == 0 ? 3e38f : 1e-20f * (float) (k % 5);
      m = cleave_model_new (g, 3, names);
      m->mean[0] = 0;
      m->std[0] = when == 0 ? 1 : 1e-30f;
      g_assert_false (train_briefly (m, ds, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED);
      g_test_message ("%s", error->message);
      g_assert_nonnull (strstr (error->message, when == 0 ? "(loss is" : "(the validation loss is"));
    }
}

static void
remove_tree (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (dir);
}

/* Classes named "0".."N-1" take the dataset's names; named ones keep theirs. */
static void
test_class_names_from_dataset (void)
{
  g_autoptr(GError) error = NULL;
  const char *names[] = { "cat", "dog", "owl", NULL };
  CleaveDataset ds = { .n_classes = 3, .class_names = (char **) names };
  CleaveGraph *g = cleave_arch_build ("weak", 1, 28, 28, 3, &error);
  g_assert_no_error (error);
  g_autoptr(CleaveModel) unnamed = cleave_model_new (g, 3, NULL);
  cleave_model_name_classes_from_dataset (unnamed, &ds);
  for (int k = 0; k < 3; k++)
    g_assert_cmpstr (unnamed->class_names[k], ==, names[k]);
  const char *own[] = { "a", "b", "c", NULL };
  g_autoptr(CleaveModel) named = cleave_model_new (cleave_arch_build ("weak", 1, 28, 28, 3, &error), 3, own);
  g_assert_no_error (error);
  cleave_model_name_classes_from_dataset (named, &ds);
  for (int k = 0; k < 3; k++)
    g_assert_cmpstr (named->class_names[k], ==, own[k]);
}

int
main (int argc, char **argv)
{
  int status;
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("cleave-model-XXXXXX", NULL);
  g_test_add_func ("/model/presets", test_presets);
  g_test_add_func ("/model/class-names-from-dataset", test_class_names_from_dataset);
  g_test_add_func ("/model/round-trip", test_round_trip);
  g_test_add_func ("/model/malformed-files-name-the-field", test_malformed);
  g_test_add_func ("/model/param-size-checked-before-alloc", test_param_size_checked);
  g_test_add_func ("/model/non-finite-weights-refused", test_non_finite_weights);
  g_test_add_func ("/model/normalize-must-be-usable-numbers", test_normalize_numbers);
  g_test_add_func ("/model/stored-graph-names-every-attribute", test_graph_attributes_required);
  g_test_add_func ("/model/metadata-wrong-types-no-criticals", test_metadata_wrong_types);
  g_test_add_func ("/model/train-stops-on-non-finite-loss", test_train_stops_on_non_finite_loss);
  g_test_add_data_func ("/model/statedict/simcnn-matches-pytorch", "simcnn", test_statedict);
  g_test_add_data_func ("/model/statedict/rescnn-matches-pytorch", "rescnn", test_statedict);
  g_test_add_data_func ("/model/statedict/incecnn-matches-pytorch", "incecnn", test_statedict);
  status = g_test_run ();
  remove_tree (tmpdir);
  return status;
}
