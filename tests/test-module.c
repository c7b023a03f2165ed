/* test-module.c: module extraction (masked == extracted on every preset),
 * KRR, Jaccard, heads, evaluation, and module-set files (round trip and
 * malformed input). Every model here is built from random weights. */
#include "cleave-module.h"
#include "cleave-arch.h"
#include "cleave-safetensors.h"
#include "cleave-error.h"
#include "cleave-report.h"
#include "cleave-onnx.h"

#include <json-glib/json-glib.h>
#include "json-mutate.h"

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/resource.h>
#include <math.h>
#include <string.h>

/* Masked and extracted forwards sum the same products in a different order
 * (BLAS blocking changes with the channel count), so equality is up to float
 * rounding: |a - b| <= TOL × max |logit| (relative to the logits' scale,
 * which random deep nets keep small). */
#define TOL 1e-4
#define N_CLASSES 10
#define BATCH 4

typedef struct {
  const char *arch;
  int c, h, w;
} ArchCase;

static const ArchCase arch_cases[] = {
  { "simcnn:w=0.125", 1, 28, 28 }, { "simcnn:w=0.125", 3, 32, 32 },
  { "rescnn:w=0.125", 1, 28, 28 }, { "rescnn:w=0.125", 3, 32, 32 },
  { "incecnn:w=0.125", 1, 28, 28 }, { "incecnn:w=0.125", 3, 32, 32 },
  { "weak", 1, 28, 28 }, { "weak", 3, 32, 32 },
  { "bench", 1, 28, 28 }, { "bench", 3, 32, 32 },
};

static CleaveBackend *
cpu (void)
{
  static CleaveBackend *b;
  if (b == NULL)
    b = cleave_backend_cpu_new ();
  return b;
}

/* Random weights and BatchNorm statistics far from the identity, so a
 * slicing mistake in any BN tensor changes the logits. */
static CleaveGraph *
random_graph (const ArchCase *ac, guint64 seed)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_arch_build (ac->arch, ac->c, ac->h, ac->w, N_CLASSES, &error);
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) seed);

  g_assert_no_error (error);
  cleave_graph_init_params (g, seed);
  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    {
      CleaveNode *n = cleave_graph_node (g, i);
      if (n->op != CLEAVE_OP_BATCHNORM2D)
        continue;
      for (int k = 0; k < n->out_channels; k++)
        {
          cleave_graph_param (g, n->param[CLEAVE_PARAM_WEIGHT])->data[k] = (float) g_rand_double_range (rng, 0.5, 1.5);
          cleave_graph_param (g, n->param[CLEAVE_PARAM_BIAS])->data[k] = (float) g_rand_double_range (rng, -0.3, 0.3);
          cleave_graph_param (g, n->param[CLEAVE_PARAM_RUNNING_MEAN])->data[k] = (float) g_rand_double_range (rng, -0.2, 0.2);
          cleave_graph_param (g, n->param[CLEAVE_PARAM_RUNNING_VAR])->data[k] = (float) g_rand_double_range (rng, 0.5, 2.0);
        }
    }
  return g;
}

static float *
random_input (const CleaveGraph *g, int n, guint64 seed)
{
  int c, h, w;
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) seed);
  float *x;
  cleave_graph_input_shape (g, &c, &h, &w);
  x = g_new (float, (gsize) n * c * h * w);
  for (gsize i = 0; i < (gsize) n * c * h * w; i++)
    x[i] = (float) g_rand_double_range (rng, -1.5, 1.5);
  return x;
}

/* keep[s][k]: each kernel kept with probability @p; tied sites copy their
 * group's first site, as the splitters do. */
static guint8 **
random_keep (const CleaveGraph *g, double p, GRand *rng)
{
  int n = cleave_graph_n_mask_sites (g);
  guint8 **keep = g_new0 (guint8 *, n + 1);
  for (int s = 0; s < n; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
      keep[s] = g_new0 (guint8, site->channels);
      if (site->tie != s)
        memcpy (keep[s], keep[site->tie], site->channels);
      else
        for (int k = 0; k < site->channels; k++)
          keep[s][k] = g_rand_double (rng) < p;
    }
  return keep;
}

static void
keep_free (guint8 **keep)
{
  for (int s = 0; keep[s]; s++)
    g_free (keep[s]);
  g_free (keep);
}

static float *
run_logits (CleaveGraph *g, CleaveTensor **masks, const float *x, int n)
{
  g_autoptr(GError) error = NULL;
  CleaveNet *net = cleave_net_new (g, cpu (), &error);
  float *out = g_new (float, (gsize) n * cleave_graph_n_outputs (g));

  g_assert_no_error (error);
  if (masks)
    {
      g_assert_true (cleave_net_set_masks (net, masks, 1, FALSE, &error));
      g_assert_no_error (error);
    }
  g_assert_true (cleave_net_forward (net, x, n, FALSE, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_download_output (net, out, &error));
  cleave_net_free (net);
  return out;
}

/* The source's logits with the module's kept kernels as 0/1 masks. */
static float *
masked_logits (CleaveGraph *g, const CleaveModule *m, const float *x, int n)
{
  int n_sites = cleave_graph_n_mask_sites (g);
  CleaveTensor **masks = g_new0 (CleaveTensor *, n_sites);
  float *out;

  for (int s = 0; s < n_sites; s++)
    {
      int ch = cleave_graph_mask_site (g, s)->channels;
      g_autofree float *v = g_new0 (float, ch);
      g_autoptr(GError) error = NULL;
      for (int i = 0; i < m->n_kept[s]; i++)
        v[m->kept[s][i]] = 1.0f;
      masks[s] = cleave_tensor_new_2d (cpu (), 1, ch, &error);
      g_assert_no_error (error);
      g_assert_true (cleave_tensor_upload (masks[s], v, ch, &error));
    }
  out = run_logits (g, masks, x, n);
  for (int s = 0; s < n_sites; s++)
    cleave_tensor_free (masks[s]);
  g_free (masks);
  return out;
}

static void
assert_close (const float *a, const float *b, int n, const char *what)
{
  double scale = 1e-6, worst = 0.0;
  for (int i = 0; i < n; i++)
    scale = MAX (scale, fabs (a[i]));
  for (int i = 0; i < n; i++)
    worst = MAX (worst, fabs (a[i] - b[i]));
  g_test_message ("%s: largest difference %.3g (allowed %.3g)", what, worst, TOL * scale);
  g_assert_cmpfloat (worst, <=, TOL * scale);
}

static void
test_masked_equals_extracted (gconstpointer data)
{
  const ArchCase *ac = data;
  g_autoptr(CleaveGraph) g = random_graph (ac, 11);
  g_autoptr(GRand) rng = g_rand_new_with_seed (5);
  g_autofree float *x = random_input (g, BATCH, 3);

  /* Several densities, including very sparse ones that empty layers. */
  const double p[3] = { 0.7, 0.4, 0.1 };
  for (int t = 0; t < 3; t++)
    {
      guint8 **keep = random_keep (g, p[t], rng);
      g_autoptr(GError) error = NULL;
      CleaveModule *m = cleave_module_extract (g, t, "c", (const guint8 *const *) keep, NULL, &error);
      g_autofree float *ref = NULL, *got = NULL;
      g_autofree char *what = g_strdup_printf ("%s %dx%dx%d keep %.1f", ac->arch, ac->c, ac->h, ac->w, p[t]);

      g_assert_no_error (error);
      g_assert_nonnull (m);
      /* The extracted graph is physically smaller: its convs have the kept counts. */
      g_assert_cmpint (cleave_graph_n_mask_sites (m->graph), ==, cleave_graph_n_mask_sites (g));
      for (int s = 0; s < m->n_sites; s++)
        {
          const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
          g_assert_cmpint (cleave_graph_mask_site (m->graph, s)->channels, ==, m->n_kept[s]);
          g_assert_cmpint (m->n_kept[s], >=, 1);
          for (int i = 0; i < m->n_kept[s]; i++)
            g_assert_true (keep[site->tie][m->kept[s][i]] || m->n_kept[s] == 1);
        }
      g_assert_cmpint (cleave_graph_n_outputs (m->graph), ==, N_CLASSES);
      if (t > 0)
        g_assert_cmpuint (cleave_graph_count_params (m->graph), <, cleave_graph_count_params (g));
      ref = masked_logits (g, m, x, BATCH);
      got = run_logits (m->graph, NULL, x, BATCH);
      assert_close (ref, got, BATCH * N_CLASSES, what);
      /* The masks matter: the unmasked source answers differently. */
      {
        g_autofree float *full = run_logits (g, NULL, x, BATCH);
        double diff = 0, scale = 0;
        for (int i = 0; i < BATCH * N_CLASSES; i++)
          {
            diff = MAX (diff, fabs (full[i] - ref[i]));
            scale = MAX (scale, fabs (full[i]));
          }
        g_assert_cmpfloat (diff, >, 100 * TOL * scale);
      }
      cleave_module_free (m);
      keep_free (keep);
    }
}

/* The torchvision families of tests/reference/onnx/families: a masked
 * source and its extracted module give the same logits, and the module's
 * parameters and FLOPs are its graph's; families whose architecture the
 * extraction cannot slice yet are refused naming the layer. */
static void
test_families_masked_equals_extracted (void)
{
  static const char *const must_extract[] = { "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "vgg11_bn",
                                              "googlenet", "densenet121", "inception_v3", NULL };
  g_autofree char *dir = g_test_build_filename (G_TEST_DIST, "reference", "onnx", "families", NULL);
  g_autofree char *manifest = g_build_filename (dir, "families.json", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GHashTable) extracted = g_hash_table_new (g_str_hash, g_str_equal);

  g_assert_true (json_parser_load_from_file (parser, manifest, &error));
  g_assert_no_error (error);
  JsonArray *models = json_node_get_array (json_parser_get_root (parser));
  for (guint f = 0; f < json_array_get_length (models); f++)
    {
      JsonObject *o = json_array_get_object_element (models, f);
      const char *name = json_object_get_string_member (o, "name");
      const char *family = json_object_get_string_member (o, "family");
      g_autofree char *path = g_build_filename (dir, json_object_get_string_member (o, "file"), NULL);
      g_autoptr(CleaveOnnxImport) imp = cleave_onnx_import (path, &error);
      g_autoptr(GRand) rng = g_rand_new_with_seed (17 + f);

      g_assert_no_error (error);
      CleaveGraph *g = imp->graph;
      g_autofree float *x = random_input (g, 2, 5 + f);
      guint8 **keep = random_keep (g, 0.6, rng);
      CleaveModule *m = cleave_module_extract (g, 0, "c", (const guint8 *const *) keep, NULL, &error);
      keep_free (keep);
      /* the splitters' check before their search agrees */
      {
        g_autoptr(GError) check = NULL;
        g_assert_true (cleave_module_check_extractable (g, &check) == (m != NULL));
        if (m == NULL)
          g_assert_cmpstr (check->message, ==, error->message);
      }
      if (m == NULL)
        {
          g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED);
          g_assert_nonnull (strstr (error->message, "layer '"));
          g_test_message ("%s (%s): not extracted: %s", name, family, error->message);
          g_clear_error (&error);
          continue;
        }
      g_autofree float *ref = masked_logits (g, m, x, 2);
      g_autofree float *got = run_logits (m->graph, NULL, x, 2);
      g_autofree char *what = g_strdup_printf ("%s (%s), %d of %d kernels", name, family, cleave_module_kept_total (m),
                                               cleave_graph_total_kernels (g));
      assert_close (ref, got, 2 * imp->n_classes, what);
      g_assert_cmpuint (cleave_module_params (m), ==, cleave_graph_count_params (m->graph));
      g_assert_cmpuint (cleave_module_flops (m), ==, cleave_graph_count_flops (m->graph));
      g_assert_cmpuint (cleave_module_params (m), <, cleave_graph_count_params (g));
      g_assert_cmpuint (cleave_module_flops (m), <, cleave_graph_count_flops (g));
      g_test_message ("%s: extracted, %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " parameters, %" G_GUINT64_FORMAT
                      " of %" G_GUINT64_FORMAT " FLOPs", what, cleave_module_params (m), cleave_graph_count_params (g),
                      cleave_module_flops (m), cleave_graph_count_flops (g));
      g_hash_table_add (extracted, (gpointer) family);
      cleave_module_free (m);
    }
  for (int k = 0; must_extract[k]; k++)
    if (!g_hash_table_contains (extracted, must_extract[k]))
      g_error ("%s: no module extracted", must_extract[k]);
}

static void
test_keep_all_equals_source (void)
{
  for (guint c = 0; c < G_N_ELEMENTS (arch_cases); c += 2)
    {
      g_autoptr(CleaveGraph) g = random_graph (&arch_cases[c], 21);
      g_autoptr(GRand) rng = g_rand_new_with_seed (1);
      guint8 **keep = random_keep (g, 2.0, rng);
      g_autoptr(GError) error = NULL;
      g_autofree float *x = random_input (g, BATCH, 9);
      g_autofree float *ref = NULL, *got = NULL;
      CleaveModule *m = cleave_module_extract (g, 0, "a", (const guint8 *const *) keep, NULL, &error);

      g_assert_no_error (error);
      g_assert_cmpfloat (m->krr, ==, 1.0);
      g_assert_cmpint (cleave_graph_n_params (m->graph), ==, cleave_graph_n_params (g));
      for (int i = 0; i < cleave_graph_n_params (g); i++)
        {
          CleaveParam *a = cleave_graph_param (g, i), *b = cleave_graph_param (m->graph, i);
          g_assert_cmpstr (a->name, ==, b->name);
          g_assert_cmpuint (cleave_param_numel (a), ==, cleave_param_numel (b));
          g_assert_cmpmem (a->data, cleave_param_numel (a) * 4, b->data, cleave_param_numel (b) * 4);
        }
      g_assert_cmpuint (cleave_graph_count_flops (m->graph), ==, cleave_graph_count_flops (g));
      ref = run_logits (g, NULL, x, BATCH);
      got = run_logits (m->graph, NULL, x, BATCH);
      g_assert_cmpmem (ref, BATCH * N_CLASSES * 4, got, BATCH * N_CLASSES * 4);
      cleave_module_free (m);
      keep_free (keep);
    }
}

static void
test_names_stay (void)
{
  g_autoptr(CleaveGraph) g = random_graph (&arch_cases[4], 2);
  g_autoptr(GRand) rng = g_rand_new_with_seed (2);
  guint8 **keep = random_keep (g, 0.5, rng);
  g_autoptr(GError) error = NULL;
  CleaveModule *m = cleave_module_extract (g, 3, "three", (const guint8 *const *) keep, NULL, &error);

  g_assert_no_error (error);
  g_assert_cmpint (cleave_graph_n_nodes (m->graph), ==, cleave_graph_n_nodes (g));
  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    g_assert_cmpstr (cleave_graph_node (g, i)->name, ==, cleave_graph_node (m->graph, i)->name);
  for (int i = 0; i < cleave_graph_n_params (m->graph); i++)
    g_assert_cmpint (cleave_graph_find_param (g, cleave_graph_param (m->graph, i)->name), >=, 0);
  g_assert_cmpint (m->class_index, ==, 3);
  g_assert_cmpstr (m->class_name, ==, "three");
  cleave_module_free (m);
  keep_free (keep);
}

static void
test_empty_layer_keeps_one (void)
{
  const ArchCase ac = { "rescnn:w=0.125", 1, 28, 28 };
  g_autoptr(CleaveGraph) g = random_graph (&ac, 4);
  g_autoptr(GRand) rng = g_rand_new_with_seed (4);
  guint8 **keep = random_keep (g, 2.0, rng);
  int n_sites = cleave_graph_n_mask_sites (g), tied = -1;
  float **imp = g_new0 (float *, n_sites);
  g_autoptr(GError) error = NULL;
  CleaveModule *m;

  /* A tied pair: empty its group's first site, give kernel 5 the top importance. */
  for (int s = 0; s < n_sites; s++)
    if (cleave_graph_mask_site (g, s)->tie != s)
      tied = s;
  g_assert_cmpint (tied, >=, 0);
  for (int s = 0; s < n_sites; s++)
    {
      int ch = cleave_graph_mask_site (g, s)->channels;
      imp[s] = g_new0 (float, ch);
      imp[s][MIN (5, ch - 1)] = 2.0f;
    }
  memset (keep[0], 0, cleave_graph_mask_site (g, 0)->channels);
  memset (keep[cleave_graph_mask_site (g, tied)->tie], 0, cleave_graph_mask_site (g, tied)->channels);
  m = cleave_module_extract (g, 0, NULL, (const guint8 *const *) keep, (const float *const *) imp, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->n_kept[0], ==, 1);
  g_assert_cmpint (m->kept[0][0], ==, MIN (5, cleave_graph_mask_site (g, 0)->channels - 1));
  g_assert_cmpint (m->n_kept[tied], ==, 1);
  g_assert_cmpint (m->n_kept[cleave_graph_mask_site (g, tied)->tie], ==, 1);
  g_assert_cmpint (m->kept[tied][0], ==, m->kept[cleave_graph_mask_site (g, tied)->tie][0]);
  cleave_module_free (m);

  /* Without importance: kernel 0. */
  m = cleave_module_extract (g, 0, NULL, (const guint8 *const *) keep, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->n_kept[0], ==, 1);
  g_assert_cmpint (m->kept[0][0], ==, 0);
  g_assert_cmpint (cleave_graph_mask_site (m->graph, 0)->channels, ==, 1);
  cleave_module_free (m);
  for (int s = 0; s < n_sites; s++)
    g_free (imp[s]);
  g_free (imp);
  keep_free (keep);
}

static void
test_grouped_conv_refused (void)
{
  g_autoptr(CleaveGraph) g = cleave_graph_new (4, 8, 8);
  g_autoptr(GError) error = NULL;
  guint8 k0[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, k1[4] = { 1, 0, 1, 1 };
  const guint8 *keep[2] = { k0, k1 };
  CleaveModule *m;
  int x = cleave_graph_add_conv2d (g, "a", 0, 8, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_relu (g, "ra", x);
  x = cleave_graph_add_conv2d (g, "b", x, 4, 3, 1, 1, 2, TRUE);
  x = cleave_graph_add_relu (g, "rb", x);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  cleave_graph_add_linear (g, "fc", x, 3, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  cleave_graph_init_params (g, 1);

  m = cleave_module_extract (g, 0, NULL, keep, NULL, &error);
  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "'b'"));
  g_clear_error (&error);
  /* Nothing sliced around the grouped conv: fine. */
  k1[1] = 1;
  m = cleave_module_extract (g, 0, NULL, keep, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat (m->krr, ==, 1.0);
  cleave_module_free (m);
}

/* A module with hand-picked kept sets (graph-free: for the arithmetic tests). */
static CleaveModule *
fake_module (int n_sites, const int *n_kept, const int *const *kept)
{
  CleaveModule *m = g_new0 (CleaveModule, 1);
  m->n_sites = n_sites;
  m->n_kept = g_memdup2 (n_kept, sizeof (int) * n_sites);
  m->kept = g_new0 (int *, n_sites);
  for (int s = 0; s < n_sites; s++)
    m->kept[s] = g_memdup2 (kept[s], sizeof (int) * n_kept[s]);
  return m;
}

static void
test_jaccard (void)
{
  const int a0[] = { 0, 1, 2, 3 }, a1[] = { 5 };
  const int b0[] = { 2, 3, 4 }, b1[] = { 5, 6 };
  const int c0[] = { 7 }, c1[] = { 0 };
  const int *ka[] = { a0, a1 }, *kb[] = { b0, b1 }, *kc[] = { c0, c1 };
  const int na[] = { 4, 1 }, nb[] = { 3, 2 }, nc[] = { 1, 1 };
  CleaveModule *a = fake_module (2, na, ka), *b = fake_module (2, nb, kb), *c = fake_module (2, nc, kc);

  /* a ∩ b = {0:2, 0:3, 1:5} = 3; a ∪ b = 5 + 5 - 3 = 7 */
  g_assert_cmpfloat_with_epsilon (cleave_module_jaccard (a, b), 3.0 / 7.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (cleave_module_jaccard (b, a), 3.0 / 7.0, 1e-12);
  g_assert_cmpfloat (cleave_module_jaccard (a, a), ==, 1.0);
  g_assert_cmpfloat (cleave_module_jaccard (a, c), ==, 0.0);
  g_assert_cmpint (cleave_module_kept_total (a), ==, 5);
  cleave_module_free (a);
  cleave_module_free (b);
  cleave_module_free (c);
}

static void
test_krr (void)
{
  const ArchCase ac = { "weak", 1, 28, 28 };   /* 8, 8, 16, 16 kernels */
  g_autoptr(CleaveGraph) g = random_graph (&ac, 8);
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = NULL;
  g_autoptr(GError) error = NULL;
  guint8 k0[8] = { 1, 1, 0, 0, 0, 0, 0, 0 }, k1[8] = { 1, 1, 1, 1, 0, 0, 0, 0 };
  guint8 k2[16] = { 0 }, k3[16] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  const guint8 *keep[4] = { k0, k1, k2, k3 };
  CleaveModule *m, *all;

  g_assert_cmpint (cleave_graph_total_kernels (g), ==, 48);
  /* 2 + 4 + 1 (the empty layer keeps one) + 16 = 23 of 48 */
  m = cleave_module_extract (g, 1, NULL, keep, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_module_kept_total (m), ==, 23);
  g_assert_cmpfloat_with_epsilon (m->krr, 23.0 / 48.0, 1e-12);
  memset (k3, 0, 8);
  all = cleave_module_extract (g, 2, NULL, keep, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (all->krr, 15.0 / 48.0, 1e-12);
  /* flatten → fc_4: 8 kept channels × 7×7 columns */
  g_assert_cmpint (cleave_graph_node (all->graph, cleave_graph_find_node (all->graph, "fc_4"))->in_features, ==, 8 * 49);

  model = cleave_model_new (cleave_graph_copy (g), N_CLASSES, NULL);
  set = cleave_module_set_new (model, "ga");
  g_assert_cmpint (set->total_kernels, ==, 48);
  g_assert_cmpint (set->n_sites, ==, 4);
  g_assert_true (cleave_module_set_add (set, m, &error));
  g_assert_true (cleave_module_set_add (set, all, &error));
  g_assert_cmpfloat_with_epsilon (cleave_module_set_mean_krr (set), (23.0 + 15.0) / 96.0, 1e-12);
}

static void
test_params_flops (void)
{
  const ArchCase ac = { "bench", 1, 28, 28 };
  g_autoptr(CleaveGraph) g = random_graph (&ac, 8);
  g_autoptr(GRand) rng = g_rand_new_with_seed (8);
  guint8 **keep = random_keep (g, 0.5, rng);
  g_autoptr(GError) error = NULL;
  CleaveModule *m = cleave_module_extract (g, 1, NULL, (const guint8 *const *) keep, NULL, &error);
  guint64 p0, f0;

  g_assert_no_error (error);
  p0 = cleave_module_params (m);
  f0 = cleave_module_flops (m);
  g_assert_cmpuint (p0, ==, cleave_graph_count_params (m->graph));
  g_assert_cmpuint (f0, <, cleave_graph_count_flops (g));
  m->has_head = TRUE;
  g_assert_cmpuint (cleave_module_params (m), ==, p0 + 10 * N_CLASSES + 10 + 10 + 1);
  g_assert_cmpuint (cleave_module_flops (m), ==, f0 + 2 * (10 * N_CLASSES + 10));
  m->has_head = FALSE;
  cleave_module_free (m);
  keep_free (keep);
}

static void
give_head (CleaveModule *m, guint32 seed)
{
  g_autoptr(GRand) rng = g_rand_new_with_seed (seed);
  m->has_head = TRUE;
  m->head_w1 = g_new (float, CLEAVE_HEAD_HIDDEN * m->n_logits);
  m->head_b1 = g_new (float, CLEAVE_HEAD_HIDDEN);
  m->head_w2 = g_new (float, CLEAVE_HEAD_HIDDEN);
  for (int i = 0; i < CLEAVE_HEAD_HIDDEN * m->n_logits; i++)
    m->head_w1[i] = (float) g_rand_double_range (rng, -1, 1);
  for (int i = 0; i < CLEAVE_HEAD_HIDDEN; i++)
    {
      m->head_b1[i] = (float) g_rand_double_range (rng, -0.5, 0.5);
      m->head_w2[i] = (float) g_rand_double_range (rng, -1, 1);
    }
  m->head_b2 = 0.25f;
}

static void
test_head (void)
{
  CleaveModule m = { 0 };
  float logits[3] = { 1.0f, -2.0f, 0.5f };
  float w1[CLEAVE_HEAD_HIDDEN * 3] = { 0 }, b1[CLEAVE_HEAD_HIDDEN] = { 0 }, w2[CLEAVE_HEAD_HIDDEN] = { 0 };
  double h0, h1, z;

  m.n_logits = 3;
  m.class_index = 2;
  g_assert_cmpfloat (cleave_module_head (&m, logits), ==, 0.5f);   /* no head: own logit */
  m.has_head = TRUE;
  m.head_w1 = w1;
  m.head_b1 = b1;
  m.head_w2 = w2;
  m.head_b2 = -0.3f;
  /* hidden 0 = relu(1·relu(1) + 3·relu(-2) + (-1)·relu(0.5) + 0.2) = 0.7;
   * hidden 1 = relu(-2·1 - 0.1) = 0 */
  w1[0] = 1; w1[1] = 3; w1[2] = -1; b1[0] = 0.2f;
  w1[3] = -2; b1[1] = -0.1f;
  w2[0] = 2; w2[1] = 5;
  h0 = 0.7;
  h1 = 0.0;
  z = 2 * h0 + 5 * h1 - 0.3;
  g_assert_cmpfloat_with_epsilon (cleave_module_head (&m, logits), 1.0 / (1.0 + exp (-z)), 1e-6);
}

/* A tiny in-memory dataset of random images. */
static CleaveDataset *
random_dataset (int n, int c, int h, int w, guint32 seed)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  g_autoptr(GRand) rng = g_rand_new_with_seed (seed);
  ds->name = g_strdup ("random");
  ds->n = n, ds->c = c, ds->h = h, ds->w = w;
  ds->pixels = g_new (guint8, (gsize) n * c * h * w);
  ds->labels = g_new (guint8, n);
  ds->n_classes = N_CLASSES;
  ds->class_names = g_new0 (char *, N_CLASSES + 1);
  for (int i = 0; i < N_CLASSES; i++)
    ds->class_names[i] = g_strdup_printf ("class%d", i);
  for (gsize i = 0; i < (gsize) n * c * h * w; i++)
    ds->pixels[i] = (guint8) g_rand_int_range (rng, 0, 256);
  for (int i = 0; i < n; i++)
    ds->labels[i] = (guint8) (i % N_CLASSES);
  return ds;
}

/* A set of N modules cut with random masks, the even ones with heads. */
static CleaveModuleSet *
random_set (const ArchCase *ac, double p, guint64 seed, CleaveModel **model_out)
{
  CleaveGraph *g = random_graph (ac, seed);
  CleaveModel *model = cleave_model_new (g, N_CLASSES, NULL);
  CleaveModuleSet *set = cleave_module_set_new (model, "grad");
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) seed);

  for (int k = 0; k < N_CLASSES; k++)
    {
      guint8 **keep = random_keep (g, p, rng);
      g_autoptr(GError) error = NULL;
      CleaveModule *m = cleave_module_extract (g, k, model->class_names[k], (const guint8 *const *) keep, NULL, &error);
      g_assert_no_error (error);
      if (k % 2 == 0)
        give_head (m, (guint32) k);
      g_assert_true (cleave_module_set_add (set, m, &error));
      keep_free (keep);
    }
  set->log = cleave_split_log_from_json ("[{\"epoch\": 1, \"val_accuracy\": 0.5, \"mean_krr\": 0.9},"
                                         " {\"epoch\": 2, \"val_accuracy\": 0.6, \"mean_krr\": 0.7}]", NULL);
  g_assert_nonnull (set->log);
  *model_out = model;
  return set;
}

static void
test_evaluate (void)
{
  const ArchCase ac = { "bench", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.6, 31, &model);
  g_autoptr(CleaveDataset) ds = random_dataset (60, 1, 12, 12, 2);
  g_autoptr(GError) error = NULL;
  g_autofree float *scores = NULL;
  int n = ds->n, n_mod = (int) set->modules->len, correct = 0;

  g_assert_true (cleave_module_set_evaluate (set, cpu (), ds, NULL, n, &scores, NULL, &error));
  g_assert_no_error (error);
  for (int i = 0; i < n; i++)
    {
      int best = 0;
      for (int k = 1; k < n_mod; k++)
        if (scores[i * n_mod + k] > scores[i * n_mod + best])
          best = k;
      correct += best == ds->labels[i];
    }
  g_assert_cmpfloat_with_epsilon (set->composed_accuracy, (double) correct / n, 1e-12);
  for (int k = 0; k < n_mod; k++)
    {
      CleaveModule *m = set->modules->pdata[k];
      int tp = 0, fp = 0, fn = 0;
      float lo = INFINITY, hi = -INFINITY;
      g_autofree float *x = g_new (float, (gsize) n * 144);
      g_autofree float *own = g_new (float, n);
      CleaveNet *net = cleave_net_new (m->graph, cpu (), &error);

      /* cleave_module_scores on the same images gives the same scores. */
      for (int i = 0; i < n; i++)
        cleave_dataset_fill_batch (ds, &i, 1, set->mean, set->std, NULL, NULL, x + i * 144, NULL);
      g_assert_true (cleave_module_scores (m, net, x, n, own, &error));
      cleave_net_free (net);
      for (int i = 0; i < n; i++)
        {
          gboolean truth = ds->labels[i] == k;
          gboolean yes;
          g_assert_cmpfloat (own[i], ==, scores[i * n_mod + k]);
          if (m->has_head)
            yes = own[i] >= 0.5f;
          else
            {
              g_autofree float *logits = run_logits (m->graph, NULL, x + i * 144, 1);
              yes = TRUE;
              for (int j = 0; j < N_CLASSES; j++)
                if (j != k && logits[j] >= logits[k])
                  yes = FALSE;
            }
          tp += truth && yes;
          fp += !truth && yes;
          fn += truth && !yes;
          if (truth)
            lo = MIN (lo, own[i]), hi = MAX (hi, own[i]);
        }
      g_assert_cmpfloat_with_epsilon (m->val_precision, tp + fp ? (double) tp / (tp + fp) : 0.0, 1e-12);
      g_assert_cmpfloat_with_epsilon (m->val_recall, (double) tp / (tp + fn), 1e-12);
      g_assert_cmpfloat (m->score_min, ==, lo);
      g_assert_cmpfloat (m->score_max, ==, hi);
      g_assert_true (m->val_f1 >= 0 && m->val_f1 <= 1);
    }
}

/* Head-less modules that keep everything compose to the source model itself. */
static void
test_evaluate_keep_all_is_source (void)
{
  const ArchCase ac = { "weak", 1, 12, 12 };
  g_autoptr(CleaveGraph) g = random_graph (&ac, 3);
  g_autoptr(CleaveModel) model = cleave_model_new (cleave_graph_copy (g), N_CLASSES, NULL);
  g_autoptr(CleaveModuleSet) set = cleave_module_set_new (model, "ga");
  g_autoptr(CleaveDataset) ds = random_dataset (50, 1, 12, 12, 3);
  g_autoptr(GRand) rng = g_rand_new_with_seed (1);
  g_autoptr(GError) error = NULL;
  guint8 **keep = random_keep (g, 2.0, rng);
  g_autoptr(CleaveMetrics) metrics = NULL;
  CleaveNet *net;

  for (int k = 0; k < N_CLASSES; k++)
    g_assert_true (cleave_module_set_add (set, cleave_module_extract (g, k, NULL, (const guint8 *const *) keep, NULL, &error), &error));
  g_assert_true (cleave_module_set_evaluate (set, cpu (), ds, NULL, ds->n, NULL, NULL, &error));
  g_assert_no_error (error);
  net = cleave_net_new (model->graph, cpu (), &error);
  metrics = cleave_evaluate (model, net, ds, NULL, ds->n, 16, NULL, NULL, NULL, NULL, &error);
  cleave_net_free (net);
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (set->composed_accuracy, metrics->accuracy, 1e-12);
  for (int k = 0; k < N_CLASSES; k++)
    {
      CleaveModule *m = set->modules->pdata[k];
      g_assert_cmpfloat_with_epsilon (m->val_recall, metrics->recall[k], 1e-12);
      g_assert_cmpfloat_with_epsilon (m->val_precision, metrics->precision[k], 1e-12);
    }
  keep_free (keep);
}

static char *tmp_dir;

static char *
tmp_path (const char *name)
{
  char *dir = tmp_dir;
  if (dir == NULL)
    {
      g_autoptr(GError) error = NULL;
      dir = tmp_dir = g_dir_make_tmp ("test-module-XXXXXX", &error);
      g_assert_no_error (error);
    }
  return g_build_filename (dir, name, NULL);
}

static void
test_file_round_trip (void)
{
  const ArchCase ac = { "incecnn:w=0.125", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 41, &model);
  g_autoptr(CleaveModuleSet) back = NULL;
  g_autoptr(CleaveDataset) ds = random_dataset (30, 1, 12, 12, 5);
  g_autoptr(GError) error = NULL;
  g_autofree char *path = tmp_path ("round.safetensors");
  g_autofree float *s1 = NULL, *s2 = NULL;

  set->source_sha256 = g_strdup ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  set->source_path = g_strdup ("/somewhere/model.safetensors");
  set->source_accuracy = 0.875;
  set->options_json = g_strdup ("{\"alpha\": 0.1}");
  set->mean[0] = 0.25f;
  set->std[0] = 0.5f;
  g_assert_true (cleave_module_set_evaluate (set, cpu (), ds, NULL, ds->n, &s1, NULL, &error));
  g_assert_true (cleave_module_set_save (set, path, &error));
  g_assert_no_error (error);
  back = cleave_module_set_load (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (back);

  g_assert_cmpstr (back->method, ==, "grad");
  g_assert_cmpstr (back->source_sha256, ==, set->source_sha256);
  g_assert_cmpstr (back->source_path, ==, set->source_path);
  g_assert_cmpfloat (back->source_accuracy, ==, 0.875);
  g_assert_cmpfloat (back->composed_accuracy, ==, set->composed_accuracy);
  g_assert_cmpfloat (back->mean[0], ==, 0.25f);
  g_assert_cmpfloat (back->std[0], ==, 0.5f);
  g_assert_cmpint (back->total_kernels, ==, set->total_kernels);
  g_assert_cmpint (back->n_sites, ==, set->n_sites);
  g_assert_cmpstr (back->class_names[3], ==, set->class_names[3]);
  g_assert_nonnull (back->log);
  g_assert_cmpuint (back->log->entries->len, ==, 2);
  g_assert_cmpfloat (((CleaveSplitLogEntry *) back->log->entries->pdata[1])->mean_krr, ==, 0.7);
  g_assert_cmpint (((CleaveSplitLogEntry *) back->log->entries->pdata[1])->phase, ==, CLEAVE_PHASE_MASKS);
  g_assert_nonnull (strstr (back->options_json, "alpha"));
  g_assert_cmpuint (back->modules->len, ==, set->modules->len);
  for (guint k = 0; k < set->modules->len; k++)
    {
      CleaveModule *a = set->modules->pdata[k], *b = back->modules->pdata[k];
      g_assert_cmpint (a->class_index, ==, b->class_index);
      g_assert_cmpint (a->has_head, ==, b->has_head);
      g_assert_cmpfloat (a->krr, ==, b->krr);
      g_assert_cmpfloat (a->val_f1, ==, b->val_f1);
      g_assert_cmpfloat (a->score_min, ==, b->score_min);
      g_assert_cmpfloat (a->score_max, ==, b->score_max);
      for (int s = 0; s < a->n_sites; s++)
        g_assert_cmpmem (a->kept[s], a->n_kept[s] * 4, b->kept[s], b->n_kept[s] * 4);
      g_assert_cmpuint (cleave_module_params (a), ==, cleave_module_params (b));
    }
  /* Same scores, bit for bit, from the reloaded modules. */
  g_assert_true (cleave_module_set_evaluate (back, cpu (), ds, NULL, ds->n, &s2, NULL, &error));
  g_assert_cmpmem (s1, ds->n * set->modules->len * 4, s2, ds->n * set->modules->len * 4);
  g_assert_cmpfloat (back->composed_accuracy, ==, set->composed_accuracy);
}

/* Writes a module-set file, lets @edit change its safetensors, saves it
 * again, and expects the loader to refuse it naming the file and @field. */
static void
expect_invalid (const char *name, void (*edit) (CleaveSafetensors *st), const char *field)
{
  const ArchCase ac = { "rescnn:w=0.125", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 51, &model);
  g_autofree char *path = tmp_path (name);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  CleaveModuleSet *back;

  g_assert_true (cleave_module_set_save (set, path, &error));
  st = cleave_safetensors_load (path, &error);
  g_assert_no_error (error);
  edit (st);
  g_assert_true (cleave_safetensors_save (st, path, &error));
  back = cleave_module_set_load (path, &error);
  g_assert_null (back);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_test_message ("%s: %s", name, error->message);
  g_assert_nonnull (strstr (error->message, name));
  g_assert_nonnull (strstr (error->message, field));
}

static void
edit_format (CleaveSafetensors *st)
{
  cleave_safetensors_set_metadata (st, "cleave.format", "cleave-model/1");
}

static void
edit_kept_range (CleaveSafetensors *st)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, "module.1.kept.2");
  gint32 big = 100000;
  memcpy (t->data + t->nbytes - 4, &big, 4);
}

static void
edit_kept_order (CleaveSafetensors *st)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, "module.0.kept.1");
  gint32 v;
  g_assert_cmpuint (t->nbytes, >=, 8);
  memcpy (&v, t->data, 4);
  memcpy (t->data + 4, &v, 4);
}

static void
remove_tensor (CleaveSafetensors *st, const char *name)
{
  for (guint i = 0; i < st->tensors->len; i++)
    if (g_str_equal (((CleaveSafeTensor *) st->tensors->pdata[i])->name, name))
      {
        g_ptr_array_remove_index (st->tensors, i);
        return;
      }
  g_assert_not_reached ();
}

/* A weight whose shape disagrees with the module's graph. */
static void
edit_weight_shape (CleaveSafetensors *st)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, "module.2.conv_0.0.weight");
  int shape[4] = { (int) t->shape[0] + 1, (int) t->shape[1], (int) t->shape[2], (int) t->shape[3] };
  g_autofree float *data = g_new0 (float, shape[0] * shape[1] * shape[2] * shape[3]);
  remove_tensor (st, "module.2.conv_0.0.weight");
  cleave_safetensors_add_f32 (st, "module.2.conv_0.0.weight", 4, shape, data);
}

static void
edit_missing_weight (CleaveSafetensors *st)
{
  remove_tensor (st, "module.3.fc_12.bias");
}

static void
edit_extra_tensor (CleaveSafetensors *st)
{
  float v = 1;
  int shape[1] = { 1 };
  cleave_safetensors_add_f32 (st, "module.9.stray", 1, shape, &v);
}

static void
edit_graph_json (CleaveSafetensors *st)
{
  /* The graph says conv_2.0 has one more kernel than the weights hold. */
  const char *meta = cleave_safetensors_get_metadata (st, "cleave.modules");
  g_autoptr(GRegex) re = g_regex_new ("(\"name\" *: *\"conv_2\\.0\"[^}]*\"out_channels\" *: *)([0-9]+)", 0, 0, NULL);
  g_autoptr(GMatchInfo) mi = NULL;
  g_autofree char *num = NULL, *repl = NULL, *edited = NULL;
  g_assert_true (g_regex_match (re, meta, 0, &mi));
  num = g_match_info_fetch (mi, 2);
  repl = g_strdup_printf ("\\g<1>%d", atoi (num) + 1);
  edited = g_regex_replace (re, meta, -1, 0, repl, G_REGEX_MATCH_DEFAULT, NULL);
  g_assert_cmpstr (edited, !=, meta);
  cleave_safetensors_set_metadata (st, "cleave.modules", edited);
}

static void
edit_sha (CleaveSafetensors *st)
{
  const char *meta = cleave_safetensors_get_metadata (st, "cleave.modules");
  g_autofree char *edited = NULL;
  g_autoptr(GRegex) re = g_regex_new ("\"sha256\" *: *null", 0, 0, NULL);
  edited = g_regex_replace_literal (re, meta, -1, 0, "\"sha256\": \"xyz\"", 0, NULL);
  cleave_safetensors_set_metadata (st, "cleave.modules", edited);
}

static void
edit_bad_json (CleaveSafetensors *st)
{
  cleave_safetensors_set_metadata (st, "cleave.modules", "{\"method\": \"grad\", ");
}

/* 2,100 sites of 2^20 kernels each: their sum does not fit an int. */
static void
edit_many_sites (CleaveSafetensors *st)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autofree char *text = NULL;
  JsonObject *o;
  JsonArray *sites = json_array_new ();

  g_assert_true (json_parser_load_from_data (p, cleave_safetensors_get_metadata (st, "cleave.modules"), -1, NULL));
  o = json_node_get_object (json_parser_get_root (p));
  for (int s = 0; s < 2100; s++)
    {
      JsonObject *e = json_object_new ();
      json_object_set_string_member (e, "layer", "conv");
      json_object_set_int_member (e, "kernels", 1 << 20);
      json_object_set_int_member (e, "tie", s);
      json_array_add_object_element (sites, e);
    }
  json_object_set_array_member (o, "sites", sites);
  json_object_set_int_member (o, "total_kernels", 1);
  json_generator_set_root (gen, json_parser_get_root (p));
  text = json_generator_to_data (gen, NULL);
  cleave_safetensors_set_metadata (st, "cleave.modules", text);
}

static void
test_file_site_sum_checked (void)
{
  expect_invalid ("many-sites.safetensors", edit_many_sites, "the sites add up to 2202009600");
}

typedef struct {
  const char *good, *path;
  int n;
} MetaVariant;

static void
load_variant (const char *json, gpointer user_data)
{
  MetaVariant *v = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (v->good, &error);
  CleaveModuleSet *set;
  cleave_safetensors_set_metadata (st, "cleave.modules", json);
  g_assert_true (cleave_safetensors_save (st, v->path, &error));
  set = cleave_module_set_load (v->path, &error);
  g_assert_true ((set == NULL) != (error == NULL));
  cleave_module_set_free (set);
  v->n++;
}

/* Every field of a module set's JSON metadata (the first entry of each
 * list) given a value of the wrong type: a clean error or a set, never a
 * json-glib critical (fatal in tests). */
static void
test_file_wrong_types (void)
{
  const ArchCase ac = { "weak", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 71, &model);
  g_autofree char *good = tmp_path ("typed.safetensors"), *bad = tmp_path ("retyped.safetensors");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  MetaVariant v = { good, bad, 0 };

  g_assert_true (cleave_module_set_save (set, good, &error));
  st = cleave_safetensors_load (good, &error);
  g_assert_no_error (error);
  json_mutate_max_elements = 1;
  json_mutate_each (cleave_safetensors_get_metadata (st, "cleave.modules"), load_variant, &v);
  g_test_message ("%d variants", v.n);
  g_assert_cmpint (v.n, >, 200);
}

static int
count_entries (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  int n = 0;
  while (d && g_dir_read_name (d))
    n++;
  return n;
}

/* A report that cannot be written completely (here: a file-size limit, as a
 * full disk would) leaves no report folder, or an existing folder as it was;
 * a complete one keeps what else the folder held. Nothing ".partial" stays. */
static void
test_report_all_or_nothing (void)
{
  const ArchCase ac = { "weak", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 73, &model);
  g_autoptr(GError) error = NULL;
  const char *base = g_getenv ("CLEAVE_TEST_DIR");

  if (g_test_subprocess ())
    {
      g_autofree char *fresh = g_build_filename (base, "fresh", NULL), *fresh_p = g_strconcat (fresh, ".partial", NULL);
      g_autofree char *old = g_build_filename (base, "old", NULL), *old_p = g_strconcat (old, ".partial", NULL);
      struct rlimit rl = { 4096, 4096 };
      signal (SIGXFSZ, SIG_IGN);
      g_assert_cmpint (setrlimit (RLIMIT_FSIZE, &rl), ==, 0);
      g_assert_false (cleave_report_write_module_set (set, fresh, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
      g_clear_error (&error);
      g_assert_false (g_file_test (fresh, G_FILE_TEST_EXISTS));
      g_assert_false (g_file_test (fresh_p, G_FILE_TEST_EXISTS));
      g_assert_false (cleave_report_write_module_set (set, old, &error));
      g_assert_cmpint (count_entries (old), ==, 1);
      g_assert_false (g_file_test (old_p, G_FILE_TEST_EXISTS));
      return;
    }
  {
    g_autofree char *dir = tmp_path ("report-aon");
    g_autofree char *old = g_build_filename (dir, "old", NULL), *notes = g_build_filename (old, "notes.txt", NULL);
    g_autofree char *json = g_build_filename (old, "report.json", NULL), *old_p = g_strconcat (old, ".partial", NULL);
    g_assert_cmpint (g_mkdir_with_parents (old, 0755), ==, 0);
    g_assert_true (g_file_set_contents (notes, "the user's notes", -1, NULL));
    g_setenv ("CLEAVE_TEST_DIR", dir, TRUE);
    g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed ();
    g_assert_true (cleave_report_write_module_set (set, old, &error));
    g_assert_no_error (error);
    g_assert_true (g_file_test (notes, G_FILE_TEST_IS_REGULAR));
    g_assert_true (g_file_test (json, G_FILE_TEST_IS_REGULAR));
    g_assert_false (g_file_test (old_p, G_FILE_TEST_EXISTS));
  }
}

static void
test_file_malformed (void)
{
  expect_invalid ("format.safetensors", edit_format, "cleave.format");
  expect_invalid ("kept-range.safetensors", edit_kept_range, "module.1.kept.2");
  expect_invalid ("kept-order.safetensors", edit_kept_order, "module.0.kept.1");
  expect_invalid ("weight-shape.safetensors", edit_weight_shape, "module.2.conv_0.0.weight");
  expect_invalid ("weight-missing.safetensors", edit_missing_weight, "module.3.fc_12.bias");
  expect_invalid ("extra.safetensors", edit_extra_tensor, "module.9.stray");
  expect_invalid ("graph.safetensors", edit_graph_json, "module.0.conv_2.0.weight");
  expect_invalid ("sha.safetensors", edit_sha, "source.sha256");
  expect_invalid ("json.safetensors", edit_bad_json, "cleave.modules");
}

static void
test_file_truncated (void)
{
  const ArchCase ac = { "weak", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 61, &model);
  g_autofree char *path = tmp_path ("truncated.safetensors");
  g_autofree char *data = NULL;
  g_autoptr(GError) error = NULL;
  gsize len;

  g_assert_true (cleave_module_set_save (set, path, &error));
  g_assert_true (g_file_get_contents (path, &data, &len, &error));
  /* Cut in the data, in the header, and right after the length prefix. */
  const gsize cuts[3] = { len - 7, len / 3, 9 };
  for (int i = 0; i < 3; i++)
    {
      g_assert_true (g_file_set_contents (path, data, (gssize) MIN (cuts[i], len), &error));
      g_assert_null (cleave_module_set_load (path, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
      g_assert_nonnull (strstr (error->message, "truncated.safetensors"));
      g_clear_error (&error);
    }
  /* Not even a file. */
  g_assert_null (cleave_module_set_load ("/nonexistent/modules.safetensors", &error));
  g_assert_nonnull (error);
}


/* Random byte changes in the header never crash the reader: each file
 * either loads or is refused as invalid. */
static void
test_file_fuzz (void)
{
  const ArchCase ac = { "incecnn:w=0.125", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 81, &model);
  g_autofree char *path = tmp_path ("fuzz.safetensors");
  g_autofree char *data = NULL;
  g_autoptr(GRand) rng = g_rand_new_with_seed (81);
  g_autoptr(GError) error = NULL;
  guint64 header_len;
  gsize len;
  int refused = 0;

  g_assert_true (cleave_module_set_save (set, path, &error));
  g_assert_true (g_file_get_contents (path, &data, &len, &error));
  memcpy (&header_len, data, 8);
  for (int iter = 0; iter < 150; iter++)
    {
      g_autofree char *copy = g_memdup2 (data, len);
      CleaveModuleSet *back;
      for (int k = 0; k < 1 + iter % 4; k++)
        {
          gsize at = 8 + g_rand_int_range (rng, 0, (gint32) header_len);
          copy[at] = (char) g_rand_int_range (rng, 32, 127);
        }
      g_assert_true (g_file_set_contents (path, copy, (gssize) len, &error));
      back = cleave_module_set_load (path, &error);
      if (back == NULL)
        {
          g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
          g_clear_error (&error);
          refused++;
        }
      cleave_module_set_free (back);
    }
  g_test_message ("%d of 150 corrupted files refused", refused);
  g_assert_cmpint (refused, >, 0);
}

/* A model file is not a module set. */
static void
test_file_model_refused (void)
{
  const ArchCase ac = { "weak", 1, 12, 12 };
  g_autoptr(CleaveModel) model = cleave_model_new (random_graph (&ac, 1), N_CLASSES, NULL);
  g_autofree char *path = tmp_path ("model.safetensors");
  g_autoptr(GError) error = NULL;

  g_assert_true (cleave_model_save (model, path, &error));
  g_assert_null (cleave_module_set_load (path, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "cleave.format"));
}


static gboolean
file_starts_with (const char *path, const char *magic, gsize n)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  return g_file_get_contents (path, &data, &len, NULL) && len >= n && memcmp (data, magic, n) == 0;
}

static void
test_report (void)
{
  const ArchCase ac = { "rescnn:w=0.125", 1, 12, 12 };
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveModuleSet) set = random_set (&ac, 0.5, 71, &model);
  g_autoptr(CleaveDataset) ds = random_dataset (40, 1, 12, 12, 7);
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = tmp_path ("report");
  g_autofree char *json_path = g_build_filename (dir, "report.json", NULL);
  g_autoptr(JsonParser) parser = json_parser_new ();
  const char *stems[] = { "modules", "layer-krr", "jaccard", "accuracy-per-epoch", "krr-per-epoch" };
  JsonObject *root;
  JsonArray *jac, *layers;

  set->source_accuracy = 0.5;
  g_assert_true (cleave_module_set_evaluate (set, cpu (), ds, NULL, ds->n, NULL, NULL, &error));
  g_assert_true (cleave_report_write_module_set (set, dir, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (stems); i++)
    {
      g_autofree char *png = g_strdup_printf ("%s/%s.png", dir, stems[i]);
      g_autofree char *svg = g_strdup_printf ("%s/%s.svg", dir, stems[i]);
      g_assert_true (file_starts_with (png, "\x89PNG", 4));
      g_assert_true (file_starts_with (svg, "<?xml", 5));
    }
  for (int s = 0; s < set->n_sites; s++)
    {
      g_autofree char *png = g_strdup_printf ("%s/masks-%s.png", dir, set->site_names[s]);
      g_assert_true (file_starts_with (png, "\x89PNG", 4));
    }
  g_assert_true (json_parser_load_from_file (parser, json_path, &error));
  root = json_node_get_object (json_parser_get_root (parser));
  g_assert_cmpstr (json_object_get_string_member (root, "split"), ==, "validation");
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (root, "composed_accuracy"), set->composed_accuracy, 1e-12);
  g_assert_cmpfloat_with_epsilon (json_object_get_double_member (root, "mean_krr"), cleave_module_set_mean_krr (set), 1e-12);
  g_assert_cmpuint (json_array_get_length (json_object_get_array_member (root, "modules")), ==, N_CLASSES);
  jac = json_object_get_array_member (root, "jaccard");
  g_assert_cmpuint (json_array_get_length (jac), ==, N_CLASSES);
  g_assert_cmpfloat (json_array_get_double_element (json_array_get_array_element (jac, 2), 2), ==, 1.0);
  g_assert_cmpfloat_with_epsilon (json_array_get_double_element (json_array_get_array_element (jac, 1), 4),
                                  cleave_module_jaccard (set->modules->pdata[1], set->modules->pdata[4]), 1e-12);
  layers = json_object_get_array_member (root, "layers");
  g_assert_cmpuint (json_array_get_length (layers), ==, set->n_sites);
  g_assert_nonnull (json_object_get_string_member (json_array_get_object_element (layers, 3), "tied_to"));

  /* Without a per-epoch log there are no epoch charts, and that is fine. */
  g_clear_pointer (&set->log, cleave_split_log_free);
  {
    g_autofree char *dir2 = tmp_path ("report-nolog");
    g_autofree char *png = g_build_filename (dir2, "accuracy-per-epoch.png", NULL);
    g_assert_true (cleave_report_write_module_set (set, dir2, &error));
    g_assert_false (g_file_test (png, G_FILE_TEST_EXISTS));
  }
}

/* Manual check helper, skipped unless CLEAVE_TEST_MODULE_SOURCE names a
 * trained Fashion-MNIST model: cuts one module per class keeping each
 * layer's kernels most active on that class (CLEAVE_TEST_MODULE_KEEP,
 * default 0.5), evaluates the set, and saves it to CLEAVE_TEST_MODULE_SET_OUT. */
static void
test_manual_importance_set (void)
{
  const char *src = g_getenv ("CLEAVE_TEST_MODULE_SOURCE");
  const char *out = g_getenv ("CLEAVE_TEST_MODULE_SET_OUT");
  double keep_frac = g_getenv ("CLEAVE_TEST_MODULE_KEEP") ? g_ascii_strtod (g_getenv ("CLEAVE_TEST_MODULE_KEEP"), NULL) : 0.5;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveModuleSet) set = NULL;
  g_autoptr(CleaveMetrics) metrics = NULL;
  const int n_imp = 1000, n_eval = 2000;
  g_autofree int *eval_idx = g_new (int, n_eval);
  int n_sites, c, h, w;
  double **imp;
  CleaveNet *net;

  if (src == NULL || out == NULL)
    {
      g_test_skip ("set CLEAVE_TEST_MODULE_SOURCE and CLEAVE_TEST_MODULE_SET_OUT to write a module set for manual checks");
      return;
    }
  model = cleave_model_load (src, &error);
  g_assert_no_error (error);
  ds = cleave_dataset_load (model->dataset ? model->dataset : "fashion-mnist", CLEAVE_SPLIT_TEST, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (ds->n, >=, n_imp + n_eval);
  n_sites = cleave_graph_n_mask_sites (model->graph);
  cleave_graph_input_shape (model->graph, &c, &h, &w);
  imp = g_new0 (double *, n_sites * N_CLASSES);
  for (int i = 0; i < n_sites * N_CLASSES; i++)
    imp[i] = g_new0 (double, cleave_graph_mask_site (model->graph, i / N_CLASSES)->channels);

  /* Importance: mean activation of each kernel's masked output on a class's images. */
  net = cleave_net_new (model->graph, cpu (), &error);
  for (int i = 0; i < n_imp; i++)
    {
      g_autofree float *x = g_new (float, (gsize) c * h * w);
      float y;
      cleave_dataset_fill_batch (ds, &i, 1, model->mean, model->std, NULL, NULL, x, &y);
      g_assert_true (cleave_net_forward (net, x, 1, FALSE, &error));
      for (int s = 0; s < n_sites; s++)
        {
          const CleaveMaskSite *site = cleave_graph_mask_site (model->graph, s);
          g_autofree float *a = cleave_tensor_to_host (cleave_net_node_output (net, site->node), &error);
          gsize hw = cleave_tensor_numel (cleave_net_node_output (net, site->node)) / site->channels;
          for (int k = 0; k < site->channels; k++)
            for (gsize j = 0; j < hw; j++)
              imp[s * N_CLASSES + (int) y][k] += fabs (a[k * hw + j]);
        }
    }
  cleave_net_free (net);
  set = cleave_module_set_new (model, "ga");
  for (int cls = 0; cls < N_CLASSES; cls++)
    {
      guint8 **keep = g_new0 (guint8 *, n_sites + 1);
      CleaveModule *m;
      for (int s = 0; s < n_sites; s++)
        {
          int ch = cleave_graph_mask_site (model->graph, s)->channels;
          int want = MAX (1, (int) lround (keep_frac * ch));
          const double *v = imp[cleave_graph_mask_site (model->graph, s)->tie * N_CLASSES + cls];
          keep[s] = g_new0 (guint8, ch);
          for (int k = 0; k < ch; k++)
            {
              int better = 0;
              for (int j = 0; j < ch; j++)
                better += v[j] > v[k] || (v[j] == v[k] && j < k);
              keep[s][k] = better < want;
            }
        }
      m = cleave_module_extract (model->graph, cls, model->class_names[cls], (const guint8 *const *) keep, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (cleave_module_set_add (set, m, &error));
      keep_free (keep);
    }
  for (int i = 0; i < n_eval; i++)
    eval_idx[i] = n_imp + i;
  net = cleave_net_new (model->graph, cpu (), &error);
  metrics = cleave_evaluate (model, net, ds, eval_idx, n_eval, 128, NULL, NULL, NULL, NULL, &error);
  cleave_net_free (net);
  g_assert_no_error (error);
  set->source_accuracy = metrics->accuracy;
  g_assert_true (cleave_module_set_evaluate (set, cpu (), ds, eval_idx, n_eval, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_module_set_save (set, out, &error));
  g_assert_no_error (error);
  g_test_message ("wrote %s: source %.4f composed %.4f mean KRR %.3f", out, set->source_accuracy,
                  set->composed_accuracy, cleave_module_set_mean_krr (set));
  for (int i = 0; i < n_sites * N_CLASSES; i++)
    g_free (imp[i]);
  g_free (imp);
}

static void
remove_tree (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;
  if (dir)
    {
      while ((name = g_dir_read_name (dir)))
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          remove_tree (child);
        }
      g_dir_close (dir);
    }
  g_remove (path);
}

int
main (int argc, char **argv)
{
  int status;

  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (arch_cases); i++)
    {
      const ArchCase *ac = &arch_cases[i];
      g_autofree char *name = g_strdup_printf ("/module/extract/masked-equals-extracted/%s/%dx%dx%d",
                                               ac->arch, ac->c, ac->h, ac->w);
      g_test_add_data_func (name, ac, test_masked_equals_extracted);
    }
  g_test_add_func ("/module/extract/keep-all-equals-source", test_keep_all_equals_source);
  g_test_add_func ("/module/extract/torchvision-families", test_families_masked_equals_extracted);
  g_test_add_func ("/module/extract/names-stay", test_names_stay);
  g_test_add_func ("/module/extract/empty-layer-keeps-one", test_empty_layer_keeps_one);
  g_test_add_func ("/module/extract/grouped-conv-refused", test_grouped_conv_refused);
  g_test_add_func ("/module/krr", test_krr);
  g_test_add_func ("/module/jaccard", test_jaccard);
  g_test_add_func ("/module/params-flops", test_params_flops);
  g_test_add_func ("/module/head", test_head);
  g_test_add_func ("/module/evaluate/metrics", test_evaluate);
  g_test_add_func ("/module/evaluate/keep-all-is-source", test_evaluate_keep_all_is_source);
  g_test_add_func ("/module/file/round-trip", test_file_round_trip);
  g_test_add_func ("/module/file/malformed", test_file_malformed);
  g_test_add_func ("/module/file/site-kernels-sum-checked", test_file_site_sum_checked);
  g_test_add_func ("/module/file/metadata-wrong-types-no-criticals", test_file_wrong_types);
  g_test_add_func ("/module/file/truncated", test_file_truncated);
  g_test_add_func ("/module/file/model-refused", test_file_model_refused);
  g_test_add_func ("/module/file/fuzz", test_file_fuzz);
  g_test_add_func ("/module/report/files", test_report);
  g_test_add_func ("/module/report/all-or-nothing", test_report_all_or_nothing);
  g_test_add_func ("/module/manual/importance-set", test_manual_importance_set);
  status = g_test_run ();
  if (tmp_dir)
    remove_tree (tmp_dir);
  g_free (tmp_dir);
  return status;
}
