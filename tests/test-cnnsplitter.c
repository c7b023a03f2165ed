/* test-cnnsplitter.c: CNNSplitter building blocks (importance, grouped
 * encoding with ties, GA operators) and short GA runs on a tiny model
 * trained on synthetic stripes (improvement, no empty layer, cancel). */
#include "cleave-split.h"
#include "cleave-train.h"
#include "cleave-error.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>


/* The splitters' one cancellation convention: TRUE with a complete set and
 * no error, or FALSE with an error; kept modules only with
 * G_IO_ERROR_CANCELLED and result->cancelled. Returns the set, reporting a
 * cancel through *cancelled (may be NULL) instead of @error. */
static CleaveModuleSet *
check_split_result (gboolean ok, CleaveSplitResult *r, GError *local, gboolean *cancelled, GError **error)
{
  gboolean was = g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  g_assert_true (ok == (local == NULL));
  g_assert_true (!ok || r->set != NULL);
  g_assert_true (ok || was || r->set == NULL);
  g_assert_true (r->cancelled == was);
  g_assert_cmpint (r->cancelled_at, >=, 0);
  if (cancelled)
    *cancelled = was;
  if (was)
    g_error_free (local);
  else if (local)
    g_propagate_error (error, local);
  return r->set;
}

/* cleave_ga_split under the cancellation convention (see check_split_result). */
static CleaveModuleSet *
ga_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds, const int *val_idx, int n_val,
          const CleaveGaSplitOptions *opt, CleaveProgressFunc progress, gpointer user_data,
          GCancellable *cancellable, gboolean *cancelled, GError **error)
{
  CleaveSplitResult r = { 0 };
  GError *local = NULL;
  gboolean ok = cleave_ga_split (model, backend, ds, val_idx, n_val, opt, progress, user_data, cancellable, &r, &local);

  return check_split_result (ok, &r, local, cancelled, error);
}

static CleaveBackend *
cpu (void)
{
  static CleaveBackend *b;
  if (b == NULL)
    b = cleave_backend_cpu_new ();
  return b;
}

static CleaveDataset *
new_dataset (int n, int c, int h, int w, int n_classes)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  ds->name = g_strdup ("synthetic");
  ds->n = n, ds->c = c, ds->h = h, ds->w = w;
  ds->pixels = g_new0 (guint8, (gsize) n * c * h * w);
  ds->labels = g_new0 (guint8, n);
  ds->n_classes = n_classes;
  ds->class_names = g_new0 (char *, n_classes + 1);
  for (int k = 0; k < n_classes; k++)
    ds->class_names[k] = g_strdup_printf ("class%d", k);
  return ds;
}

/* ---- importance against a host computation ---- */

#define IH 6
#define IW 6
#define IK 3     /* kernels */
#define IN 40    /* images */

/* input → conv(3, 3×3, pad 1) → relu → flatten → linear(2) */
static CleaveModel *
one_conv_model (guint64 seed)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_new (1, IH, IW);
  int x = cleave_graph_add_conv2d (g, "conv", 0, IK, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_relu (g, "relu", x);
  x = cleave_graph_add_flatten (g, "flat", x);
  cleave_graph_add_linear (g, "fc", x, 2, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  g_assert_no_error (error);
  cleave_graph_init_params (g, seed);
  {
    /* kernel 1 dominates: ten times the weights and a positive bias */
    CleaveParam *w = cleave_graph_param (g, cleave_graph_find_param (g, "conv.weight"));
    CleaveParam *b = cleave_graph_param (g, cleave_graph_find_param (g, "conv.bias"));
    for (int q = 0; q < 9; q++)
      w->data[9 + q] = 10.0f * fabsf (w->data[9 + q]);
    b->data[1] = 1.0f;
  }
  {
    CleaveModel *m = cleave_model_new (g, 2, NULL);
    m->mean[0] = 0.5f;
    m->std[0] = 0.25f;
    return m;
  }
}

/* Host forward: per image the mean |relu(conv)| of each kernel and the logits. */
static void
host_forward (CleaveModel *m, const CleaveDataset *ds, int i, double *act_mean, double *logits)
{
  CleaveGraph *g = m->graph;
  const float *w = cleave_graph_param (g, cleave_graph_find_param (g, "conv.weight"))->data;
  const float *b = cleave_graph_param (g, cleave_graph_find_param (g, "conv.bias"))->data;
  const float *fw = cleave_graph_param (g, cleave_graph_find_param (g, "fc.weight"))->data;
  const float *fb = cleave_graph_param (g, cleave_graph_find_param (g, "fc.bias"))->data;
  double act[IK * IH * IW];
  double x[IH * IW];

  for (int q = 0; q < IH * IW; q++)
    x[q] = (ds->pixels[(gsize) i * IH * IW + q] / 255.0 - m->mean[0]) / m->std[0];
  for (int k = 0; k < IK; k++)
    {
      act_mean[k] = 0;
      for (int r = 0; r < IH; r++)
        for (int c = 0; c < IW; c++)
          {
            double s = b[k];
            for (int dr = -1; dr <= 1; dr++)
              for (int dc = -1; dc <= 1; dc++)
                if (r + dr >= 0 && r + dr < IH && c + dc >= 0 && c + dc < IW)
                  s += w[k * 9 + (dr + 1) * 3 + dc + 1] * x[(r + dr) * IW + c + dc];
            act[(k * IH + r) * IW + c] = s > 0 ? s : 0;
            act_mean[k] += act[(k * IH + r) * IW + c] / (IH * IW);
          }
    }
  for (int o = 0; o < 2; o++)
    {
      logits[o] = fb[o];
      for (int q = 0; q < IK * IH * IW; q++)
        logits[o] += fw[o * IK * IH * IW + q] * act[q];
    }
}

static void
check_importance (double min_conf)
{
  g_autoptr(CleaveModel) m = one_conv_model (3);
  CleaveDataset *ds = new_dataset (IN, 1, IH, IW, 2);
  g_autoptr(GRand) rng = g_rand_new_with_seed (5);
  g_autoptr(GError) error = NULL;
  g_autofree float *imp = NULL;
  gboolean fallback[2];
  double expect[2][IK] = { { 0 } }, expect_all[2][IK] = { { 0 } };
  int n_conf[2] = { 0 }, n_all[2] = { 0 }, correct = 0;
  double acc;

  for (gsize q = 0; q < (gsize) IN * IH * IW; q++)
    ds->pixels[q] = (guint8) g_rand_int_range (rng, 0, 256);
  for (int i = 0; i < IN; i++)
    ds->labels[i] = (guint8) (i % 2);
  for (int i = 0; i < IN; i++)
    {
      double a[IK], lg[2], p;
      int y = ds->labels[i], pred;
      host_forward (m, ds, i, a, lg);
      pred = lg[1] > lg[0];
      p = 1.0 / (1.0 + exp (lg[1 - pred] - lg[pred]));
      correct += pred == y;
      for (int k = 0; k < IK; k++)
        expect_all[y][k] += a[k];
      n_all[y]++;
      if (pred == y && p >= min_conf)
        {
          for (int k = 0; k < IK; k++)
            expect[y][k] += a[k];
          n_conf[y]++;
        }
    }

  /* the confident path must really be exercised, and differ from the fallback */
  if (min_conf < 1.0)
    g_assert_true (n_conf[0] > 0 && n_conf[0] < n_all[0]);
  imp = cleave_ga_kernel_importance (m, cpu (), ds, NULL, 0, min_conf, 1, fallback, &acc, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (imp);
  g_assert_cmpfloat_with_epsilon (acc, (double) correct / IN, 1e-9);
  for (int c = 0; c < 2; c++)
    {
      gboolean fb = n_conf[c] < 1;
      g_assert_cmpint (fallback[c], ==, fb);
      for (int k = 0; k < IK; k++)
        {
          double e = fb ? expect_all[c][k] / n_all[c] : expect[c][k] / n_conf[c];
          float v = imp[c * IK + k];
          g_assert_cmpfloat (v, >=, 0.0f);
          g_assert_cmpfloat (fabs (v - e), <=, 1e-4 * (1 + fabs (e)));
        }
      /* the dominant kernel ranks first for every class */
      g_assert_cmpfloat (imp[c * IK + 1], >, imp[c * IK + 0]);
      g_assert_cmpfloat (imp[c * IK + 1], >, imp[c * IK + 2]);
    }
  cleave_dataset_free (ds);
}

static void
test_importance_all_images (void)
{
  /* no image reaches confidence 1.01: every class falls back to all its images */
  check_importance (1.01);
}

static void
test_importance_confident (void)
{
  check_importance (0.6);
}

/* ---- encoding with a residual tie and a wide layer ---- */

/* a(5) → relu ─┬─ b(5) → relu ─ add ─ c(300) → relu → gap → fc(3)
 *              └──────────────┘ */
static CleaveGraph *
tied_graph (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_new (1, 6, 6);
  int a = cleave_graph_add_conv2d (g, "a", 0, 5, 3, 1, 1, 1, TRUE);
  int ra = cleave_graph_add_relu (g, "ra", a);
  int b = cleave_graph_add_conv2d (g, "b", ra, 5, 3, 1, 1, 1, TRUE);
  int rb = cleave_graph_add_relu (g, "rb", b);
  int s = cleave_graph_add_add (g, "add", ra, rb);
  int c = cleave_graph_add_conv2d (g, "c", s, 300, 3, 1, 1, 1, TRUE);
  int rc = cleave_graph_add_relu (g, "rc", c);
  int p = cleave_graph_add_global_avgpool (g, "gap", rc);
  cleave_graph_add_linear (g, "fc", p, 3, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  g_assert_no_error (error);
  return g;
}

static void
test_encoding_ties (void)
{
  g_autoptr(CleaveGraph) g = tied_graph ();
  int total = cleave_graph_total_kernels (g);
  g_autofree float *imp = g_new0 (float, total);
  g_autofree guint8 *genes = NULL, *keep = g_new (guint8, total);
  const float site0[5] = { 0.1f, 0.5f, 0.3f, 0.9f, 0.2f };
  const float site1[5] = { 0.0f, 0.0f, 0.5f, 0.0f, 0.0f };
  CleaveGaEncoding *enc;
  int first, count, root, n;

  g_assert_cmpint (cleave_graph_n_mask_sites (g), ==, 3);
  g_assert_cmpint (cleave_graph_mask_site (g, 1)->tie, ==, 0);
  g_assert_cmpint (total, ==, 310);
  memcpy (imp, site0, sizeof site0);
  memcpy (imp + 5, site1, sizeof site1);
  for (int k = 0; k < 300; k++)
    imp[10 + k] = (float) k;   /* the last kernels matter most */

  enc = cleave_ga_encoding_new (g, imp);
  n = cleave_ga_encoding_n_genes (enc);
  g_assert_cmpint (cleave_ga_encoding_n_layers (enc), ==, 2);
  g_assert_cmpint (n, ==, 5 + 100);   /* 5 kernels → 5 groups; 300 kernels → 100 groups */
  cleave_ga_encoding_layer (enc, 0, &first, &count, &root);
  g_assert_cmpint (first, ==, 0);
  g_assert_cmpint (count, ==, 5);
  g_assert_cmpint (root, ==, 0);
  cleave_ga_encoding_layer (enc, 1, &first, &count, &root);
  g_assert_cmpint (first, ==, 5);
  g_assert_cmpint (count, ==, 100);
  g_assert_cmpint (root, ==, 2);

  genes = g_new0 (guint8, n);
  /* all genes on: everything kept */
  memset (genes, 1, n);
  cleave_ga_encoding_decode (enc, genes, keep);
  for (int i = 0; i < total; i++)
    g_assert_cmpint (keep[i], ==, 1);

  /* group 0 of the tied layer is its top kernel by summed importance
   * (0.9 + 0 at kernel 3); group 1 of the wide layer is kernels 296..294 */
  memset (genes, 0, n);
  genes[0] = 1;
  genes[5 + 1] = 1;
  cleave_ga_encoding_decode (enc, genes, keep);
  for (int k = 0; k < 5; k++)
    {
      g_assert_cmpint (keep[k], ==, k == 3);
      g_assert_cmpint (keep[5 + k], ==, keep[k]);   /* tied sites agree */
    }
  for (int k = 0; k < 300; k++)
    g_assert_cmpint (keep[10 + k], ==, k >= 294 && k <= 296);

  /* group 1 of the tied layer: kernel 2 (0.3 + 0.5 = 0.8 beats 0.5) */
  memset (genes, 0, n);
  genes[1] = 1;
  genes[5] = 1;
  cleave_ga_encoding_decode (enc, genes, keep);
  for (int k = 0; k < 5; k++)
    g_assert_cmpint (keep[k], ==, k == 2);

  /* no gene on: decoding still keeps each layer's best kernel, and repair
   * turns on the most important group of both layers */
  memset (genes, 0, n);
  cleave_ga_encoding_decode (enc, genes, keep);
  for (int k = 0; k < 5; k++)
    g_assert_cmpint (keep[k] + keep[5 + k], ==, k == 3 ? 2 : 0);
  for (int k = 0; k < 300; k++)
    g_assert_cmpint (keep[10 + k], ==, k == 299);
  g_assert_cmpint (cleave_ga_encoding_repair (enc, genes), ==, 2);
  g_assert_cmpint (genes[0], ==, 1);
  g_assert_cmpint (genes[5], ==, 1);
  g_assert_cmpint (cleave_ga_encoding_repair (enc, genes), ==, 0);
  cleave_ga_encoding_free (enc);
}

static void
test_encoding_small_layer (void)
{
  /* a layer with fewer kernels than groups gets one group per kernel */
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveGraph) g = cleave_graph_new (1, 4, 4);
  int x = cleave_graph_add_conv2d (g, "a", 0, 3, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_batchnorm2d (g, "bn", x);
  x = cleave_graph_add_relu (g, "r", x);
  x = cleave_graph_add_conv2d (g, "b", x, 12, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_relu (g, "r2", x);
  x = cleave_graph_add_flatten (g, "f", x);
  cleave_graph_add_linear (g, "fc", x, 2, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  {
    CleaveGaEncoding *enc = cleave_ga_encoding_new (g, NULL);
    guint8 genes[13] = { 0 };
    guint8 keep[15];
    int first, count;
    g_assert_cmpint (cleave_ga_encoding_n_genes (enc), ==, 3 + 10);
    /* 12 kernels in 10 groups: sizes 1 or 2, covering every kernel once */
    cleave_ga_encoding_layer (enc, 1, &first, &count, NULL);
    g_assert_cmpint (count, ==, 10);
    for (int j = 0; j < count; j++)
      {
        int kept = 0;
        memset (genes, 0, sizeof genes);
        genes[0] = 1;
        genes[first + j] = 1;
        cleave_ga_encoding_decode (enc, genes, keep);
        for (int k = 0; k < 12; k++)
          kept += keep[3 + k];
        g_assert_cmpint (kept, >=, 1);
        g_assert_cmpint (kept, <=, 2);
      }
    memset (genes, 1, sizeof genes);
    cleave_ga_encoding_decode (enc, genes, keep);
    for (int k = 0; k < 15; k++)
      g_assert_cmpint (keep[k], ==, 1);
    cleave_ga_encoding_free (enc);
  }
}

/* ---- operators ---- */

static void
test_crossover_mutation (void)
{
  enum { N = 57 };
  guint8 a[N], b[N], child[N], m[N];
  g_autoptr(GRand) rng = g_rand_new_with_seed (9);

  for (int i = 0; i < N; i++)
    {
      a[i] = (guint8) g_rand_int_range (rng, 0, 2);
      b[i] = (guint8) g_rand_int_range (rng, 0, 2);
    }
  for (int point = 0; point <= N; point++)
    {
      cleave_ga_crossover (a, b, N, point, child);
      for (int i = 0; i < N; i++)
        g_assert_cmpint (child[i], ==, i < point ? a[i] : b[i]);
    }

  memcpy (m, a, N);
  g_assert_cmpint (cleave_ga_mutate (m, N, 0.0, rng), ==, 0);
  g_assert_cmpmem (m, N, a, N);
  g_assert_cmpint (cleave_ga_mutate (m, N, 1.0, rng), ==, N);
  for (int i = 0; i < N; i++)
    g_assert_cmpint (m[i], ==, !a[i]);

  /* the reported flips are exactly the changed genes, genes stay binary,
   * and the rate is roughly honoured */
  {
    int total = 0;
    for (int rep = 0; rep < 200; rep++)
      {
        int flips, diff = 0;
        memcpy (m, a, N);
        flips = cleave_ga_mutate (m, N, 0.05, rng);
        for (int i = 0; i < N; i++)
          {
            g_assert_true (m[i] == 0 || m[i] == 1);
            diff += m[i] != a[i];
          }
        g_assert_cmpint (flips, ==, diff);
        total += flips;
      }
    g_assert_cmpfloat ((double) total / (200.0 * N), >, 0.03);
    g_assert_cmpfloat ((double) total / (200.0 * N), <, 0.07);
  }
}

/* ---- GA runs on a tiny trained model ---- */

#define SH 8
#define SW 8
#define SC 4      /* classes */
#define SN 480

/* Class k: a bright horizontal band at rows 2k, 2k+1, on noise. */
static CleaveDataset *
stripes (guint32 seed)
{
  CleaveDataset *ds = new_dataset (SN, 1, SH, SW, SC);
  g_autoptr(GRand) rng = g_rand_new_with_seed (seed);
  for (int i = 0; i < SN; i++)
    {
      int k = i % SC;
      ds->labels[i] = (guint8) k;
      for (int r = 0; r < SH; r++)
        for (int c = 0; c < SW; c++)
          {
            int v = g_rand_int_range (rng, 0, 120);
            if (r / 2 == k)
              v += 120;
            ds->pixels[(gsize) i * SH * SW + r * SW + c] = (guint8) v;
          }
    }
  return ds;
}

static CleaveModel *
trained_model (const CleaveDataset *ds)
{
  static CleaveModel *cached;
  g_autoptr(GError) error = NULL;
  CleaveGraph *g;
  CleaveTrainOptions to;
  CleaveTrainResult res = { 0 };
  g_autofree int *tr = NULL, *va = NULL;
  int ntr, nva, x;

  if (cached)
    return cached;
  g = cleave_graph_new (1, SH, SW);
  x = cleave_graph_add_conv2d (g, "conv1", 0, 8, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn1", x);
  x = cleave_graph_add_relu (g, "relu1", x);
  x = cleave_graph_add_maxpool2d (g, "pool1", x, 2, 2, 0);
  x = cleave_graph_add_conv2d (g, "conv2", x, 12, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn2", x);
  x = cleave_graph_add_relu (g, "relu2", x);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  cleave_graph_add_linear (g, "fc", x, SC, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  cleave_graph_init_params (g, 1);
  cached = cleave_model_new (g, SC, (const char *const *) ds->class_names);
  cleave_dataset_split (ds, 0.25, 0, &tr, &ntr, &va, &nva);
  cleave_model_set_norm_from_dataset (cached, ds, tr, ntr);
  cleave_train_options_init (&to);
  to.epochs = 8;
  to.batch = 32;
  to.lr = 0.05f;
  to.use_augment = FALSE;
  g_assert_true (cleave_train (cached, cpu (), ds, tr, ntr, va, nva, &to, NULL, NULL, NULL, &res, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (res.best_val_accuracy, >, 0.8);
  cleave_train_result_clear (&res);
  return cached;
}

static void
small_options (CleaveGaSplitOptions *o)
{
  cleave_ga_split_options_init (o);
  o->population = 8;
  o->generations = 5;
  o->parents = 4;
  o->elites = 2;
  o->val_images = 80;
  o->sensitivity_images = 40;
  o->eval_groups = 4;
  o->eval_batch = 160;
  o->seed = 7;
}

static JsonArray *
parse_log (const CleaveModuleSet *set, JsonParser *p)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_assert_nonnull (set->log);
  text = cleave_split_log_to_json (set->log);
  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)));
  return json_node_get_array (json_parser_get_root (p));
}

typedef struct {
  int generations_seen;
  double last_fraction;
  gboolean fraction_monotone;
  gboolean fitness_finite;
} ProgressLog;

static void
record_progress (const CleaveProgress *p, gpointer user_data)
{
  ProgressLog *log = user_data;
  if (p->fraction + 1e-12 < log->last_fraction)
    log->fraction_monotone = FALSE;
  log->last_fraction = p->fraction;
  if (p->epoch_done)
    {
      log->generations_seen++;
      if (!isfinite (p->fitness) || !isfinite (p->krr) || !isfinite (p->val_accuracy))
        log->fitness_finite = FALSE;
    }
}

static void
check_set_shape (const CleaveModuleSet *set, const CleaveModel *model)
{
  g_assert_cmpstr (set->method, ==, "ga");
  g_assert_cmpint (set->modules->len, ==, model->n_classes);
  for (guint k = 0; k < set->modules->len; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      g_assert_cmpint (m->class_index, ==, (int) k);
      g_assert_false (m->has_head);
      for (int s = 0; s < m->n_sites; s++)
        g_assert_cmpint (m->n_kept[s], >=, 1);
      g_assert_cmpfloat (m->krr, >, 0.0);
      g_assert_cmpfloat (m->krr, <=, 1.0);
    }
}

static void
test_ga_improves (gconstpointer data)
{
  CleaveGaFitness fitness = GPOINTER_TO_INT (data);
  g_autoptr(CleaveDataset) ds = stripes (1);
  CleaveModel *model = trained_model (ds);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) lp = json_parser_new ();
  g_autoptr(JsonParser) op = json_parser_new ();
  g_autofree int *tr = NULL, *va = NULL;
  CleaveGaSplitOptions o;
  ProgressLog plog = { 0, 0, TRUE, TRUE };
  gboolean cancelled = TRUE;
  CleaveModuleSet *set;
  JsonArray *log;
  JsonObject *opts, *sens;
  int ntr, nva;
  double first, last, krr_sum = 0;

  cleave_dataset_split (ds, 0.25, 0, &tr, &ntr, &va, &nva);
  small_options (&o);
  o.fitness = fitness;
  set = ga_split (model, cpu (), ds, va, nva, &o, record_progress, &plog, NULL, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_nonnull (set);
  g_assert_false (cancelled);
  check_set_shape (set, model);

  /* one log entry and one chart point per generation, generation 0 included */
  log = parse_log (set, lp);
  g_assert_cmpint (json_array_get_length (log), ==, o.generations + 1);
  g_assert_cmpint (plog.generations_seen, ==, o.generations + 1);
  g_assert_true (plog.fraction_monotone);
  g_assert_true (plog.fitness_finite);
  for (guint i = 0; i < json_array_get_length (log); i++)
    {
      JsonObject *e = json_array_get_object_element (log, i);
      g_assert_cmpint (json_object_get_int_member (e, "generation"), ==, i);
      g_assert_true (json_object_has_member (e, "val_accuracy"));
      g_assert_true (json_object_has_member (e, "mean_krr"));
    }
  first = json_object_get_double_member (json_array_get_object_element (log, 0), "best_fitness");
  last = json_object_get_double_member (json_array_get_object_element (log, o.generations), "best_fitness");
  g_test_message ("fitness %s: generation 0 %.4f, generation %d %.4f",
                  fitness == CLEAVE_GA_FITNESS_KRR ? "krr" : "reference", first, o.generations, last);
  g_assert_cmpfloat (last, >, first);

  /* the search dropped kernels, and the composition still works */
  for (guint k = 0; k < set->modules->len; k++)
    krr_sum += ((CleaveModule *) set->modules->pdata[k])->krr;
  g_assert_cmpfloat (krr_sum / set->modules->len, <, 0.95);
  g_assert_cmpfloat (set->composed_accuracy, >, 0.6);
  g_assert_cmpfloat (set->source_accuracy, >, 0.8);

  /* the options JSON carries the sensitivity table: one row per layer, ten ratios */
  g_assert_true (json_parser_load_from_data (op, set->options_json, -1, &error));
  g_assert_no_error (error);
  opts = json_node_get_object (json_parser_get_root (op));
  g_assert_cmpstr (json_object_get_string_member (opts, "method"), ==, "ga");
  g_assert_cmpint (json_object_get_int_member (opts, "population"), ==, o.population);
  /* the modules come from the generation with the best mean fitness */
  {
    int sel = json_object_get_int_member (opts, "selected_generation");
    double sel_fit;
    g_assert_cmpint (sel, >=, 0);
    g_assert_cmpint (sel, <=, o.generations);
    sel_fit = json_object_get_double_member (json_array_get_object_element (log, sel), "best_fitness");
    for (guint i = 0; i < json_array_get_length (log); i++)
      g_assert_cmpfloat (json_object_get_double_member (json_array_get_object_element (log, i), "best_fitness"),
                         <=, sel_fit);
  }
  sens = json_object_get_object_member (opts, "sensitivity");
  g_assert_nonnull (sens);
  g_assert_cmpint (json_array_get_length (json_object_get_array_member (sens, "layers")), ==, 2);
  for (int l = 0; l < 2; l++)
    {
      JsonObject *row = json_array_get_object_element (json_object_get_array_member (sens, "layers"), l);
      JsonArray *acc = json_object_get_array_member (row, "accuracy");
      g_assert_cmpint (json_array_get_length (acc), ==, 10);
      for (int r = 0; r < 10; r++)
        {
          double a = json_array_get_double_element (acc, r);
          g_assert_cmpfloat (a, >=, 0.0);
          g_assert_cmpfloat (a, <=, 1.0);
        }
    }
  cleave_module_set_free (set);
}

typedef struct {
  GCancellable *cancellable;
  int cancel_at_generation;
  gint64 cancelled_at;
} CancelCtx;

static void
cancel_progress (const CleaveProgress *p, gpointer user_data)
{
  CancelCtx *ctx = user_data;
  if (p->epoch_done && p->epoch == ctx->cancel_at_generation && ctx->cancelled_at == 0)
    {
      ctx->cancelled_at = g_get_monotonic_time ();
      g_cancellable_cancel (ctx->cancellable);
    }
}

static void
test_cancel (void)
{
  g_autoptr(CleaveDataset) ds = stripes (1);
  CleaveModel *model = trained_model (ds);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) lp = json_parser_new ();
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autofree int *tr = NULL, *va = NULL;
  CleaveGaSplitOptions o;
  CancelCtx ctx = { cancellable, 1, 0 };
  gboolean cancelled = FALSE;
  CleaveModuleSet *set;
  gint64 done;
  int ntr, nva;

  cleave_dataset_split (ds, 0.25, 0, &tr, &ntr, &va, &nva);
  small_options (&o);
  o.generations = 50;
  set = ga_split (model, cpu (), ds, va, nva, &o, cancel_progress, &ctx, cancellable, &cancelled, &error);
  done = g_get_monotonic_time ();
  g_assert_no_error (error);
  g_assert_nonnull (set);
  g_assert_true (cancelled);
  g_assert_cmpint (ctx.cancelled_at, >, 0);
  g_assert_cmpint (done - ctx.cancelled_at, <, G_USEC_PER_SEC);
  check_set_shape (set, model);
  /* the best so far: generations 0 and 1 are in the log, nothing after */
  g_assert_cmpint (json_array_get_length (parse_log (set, lp)), ==, 2);
  cleave_module_set_free (set);

  /* cancelled before anything ran: the whole model per class */
  {
    g_autoptr(GCancellable) pre = g_cancellable_new ();
    g_autoptr(JsonParser) lp2 = json_parser_new ();
    g_cancellable_cancel (pre);
    cancelled = FALSE;
    set = ga_split (model, cpu (), ds, va, nva, &o, NULL, NULL, pre, &cancelled, &error);
    g_assert_no_error (error);
    g_assert_nonnull (set);
    g_assert_true (cancelled);
    check_set_shape (set, model);
    for (guint k = 0; k < set->modules->len; k++)
      g_assert_cmpfloat (((CleaveModule *) set->modules->pdata[k])->krr, ==, 1.0);
    g_assert_cmpint (json_array_get_length (parse_log (set, lp2)), ==, 0);
    cleave_module_set_free (set);
  }
}

static void
test_bad_options (void)
{
  g_autoptr(CleaveDataset) ds = stripes (1);
  CleaveModel *model = trained_model (ds);
  CleaveGaSplitOptions o;
  struct { const char *what; int field; } cases[] = {
    { "population", 0 }, { "parents", 1 }, { "elites", 2 }, { "mutation", 3 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr(GError) error = NULL;
      gboolean cancelled = TRUE;
      small_options (&o);
      switch (cases[i].field)
        {
        case 0: o.population = 1; break;
        case 1: o.parents = o.population + 1; break;
        case 2: o.elites = o.population; break;
        default: o.mutation = 1.5; break;
        }
      g_assert_null (ga_split (model, cpu (), ds, NULL, 0, &o, NULL, NULL, NULL, &cancelled, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, cases[i].what));
      g_assert_false (cancelled);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/cnnsplitter/importance/fallback-all-images", test_importance_all_images);
  g_test_add_func ("/core/cnnsplitter/importance/confident-images", test_importance_confident);
  g_test_add_func ("/core/cnnsplitter/encoding/ties-and-groups", test_encoding_ties);
  g_test_add_func ("/core/cnnsplitter/encoding/small-layer", test_encoding_small_layer);
  g_test_add_func ("/core/cnnsplitter/operators", test_crossover_mutation);
  g_test_add_data_func ("/core/cnnsplitter/ga/improves-reference", GINT_TO_POINTER (CLEAVE_GA_FITNESS_REFERENCE),
                        test_ga_improves);
  g_test_add_data_func ("/core/cnnsplitter/ga/improves-krr", GINT_TO_POINTER (CLEAVE_GA_FITNESS_KRR),
                        test_ga_improves);
  g_test_add_func ("/core/cnnsplitter/ga/cancel", test_cancel);
  g_test_add_func ("/core/cnnsplitter/ga/bad-options", test_bad_options);
  return g_test_run ();
}
