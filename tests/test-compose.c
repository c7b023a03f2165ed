/* test-compose.c: compositions, shared execution, patch arithmetic, files
 * (round trip and malformed input), ONNX export. Every model here has random
 * weights and every dataset random pixels. */
#include "cleave-compose.h"
#include "cleave-arch.h"
#include "cleave-onnx.h"
#include "cleave-safetensors.h"
#include "cleave-error.h"

#include "json-mutate.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#define N_CLASSES 4
#define N_IMAGES 40

static CleaveBackend *
cpu (void)
{
  static CleaveBackend *b;
  if (b == NULL)
    b = cleave_backend_cpu_new ();
  return b;
}

static CleaveModel *
random_model (guint64 seed)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_arch_build ("weak", 1, 28, 28, N_CLASSES, &error);
  const char *names[] = { "a", "b", "c", "d", NULL };
  CleaveModel *m;

  g_assert_no_error (error);
  cleave_graph_init_params (g, seed);
  m = cleave_model_new (g, N_CLASSES, names);
  m->mean[0] = 0.3f;
  m->std[0] = 0.4f;
  return m;
}

static CleaveDataset *
random_dataset (guint64 seed)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) seed);

  ds->name = g_strdup ("random");
  ds->source = g_strdup ("memory");
  ds->n = N_IMAGES, ds->c = 1, ds->h = 28, ds->w = 28;
  ds->pixels = g_new (guint8, (gsize) N_IMAGES * 28 * 28);
  ds->labels = g_new (guint8, N_IMAGES);
  for (gsize i = 0; i < (gsize) N_IMAGES * 28 * 28; i++)
    ds->pixels[i] = (guint8) g_rand_int_range (rng, 0, 256);
  for (int i = 0; i < N_IMAGES; i++)
    ds->labels[i] = (guint8) (i % N_CLASSES);
  ds->n_classes = N_CLASSES;
  ds->class_names = g_strsplit ("a,b,c,d", ",", -1);
  return ds;
}

/* A module for @cls keeping each kernel with probability 0.6 (seeded); with
 * a random head when @head. Score range set by hand for patching. */
static CleaveModule *
make_module (CleaveModel *model, int cls, guint64 seed, gboolean head)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) seed);
  int n_sites = cleave_graph_n_mask_sites (model->graph);
  guint8 **keep = g_new0 (guint8 *, n_sites);
  CleaveModule *m;

  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (model->graph, s);
      keep[s] = g_new0 (guint8, site->channels);
      for (int k = 0; k < site->channels; k++)
        keep[s][k] = site->tie != s ? keep[site->tie][k] : g_rand_double (rng) < 0.6;
    }
  m = cleave_module_extract (model->graph, cls, model->class_names[cls], (const guint8 *const *) keep, NULL, &error);
  g_assert_no_error (error);
  for (int s = 0; s < n_sites; s++)
    g_free (keep[s]);
  g_free (keep);
  if (head)
    {
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
      m->head_b2 = (float) g_rand_double_range (rng, -0.5, 0.5);
    }
  m->score_min = -0.5f - cls * 0.1f;
  m->score_max = 1.5f + cls * 0.2f;
  m->val_f1 = 0.3 + 0.005 * (double) (seed % 100);
  return m;
}

static CleaveModuleSet *
make_set (CleaveModel *model, guint64 seed, gboolean heads)
{
  g_autoptr(GError) error = NULL;
  CleaveModuleSet *set = cleave_module_set_new (model, heads ? "grad" : "ga");
  for (int c = 0; c < N_CLASSES; c++)
    {
      g_assert_true (cleave_module_set_add (set, make_module (model, c, seed * 10 + c, heads), &error));
      g_assert_no_error (error);
    }
  return set;
}

/* A module's raw scores computed directly, the reference for compositions. */
static float *
direct_scores (const CleaveModuleSet *set, const CleaveModule *m, const CleaveDataset *ds)
{
  g_autoptr(GError) error = NULL;
  g_autofree float *x = g_new (float, (gsize) ds->n * 28 * 28);
  g_autofree int *idx = g_new (int, ds->n);
  float *out = g_new (float, ds->n);
  CleaveNet *net = cleave_net_new (m->graph, cpu (), &error);

  g_assert_no_error (error);
  for (int i = 0; i < ds->n; i++)
    idx[i] = i;
  cleave_dataset_fill_batch (ds, idx, ds->n, set->mean, set->std, NULL, NULL, x, NULL);
  g_assert_true (cleave_module_scores (m, net, x, ds->n, out, &error));
  g_assert_no_error (error);
  cleave_net_free (net);
  return out;
}

static void
test_argmax (void)
{
  g_autoptr(CleaveModel) model = random_model (1);
  g_autoptr(CleaveModuleSet) set = make_set (model, 1, FALSE);
  g_autoptr(CleaveDataset) ds = random_dataset (2);
  g_autoptr(CleaveComposition) c = cleave_composition_new ();
  g_autoptr(GError) error = NULL;
  g_autofree float *scores = NULL;
  float *direct[3];
  int picks[3] = { 2, 0, 3 };
  g_autoptr(CleaveMetrics) metrics = NULL;
  CleaveScorer *scorer;
  int correct = 0;

  for (int k = 0; k < 3; k++)
    {
      g_assert_true (cleave_composition_add (c, set, picks[k], NULL, &error));
      g_assert_no_error (error);
      direct[k] = direct_scores (set, set->modules->pdata[picks[k]], ds);
    }
  /* Head-less modules: AUTO means min–max with each module's range. */
  g_assert_true (cleave_composition_uses_minmax (c));
  scores = g_new (float, N_IMAGES * 3);
  g_assert_true (cleave_composition_scores (c, cpu (), ds, NULL, N_IMAGES, scores, NULL, &error));
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES; i++)
    for (int k = 0; k < 3; k++)
      {
        const CleaveModule *m = set->modules->pdata[picks[k]];
        float want = (direct[k][i] - m->score_min) / (m->score_max - m->score_min);
        g_assert_cmpfloat_with_epsilon (scores[i * 3 + k], want, 1e-5);
      }
  /* Relabelled task: classes 2,0,3 of the source become 0,1,2. */
  {
    int keep[3] = { 2, 0, 3 };
    g_autoptr(CleaveDataset) sub = cleave_dataset_select_classes (ds, keep, 3, &error);
    g_autofree float *s2 = NULL;
    g_assert_no_error (error);
    scorer = cleave_scorer_new_composition (g_steal_pointer (&c));
    metrics = cleave_scorer_evaluate (scorer, cpu (), sub, NULL, 0, &s2, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    for (int i = 0; i < sub->n; i++)
      {
        int best = 0;
        for (int k = 1; k < 3; k++)
          if (s2[i * 3 + k] > s2[i * 3 + best])
            best = k;
        correct += best == sub->labels[i];
      }
    g_assert_cmpint (metrics->total, ==, sub->n);
    g_assert_cmpint (metrics->correct, ==, correct);
    g_assert_cmpstr (cleave_scorer_class_names (scorer)[0], ==, "c");
    /* The full 4-class dataset does not match a 3-class composition. */
    g_assert_null (cleave_scorer_evaluate (scorer, cpu (), ds, NULL, 0, NULL, NULL, NULL, NULL, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
    cleave_scorer_free (scorer);
  }
  for (int k = 0; k < 3; k++)
    g_free (direct[k]);
}

static void
test_shared (void)
{
  g_autoptr(CleaveModel) model = random_model (3);
  g_autoptr(CleaveModuleSet) set = make_set (model, 3, TRUE);
  g_autoptr(CleaveDataset) ds = random_dataset (4);
  g_autoptr(CleaveComposition) c = cleave_composition_new ();
  g_autoptr(GError) error = NULL;
  g_autofree float *a = g_new (float, N_IMAGES * 5), *b = g_new (float, N_IMAGES * 5);
  CleaveModule *twin;
  CleaveComposeFlops f;

  /* A twin of module 1: same kept kernels, another head (a second splitter
   * run can give that); the executor must run the network once for both. */
  twin = make_module (model, 1, 31, TRUE);
  for (int s = 0; s < twin->n_sites; s++)
    g_assert_cmpint (twin->n_kept[s], >, 0);
  cleave_module_free (twin);
  {
    const CleaveModule *m1 = set->modules->pdata[1];
    CleaveModule *copy = make_module (model, 1, 77, TRUE);
    int n_sites = m1->n_sites;
    guint8 **keep = g_new0 (guint8 *, n_sites);
    for (int s = 0; s < n_sites; s++)
      {
        keep[s] = g_new0 (guint8, cleave_graph_mask_site (model->graph, s)->channels);
        for (int i = 0; i < m1->n_kept[s]; i++)
          keep[s][m1->kept[s][i]] = 1;
      }
    twin = cleave_module_extract (model->graph, 1, "b", (const guint8 *const *) keep, NULL, &error);
    g_assert_no_error (error);
    twin->has_head = TRUE;
    twin->head_w1 = g_steal_pointer (&copy->head_w1);
    twin->head_b1 = g_steal_pointer (&copy->head_b1);
    twin->head_w2 = g_steal_pointer (&copy->head_w2);
    twin->head_b2 = copy->head_b2;
    twin->score_min = 0, twin->score_max = 1;
    cleave_module_free (copy);
    for (int s = 0; s < n_sites; s++)
      g_free (keep[s]);
    g_free (keep);
    g_assert_true (cleave_module_set_add (set, twin, &error));
  }
  for (int k = 0; k < 5; k++)
    g_assert_true (cleave_composition_add (c, set, k, NULL, &error));
  g_assert_no_error (error);
  c->calibration = CLEAVE_CALIBRATION_RAW;
  c->shared = FALSE;
  g_assert_true (cleave_composition_scores (c, cpu (), ds, NULL, N_IMAGES, a, NULL, &error));
  c->shared = TRUE;
  g_assert_true (cleave_composition_scores (c, cpu (), ds, NULL, N_IMAGES, b, NULL, &error));
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES * 5; i++)
    g_assert_cmpfloat (a[i], ==, b[i]);
  /* Different heads on one network: the twin's scores differ from module 1's. */
  g_assert_cmpfloat (fabsf (a[1] - a[4]) + fabsf (a[6] - a[9]), >, 0);
  cleave_composition_flops (c, &f);
  g_assert_cmpuint (f.executed, <, f.one_by_one);
  g_assert_cmpuint (f.one_by_one - f.executed, ==,
                    cleave_graph_count_flops (((CleaveModule *) set->modules->pdata[4])->graph));
  /* All modules read the same image: the first conv layer alone saves. */
  g_assert_cmpuint (f.prefix_shared, <, f.executed);
}

static void
test_patch_arithmetic (void)
{
  g_autoptr(CleaveModel) strong = random_model (5);
  g_autoptr(CleaveModuleSet) set = make_set (strong, 5, TRUE);
  g_autoptr(CleaveDataset) ds = random_dataset (6);
  g_autoptr(CleavePatched) p = cleave_patched_new (random_model (7));
  g_autoptr(GError) error = NULL;
  g_autofree float *out = g_new (float, N_IMAGES * N_CLASSES);
  g_autofree float *weak = g_new (float, N_IMAGES * N_CLASSES);
  g_autofree float *s2 = NULL;
  float probs[4] = { 0.1f, 0.2f, 0.3f, 0.4f };
  float module_scores[1] = { 0.9f };

  g_assert_true (cleave_patched_add (p, set, 2, 2, &error));
  g_assert_no_error (error);
  g_assert_false (cleave_patched_add (p, set, 2, 2, &error));
  g_clear_error (&error);
  /* Class 2's module range is [-0.7, 1.9]: (0.9 + 0.7) / 2.6. */
  cleave_patched_combine (p, probs, module_scores);
  g_assert_cmpfloat_with_epsilon (probs[2], 1.6f / 2.6f, 1e-6);
  g_assert_cmpfloat (probs[0], ==, 0.1f);
  g_assert_cmpfloat (probs[3], ==, 0.4f);

  g_assert_true (cleave_patched_scores (p, cpu (), ds, NULL, N_IMAGES, out, NULL, &error));
  g_assert_no_error (error);
  {
    CleaveScorer *w = cleave_scorer_new_model (random_model (7));
    g_assert_true (cleave_scorer_scores (w, cpu (), ds, NULL, N_IMAGES, weak, NULL, &error));
    cleave_scorer_free (w);
  }
  s2 = direct_scores (set, set->modules->pdata[2], ds);
  for (int i = 0; i < N_IMAGES; i++)
    {
      double mx = -INFINITY, sum = 0;
      for (int c = 0; c < N_CLASSES; c++)
        mx = MAX (mx, weak[i * N_CLASSES + c]);
      for (int c = 0; c < N_CLASSES; c++)
        sum += exp (weak[i * N_CLASSES + c] - mx);
      for (int c = 0; c < N_CLASSES; c++)
        {
          double want = c == 2 ? (s2[i] + 0.7) / 2.6 : exp (weak[i * N_CLASSES + c] - mx) / sum;
          g_assert_cmpfloat_with_epsilon (out[i * N_CLASSES + c], want, 1e-5);
        }
    }
  /* A module without a stored range cannot patch. */
  ((CleaveModule *) set->modules->pdata[1])->score_min = NAN;
  g_assert_false (cleave_patched_add (p, set, 1, 1, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static char *
tmp_file (const char *name)
{
  static char *dir;
  if (dir == NULL)
    dir = g_dir_make_tmp ("test-compose-XXXXXX", NULL);
  return g_build_filename (dir, name, NULL);
}

static void
assert_same_scores (CleaveScorer *a, CleaveScorer *b, const CleaveDataset *ds)
{
  g_autoptr(GError) error = NULL;
  int K = cleave_scorer_n_classes (a);
  g_autofree float *x = g_new (float, N_IMAGES * K), *y = g_new (float, N_IMAGES * K);
  g_assert_cmpint (K, ==, cleave_scorer_n_classes (b));
  g_assert_true (cleave_scorer_scores (a, cpu (), ds, NULL, N_IMAGES, x, NULL, &error));
  g_assert_true (cleave_scorer_scores (b, cpu (), ds, NULL, N_IMAGES, y, NULL, &error));
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES * K; i++)
    g_assert_cmpfloat (x[i], ==, y[i]);
}

static CleaveComposition *
mixed_composition (CleaveModuleSet *s1, CleaveModuleSet *s2)
{
  g_autoptr(GError) error = NULL;
  CleaveComposition *c = cleave_composition_new ();
  g_assert_true (cleave_composition_add (c, s1, 0, "first-a", &error));
  g_assert_true (cleave_composition_add (c, s2, 3, "second-d", &error));
  g_assert_true (cleave_composition_add (c, s1, 2, NULL, &error));
  g_assert_true (cleave_composition_add (c, s2, 1, NULL, &error));
  g_assert_no_error (error);
  return c;
}

static void
test_files (void)
{
  g_autoptr(CleaveModel) m1 = random_model (8), m2 = random_model (9);
  g_autoptr(CleaveModuleSet) s1 = make_set (m1, 8, TRUE), s2 = make_set (m2, 9, FALSE);
  g_autoptr(CleaveDataset) ds = random_dataset (10);
  g_autoptr(GError) error = NULL;
  g_autofree char *cpath = tmp_file ("c.safetensors"), *ppath = tmp_file ("p.safetensors");
  CleaveComposition *c = mixed_composition (s1, s2);
  CleavePatched *p = cleave_patched_new (random_model (11));
  CleaveScorer *a, *b;

  memcpy (s2->mean, (float[]) { 0.5f }, sizeof (float));
  g_assert_true (cleave_composition_save (c, cpath, &error));
  g_assert_no_error (error);
  b = cleave_scorer_load (cpath, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_scorer_kind (b), ==, CLEAVE_SCORER_COMPOSITION);
  g_assert_cmpstr (cleave_scorer_class_names (b)[1], ==, "second-d");
  g_assert_cmpstr (cleave_scorer_class_names (b)[2], ==, "c");
  g_assert_cmpuint (cleave_scorer_composition (b)->sources->len, ==, 2);
  a = cleave_scorer_new_composition (c);
  assert_same_scores (a, b, ds);
  cleave_scorer_free (a);
  cleave_scorer_free (b);

  g_assert_true (cleave_patched_add (p, s1, 1, 1, &error));
  g_assert_true (cleave_patched_add (p, s2, 3, 3, &error));
  g_assert_true (cleave_patched_save (p, ppath, &error));
  g_assert_no_error (error);
  b = cleave_scorer_load (ppath, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_scorer_kind (b), ==, CLEAVE_SCORER_PATCHED);
  g_assert_cmpint (cleave_scorer_patched (b)->target[1], ==, 3);
  a = cleave_scorer_new_patched (p);
  assert_same_scores (a, b, ds);
  cleave_scorer_free (a);
  cleave_scorer_free (b);
}

/* Rewrites one metadata key of a saved file. */
static char *
with_metadata (const char *src, const char *name, const char *key, const char *value)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (src, &error);
  char *dst = tmp_file (name);
  g_assert_no_error (error);
  if (value)
    cleave_safetensors_set_metadata (st, key, value);
  else
    g_hash_table_remove (st->metadata, key);
  g_assert_true (cleave_safetensors_save (st, dst, &error));
  return dst;
}

static void
expect_invalid (const char *path, const char *fragment, gboolean patched)
{
  g_autoptr(GError) error = NULL;
  CleaveScorer *s = cleave_scorer_load (path, &error);
  g_autofree char *base = g_path_get_basename (path);
  g_assert_null (s);
  g_assert_nonnull (error);
  if (strstr (error->message, base) == NULL || strstr (error->message, fragment) == NULL)
    g_error ("error for %s lacks file or '%s': %s", path, fragment, error->message);
  g_assert_true (error->domain == CLEAVE_ERROR);
  (void) patched;
}

static void
test_malformed (void)
{
  g_autoptr(CleaveModel) m1 = random_model (12), m2 = random_model (13);
  g_autoptr(CleaveModuleSet) s1 = make_set (m1, 12, TRUE), s2 = make_set (m2, 13, FALSE);
  g_autoptr(CleaveComposition) c = mixed_composition (s1, s2);
  g_autoptr(CleavePatched) p = cleave_patched_new (random_model (14));
  g_autoptr(GError) error = NULL;
  g_autofree char *cpath = tmp_file ("good-c.safetensors"), *ppath = tmp_file ("good-p.safetensors");
  struct { const char *key, *value, *fragment; } cases[] = {
    { "cleave.composition", "{\"calibration\":\"odd\",\"shared\":true,\"input\":[1,28,28],\"sources\":2,\"classes\":[]}", "calibration" },
    { "cleave.composition", "{\"calibration\":\"raw\",\"shared\":true,\"input\":[1,28,28],\"sources\":2,\"classes\":[{\"name\":\"x\",\"source\":5,\"module\":0}]}", "classes[0].source" },
    { "cleave.composition", "{\"calibration\":\"raw\",\"shared\":true,\"input\":[1,28,28],\"sources\":2,\"classes\":[{\"name\":\"x\",\"source\":0,\"module\":99}]}", "classes[0].module" },
    { "cleave.composition", "{\"calibration\":\"raw\",\"shared\":true,\"input\":[3,32,32],\"sources\":2,\"classes\":[{\"name\":\"x\",\"source\":0,\"module\":0}]}", "input" },
    { "cleave.composition", "{\"calibration\":\"raw\",\"shared\":true,\"input\":[1,28,28],\"sources\":3,\"classes\":[{\"name\":\"x\",\"source\":0,\"module\":0}]}", "cleave.source.2" },
    { "cleave.composition", "[1,2]", "JSON object" },
    { "cleave.composition", NULL, "cleave.composition" },
    { "cleave.source.1", "{\"method\":\"ga\"}", "source.1" },
  };

  g_assert_true (cleave_composition_save (c, cpath, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *name = g_strdup_printf ("bad-c%u.safetensors", i);
      g_autofree char *bad = with_metadata (cpath, name, cases[i].key, cases[i].value);
      expect_invalid (bad, cases[i].fragment, FALSE);
    }
  g_assert_true (cleave_patched_add (p, s1, 0, 0, &error));
  g_assert_true (cleave_patched_save (p, ppath, &error));
  g_assert_no_error (error);
  {
    g_autofree char *b1 = with_metadata (ppath, "bad-p1.safetensors", "cleave.patched", "{\"targets\":[7]}");
    g_autofree char *b2 = with_metadata (ppath, "bad-p2.safetensors", "cleave.patched", "{\"targets\":[0,1]}");
    g_autofree char *b3 = with_metadata (ppath, "bad-p3.safetensors", "weak.cleave.graph", "{\"input\":[1,28,28]}");
    g_autofree char *b4 = with_metadata (ppath, "bad-p4.safetensors", "cleave.format", "cleave-patched/9");
    expect_invalid (b1, "targets[0]", TRUE);
    expect_invalid (b2, "targets has 2", TRUE);
    expect_invalid (b3, "weak model", TRUE);
    expect_invalid (b4, "cleave.format", TRUE);
    g_assert_null (cleave_composition_load (b4, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
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
  CleaveScorer *s;
  cleave_safetensors_set_metadata (st, v->key, json);
  g_assert_true (cleave_safetensors_save (st, v->path, &error));
  s = cleave_scorer_load (v->path, &error);
  g_assert_true ((s == NULL) != (error == NULL));
  cleave_scorer_free (s);
  v->n++;
}

/* Every field of a composition's and a patched model's JSON metadata given
 * a value of the wrong type: a clean error or a file that loads, never a
 * json-glib critical (fatal in tests). */
static void
test_metadata_wrong_types (void)
{
  g_autoptr(CleaveModel) m1 = random_model (15), m2 = random_model (16);
  g_autoptr(CleaveModuleSet) s1 = make_set (m1, 15, TRUE), s2 = make_set (m2, 16, FALSE);
  g_autoptr(CleaveComposition) c = mixed_composition (s1, s2);
  g_autoptr(CleavePatched) p = cleave_patched_new (random_model (17));
  g_autoptr(GError) error = NULL;
  g_autofree char *cpath = tmp_file ("typed-c.safetensors"), *ppath = tmp_file ("typed-p.safetensors");
  g_autofree char *bad = tmp_file ("retyped.safetensors");
  const struct { const char *file, *key; } cases[] = {
    { cpath, "cleave.composition" }, { ppath, "cleave.patched" }, { ppath, "cleave.patch.composition" },
  };

  g_assert_true (cleave_composition_save (c, cpath, &error));
  g_assert_true (cleave_patched_add (p, s1, 1, 1, &error));
  g_assert_true (cleave_patched_save (p, ppath, &error));
  g_assert_no_error (error);
  json_mutate_max_elements = 100;
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (cases[i].file, &error);
      MetaVariant v = { cases[i].file, cases[i].key, bad, 0 };
      g_assert_nonnull (cleave_safetensors_get_metadata (st, cases[i].key));
      json_mutate_each (cleave_safetensors_get_metadata (st, cases[i].key), load_variant, &v);
      g_test_message ("%s: %d variants", cases[i].key, v.n);
      g_assert_cmpint (v.n, >, 20);
    }
  /* An emptied target list with the modules still embedded drops the patch:
   * refused, not read as the weak model alone. */
  {
    g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (ppath, &error);
    CleaveScorer *s;
    cleave_safetensors_set_metadata (st, "cleave.patched", "{\"targets\": []}");
    g_assert_true (cleave_safetensors_save (st, bad, &error));
    s = cleave_scorer_load (bad, &error);
    g_assert_null (s);
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
    g_assert_nonnull (strstr (error->message, "but the file embeds modules"));
  }
}

/* Saving and loading a composition and a patched model go through no file
 * in $TMPDIR: the embedded module sets and weak model stay in memory. The
 * subprocess runs with $TMPDIR pointing nowhere. */
static void
test_no_tmpdir (void)
{
  if (g_test_subprocess ())
    {
      const char *dir = g_getenv ("CLEAVE_TEST_DIR");
      g_autofree char *cpath = g_build_filename (dir, "c.safetensors", NULL);
      g_autofree char *ppath = g_build_filename (dir, "p.safetensors", NULL);
      g_autoptr(CleaveModel) m1 = random_model (18), m2 = random_model (19);
      g_autoptr(CleaveModuleSet) s1 = make_set (m1, 18, TRUE), s2 = make_set (m2, 19, FALSE);
      g_autoptr(CleaveComposition) c = mixed_composition (s1, s2);
      g_autoptr(CleavePatched) p = cleave_patched_new (random_model (20));
      g_autoptr(GError) error = NULL;
      CleaveScorer *b;

      g_assert_cmpstr (g_get_tmp_dir (), ==, "/nonexistent/cleave-tmp");
      g_assert_true (cleave_composition_save (c, cpath, &error));
      g_assert_no_error (error);
      b = cleave_scorer_load (cpath, &error);
      g_assert_no_error (error);
      cleave_scorer_free (b);
      g_assert_true (cleave_patched_add (p, s1, 1, 1, &error));
      g_assert_true (cleave_patched_save (p, ppath, &error));
      g_assert_no_error (error);
      b = cleave_scorer_load (ppath, &error);
      g_assert_no_error (error);
      cleave_scorer_free (b);
      return;
    }
  {
    g_autofree char *probe = tmp_file ("probe");
    g_autofree char *dir = g_path_get_dirname (probe);
    g_autofree char *old = g_strdup (g_getenv ("TMPDIR"));
    g_setenv ("CLEAVE_TEST_DIR", dir, TRUE);
    g_setenv ("TMPDIR", "/nonexistent/cleave-tmp", TRUE);
    g_test_trap_subprocess (NULL, 120 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_INHERIT_STDERR);
    if (old)
      g_setenv ("TMPDIR", old, TRUE);
    else
      g_unsetenv ("TMPDIR");
    g_test_trap_assert_passed ();
  }
}

static void
check_with_python (const char *path)
{
  g_autofree char *cmd = NULL, *out = NULL, *err = NULL;
  int status = 0;
  if (!g_file_test ("/usr/bin/python3", G_FILE_TEST_IS_EXECUTABLE))
    return;
  cmd = g_strdup_printf ("/usr/bin/python3 -c \"import sys\ntry:\n import onnx\nexcept ImportError:\n sys.exit(77)\n"
                         "m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print('ok')\" %s", path);
  {
    g_auto(GStrv) argv = NULL;
    g_assert_true (g_shell_parse_argv (cmd, NULL, &argv, NULL));
    g_assert_true (g_spawn_sync (NULL, argv, NULL, 0, NULL, NULL, &out, &err, &status, NULL));
  }
  if (WIFEXITED (status) && WEXITSTATUS (status) == 77)
    return;
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("onnx checker rejected %s: %s", path, err);
}

/* Scores [N_IMAGES × K] of an exported ONNX file opened again in Cleave
 * match @want, and so do the predictions (hence the accuracy). */
static void
check_reopened (const char *path, const CleaveDataset *ds, const float *want, int K, const char *what)
{
  g_autoptr(GError) error = NULL;
  CleaveScorer *s = cleave_scorer_load (path, &error);
  g_autofree float *got = g_new (float, N_IMAGES * K);
  double worst = 0, scale = 0;

  if (s == NULL)
    g_error ("%s: the export does not open again: %s", what, error->message);
  g_assert_cmpint (cleave_scorer_n_classes (s), ==, K);
  g_assert_true (cleave_scorer_scores (s, cpu (), ds, NULL, N_IMAGES, got, NULL, &error));
  g_assert_no_error (error);
  for (int i = 0; i < N_IMAGES; i++)
    {
      int a = 0, b = 0;
      for (int k = 0; k < K; k++)
        {
          worst = MAX (worst, fabs (got[i * K + k] - want[i * K + k]));
          scale = MAX (scale, fabs (want[i * K + k]));
          a = got[i * K + k] > got[i * K + a] ? k : a;
          b = want[i * K + k] > want[i * K + b] ? k : b;
        }
      g_assert_cmpint (a, ==, b);
    }
  g_test_message ("%s: re-opened, max |diff| %.3g of max |score| %.3g, same predictions", what, worst, scale);
  g_assert_cmpfloat (worst, <=, 1e-5 * MAX (scale, 1));
  cleave_scorer_free (s);
}

/* A scorer's scores on the test images. */
static float *
scorer_scores (CleaveScorer *s, const CleaveDataset *ds)
{
  g_autoptr(GError) error = NULL;
  float *out = g_new (float, N_IMAGES * cleave_scorer_n_classes (s));

  g_assert_true (cleave_scorer_scores (s, cpu (), ds, NULL, N_IMAGES, out, NULL, &error));
  g_assert_no_error (error);
  cleave_scorer_free (s);
  return out;
}

static void
test_export (void)
{
  g_autoptr(CleaveModel) m1 = random_model (15), m2 = random_model (16);
  g_autoptr(CleaveModuleSet) s1 = NULL, s2 = NULL;
  g_autoptr(CleaveComposition) c = NULL;
  g_autoptr(CleavePatched) p = cleave_patched_new (random_model (17));
  g_autoptr(CleaveDataset) ds = random_dataset (18);
  g_autoptr(GError) error = NULL;
  g_autofree char *fm = tmp_file ("m.onnx"), *fs = tmp_file ("s.onnx"), *fc = tmp_file ("c.onnx"), *fp = tmp_file ("p.onnx");
  g_autoptr(CleaveOnnxModel) om = NULL;

  /* the second source normalised differently from the first */
  m2->mean[0] = 0.5f;
  m2->std[0] = 0.25f;
  s1 = make_set (m1, 15, TRUE);
  s2 = make_set (m2, 16, FALSE);
  c = mixed_composition (s1, s2);
  /* A model round-trips through ONNX with the same outputs. */
  g_assert_true (cleave_onnx_export_graph (m1->graph, m1->mean, m1->std, fm, &error));
  g_assert_no_error (error);
  {
    CleaveScorer *a = cleave_scorer_new_model (random_model (15));
    CleaveScorer *b = cleave_scorer_load (fm, &error);
    int K = N_CLASSES;
    g_autofree float *x = g_new (float, N_IMAGES * K), *y = g_new (float, N_IMAGES * K);
    g_assert_no_error (error);
    g_assert_true (cleave_scorer_scores (a, cpu (), ds, NULL, N_IMAGES, x, NULL, &error));
    g_assert_true (cleave_scorer_scores (b, cpu (), ds, NULL, N_IMAGES, y, NULL, &error));
    for (int i = 0; i < N_IMAGES * K; i++)
      g_assert_cmpfloat_with_epsilon (x[i], y[i], 1e-4);
    cleave_scorer_free (a);
    cleave_scorer_free (b);
  }
  g_assert_true (cleave_export_module_set_onnx (s1, fs, &error));
  g_assert_no_error (error);
  om = cleave_onnx_model_load (fs, &error);
  g_assert_no_error (error);
  g_assert_cmpint (om->opset, ==, 13);
  g_assert_cmpuint (om->outputs->len, ==, N_CLASSES);
  check_with_python (fs);
  g_clear_pointer (&om, cleave_onnx_model_free);
  {
    /* re-opened: the modules' scores, one column each */
    g_autofree float *want = g_new (float, N_IMAGES * N_CLASSES);
    for (int k = 0; k < N_CLASSES; k++)
      {
        g_autofree float *d = direct_scores (s1, s1->modules->pdata[k], ds);
        for (int i = 0; i < N_IMAGES; i++)
          want[i * N_CLASSES + k] = d[i];
      }
    check_reopened (fs, ds, want, N_CLASSES, "module set");
  }

  g_assert_true (cleave_export_composition_onnx (c, fc, &error));
  g_assert_no_error (error);
  om = cleave_onnx_model_load (fc, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (om->outputs->len, ==, 2);
  {
    int argmax = 0, concat = 0, div = 0;
    for (guint i = 0; i < om->nodes->len; i++)
      {
        CleaveOnnxNode *n = om->nodes->pdata[i];
        argmax += g_str_equal (n->op_type, "ArgMax");
        concat += g_str_equal (n->op_type, "Concat") && n->n_inputs == 4;
        div += g_str_equal (n->op_type, "Div");
      }
    g_assert_cmpint (argmax, ==, 1);
    g_assert_cmpint (concat, ==, 1);
    /* Two sources: min–max per class (4) plus two input normalisations. */
    g_assert_cmpint (div, ==, 4 + 2);
  }
  check_with_python (fc);
  g_clear_pointer (&om, cleave_onnx_model_free);
  {
    g_autofree float *want = scorer_scores (cleave_scorer_new_composition (mixed_composition (s1, s2)), ds);
    check_reopened (fc, ds, want, 4, "composition");
  }

  g_assert_true (cleave_patched_add (p, s2, 2, 2, &error));
  g_assert_true (cleave_export_patched_onnx (p, fp, &error));
  g_assert_no_error (error);
  om = cleave_onnx_model_load (fp, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (om->outputs->len, ==, 2);
  check_with_python (fp);
  {
    g_autoptr(CleavePatched) q = cleave_patched_new (random_model (17));
    g_assert_true (cleave_patched_add (q, s2, 2, 2, &error));
    g_assert_no_error (error);
    g_autofree float *want = scorer_scores (cleave_scorer_new_patched (g_steal_pointer (&q)), ds);
    check_reopened (fp, ds, want, N_CLASSES, "patched model");
  }
}

static void
test_best_of (void)
{
  g_autoptr(CleaveModel) m1 = random_model (19), m2 = random_model (20);
  g_autoptr(CleaveModuleSet) s1 = make_set (m1, 19, TRUE), s2 = make_set (m2, 20, TRUE);
  g_autoptr(GError) error = NULL;
  g_autofree int *chosen = NULL;
  CleaveModuleSet *sets[2] = { s1, s2 };
  g_autoptr(CleaveComposition) c = NULL;

  ((CleaveModule *) s1->modules->pdata[0])->val_f1 = 0.9;
  ((CleaveModule *) s2->modules->pdata[0])->val_f1 = 0.8;
  ((CleaveModule *) s1->modules->pdata[1])->val_f1 = 0.1;
  ((CleaveModule *) s2->modules->pdata[1])->val_f1 = 0.7;
  c = cleave_composition_best_of (sets, 2, &chosen, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_composition_n_classes (c), ==, N_CLASSES);
  g_assert_cmpint (chosen[0], ==, 0);
  g_assert_cmpint (chosen[1], ==, 1);
  g_assert_true (cleave_composition_module (c, 1)->val_f1 == 0.7);
  g_assert_cmpuint (c->sources->len, ==, 2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/compose/argmax-of-calibrated-scores", test_argmax);
  g_test_add_func ("/compose/shared-equals-one-by-one", test_shared);
  g_test_add_func ("/compose/patch-arithmetic", test_patch_arithmetic);
  g_test_add_func ("/compose/files-round-trip", test_files);
  g_test_add_func ("/compose/files-malformed", test_malformed);
  g_test_add_func ("/compose/metadata-wrong-types-no-criticals", test_metadata_wrong_types);
  g_test_add_func ("/compose/files-never-through-tmpdir", test_no_tmpdir);
  g_test_add_func ("/compose/export-onnx", test_export);
  g_test_add_func ("/compose/best-of-many", test_best_of);
  return g_test_run ();
}
