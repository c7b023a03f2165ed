/* test-gradsplitter.c: GradSplitter — one search step against PyTorch
 * (tests/reference/gradsplitter_step.py), and short end-to-end searches on a
 * tiny model trained on synthetic data (KRR falls, selection rule, cancel). */
#include <glib.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <math.h>
#include <string.h>

#include "cleave-gradsplitter-private.h"
#include "cleave-device.h"
#include "cleave-safetensors.h"
#include "cleave-train.h"


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

/* cleave_grad_split under the cancellation convention, checked on every call:
 * TRUE with a complete set and no error, or FALSE with an error; kept modules
 * only with G_IO_ERROR_CANCELLED, which is reported through *cancelled
 * instead of @error. */
static CleaveModuleSet *
grad_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds, const int *train_idx, int n_train,
            const int *val_idx, int n_val, const CleaveGradSplitOptions *opt, CleaveProgressFunc progress,
            gpointer user_data, GCancellable *cancellable, gboolean *cancelled, GError **error)
{
  CleaveSplitResult r = { 0 };
  GError *local = NULL;
  gboolean ok = cleave_grad_split (model, backend, ds, train_idx, n_train, val_idx, n_val, opt, progress, user_data,
                                   cancellable, &r, &local);

  return check_split_result (ok, &r, local, cancelled, error);
}

static CleaveBackend *backend;

/* ------------------------------------------------ one step vs PyTorch */

static float *
golden (CleaveSafetensors *st, const char *name, gsize expect)
{
  g_autoptr(GError) error = NULL;
  const CleaveSafeTensor *t = cleave_safetensors_find (st, name);
  float *d;

  if (t == NULL)
    g_error ("golden file: no tensor '%s'", name);
  d = cleave_safe_tensor_to_f32 (t, expect, "gradsplitter_step.safetensors", &error);
  g_assert_no_error (error);
  return d;
}

/* |a - b| <= 1e-5 + 1e-4 |b| everywhere. */
static void
assert_close (const char *what, const float *a, const float *b, gsize n)
{
  for (gsize i = 0; i < n; i++)
    if (!(fabsf (a[i] - b[i]) <= 1e-5f + 1e-4f * fabsf (b[i])))
      g_error ("%s[%" G_GSIZE_FORMAT "]: cleave %.8g, pytorch %.8g", what, i, a[i], b[i]);
}

static CleaveGraph *
tiny_residual_graph (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_new (1, 6, 6);
  int x, r1, r2;

  x = cleave_graph_add_conv2d (g, "conv1", 0, 4, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_batchnorm2d (g, "bn1", x);
  r1 = cleave_graph_add_relu (g, "relu1", x);
  x = cleave_graph_add_conv2d (g, "conv2", r1, 4, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_batchnorm2d (g, "bn2", x);
  r2 = cleave_graph_add_relu (g, "relu2", x);
  x = cleave_graph_add_add (g, "add", r1, r2);
  x = cleave_graph_add_maxpool2d (g, "pool", x, 2, 2, 0);
  x = cleave_graph_add_conv2d (g, "conv3", x, 5, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_batchnorm2d (g, "bn3", x);
  x = cleave_graph_add_relu (g, "relu3", x);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  x = cleave_graph_add_flatten (g, "flatten", x);
  cleave_graph_add_linear (g, "fc", x, 3, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  g_assert_no_error (error);
  return g;
}

static void
check_step (CleaveSafetensors *st, CleaveGradSearch *s, int k)
{
  g_autoptr(GError) error = NULL;
  const char *hn[4] = { "w1", "b1", "w2", "b2" };
  gsize hsz[4] = { 3 * 10 * 3, 3 * 10, 3 * 10, 3 };
  g_autofree char *xn = g_strdup_printf ("x%d", k), *yn = g_strdup_printf ("labels%d", k);
  g_autofree float *x = golden (st, xn, 4 * 36), *y = golden (st, yn, 4);
  g_autofree float *loss_ref = NULL, *scores_ref = NULL;
  float scores[12], *h[4], *hg[4];
  double loss;
  int correct;

  /* The scores the step sees are those of the current masks and heads. */
  g_assert_true (cleave_grad_search_scores (s, x, 4, scores, &error));
  g_assert_no_error (error);
  {
    g_autofree char *n = g_strdup_printf ("step%d.scores", k);
    scores_ref = golden (st, n, 12);
    assert_close (n, scores, scores_ref, 12);
  }
  g_assert_true (cleave_grad_search_step (s, x, y, 4, 0.5f, &loss, &correct, &error));
  g_assert_no_error (error);
  {
    g_autofree char *n = g_strdup_printf ("step%d.loss", k);
    float lf = (float) loss;
    loss_ref = golden (st, n, 1);
    assert_close (n, &lf, loss_ref, 1);
  }
  for (int site = 0; site <= 2; site += 2)
    {
      gsize cnt = site == 0 ? 12 : 15;
      g_autofree char *gn = g_strdup_printf ("step%d.theta_grad.%d", k, site);
      g_autofree char *tn = g_strdup_printf ("step%d.theta.%d", k, site);
      g_autofree float *gref = golden (st, gn, cnt), *tref = golden (st, tn, cnt);
      assert_close (gn, cleave_grad_search_theta_grad (s, site), gref, cnt);
      assert_close (tn, cleave_grad_search_theta (s, site), tref, cnt);
    }
  /* Site 1 is tied to site 0: the same θ. */
  g_assert_true (cleave_grad_search_theta (s, 1) == cleave_grad_search_theta (s, 0));
  cleave_grad_search_head_grads (s, &hg[0], &hg[1], &hg[2], &hg[3]);
  cleave_grad_search_heads (s, &h[0], &h[1], &h[2], &h[3]);
  for (int i = 0; i < 4; i++)
    {
      g_autofree char *gn = g_strdup_printf ("step%d.head_grad.%s", k, hn[i]);
      g_autofree char *pn = g_strdup_printf ("step%d.head.%s", k, hn[i]);
      g_autofree float *gref = golden (st, gn, hsz[i]), *pref = golden (st, pn, hsz[i]);
      assert_close (gn, hg[i], gref, hsz[i]);
      assert_close (pn, h[i], pref, hsz[i]);
    }
}

static void
test_step_matches_pytorch (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "reference", "golden",
                                                 "gradsplitter_step.safetensors", NULL);
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, &error);
  g_autoptr(CleaveGraph) graph = NULL;
  CleaveGradSearch *s;
  const char *hn[4] = { "head.w1", "head.b1", "head.w2", "head.b2" };
  gsize hsz[4] = { 90, 30, 30, 3 };
  float *h[4];

  g_assert_no_error (error);
  graph = tiny_residual_graph ();
  g_assert_cmpint (cleave_graph_n_mask_sites (graph), ==, 3);
  g_assert_cmpint (cleave_graph_mask_site (graph, 1)->tie, ==, 0);
  for (int i = 0; i < cleave_graph_n_params (graph); i++)
    {
      CleaveParam *p = cleave_graph_param (graph, i);
      g_autofree float *d = golden (st, p->name, cleave_param_numel (p));
      memcpy (p->data, d, cleave_param_numel (p) * sizeof (float));
    }
  s = cleave_grad_search_new (graph, backend, 1.0f, 0, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_grad_search_n_modules (s), ==, 3);
  {
    g_autofree float *t0 = golden (st, "theta.0", 12), *t2 = golden (st, "theta.2", 15);
    memcpy (cleave_grad_search_theta (s, 0), t0, sizeof (float) * 12);
    memcpy (cleave_grad_search_theta (s, 2), t2, sizeof (float) * 15);
  }
  cleave_grad_search_heads (s, &h[0], &h[1], &h[2], &h[3]);
  for (int i = 0; i < 4; i++)
    {
      g_autofree float *d = golden (st, hn[i], hsz[i]);
      memcpy (h[i], d, sizeof (float) * hsz[i]);
    }
  g_assert_true (cleave_grad_search_sync_masks (s, &error));
  /* Module 1 has no positive θ at site 2: it keeps exactly one kernel there. */
  g_assert_cmpint (cleave_grad_search_kept (s), ==, 2 * (3 + 3 + 2) + (4 + 1 + 4));
  g_assert_true (cleave_grad_search_begin_phase (s, CLEAVE_GRAD_PHASE_JOINT, 0.05f, 0.01f, &error));
  g_assert_no_error (error);
  check_step (st, s, 1);
  check_step (st, s, 2);
  cleave_grad_search_free (s);
}

/* The logit loss (CE over the heads' pre-sigmoid outputs): the head
 * gradients of a head-only step against central finite differences of the
 * loss, on the tiny residual network with random heads. Bound: 2e-3
 * relative (float forward, double loss accumulation, h = 1e-3). */
static void
test_logit_loss_gradient (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveGraph) graph = tiny_residual_graph ();
  CleaveGradSearch *s;
  float x[4 * 36], y[4] = { 0, 1, 2, 1 };
  float *h[4], *hg[4];
  g_autofree float *grad = NULL;
  GRand *r = g_rand_new_with_seed (7);
  double loss, worst = 0;
  int correct;
  gsize hsz[4] = { 3 * 10 * 3, 3 * 10, 3 * 10, 3 };

  cleave_graph_init_params (graph, 4);
  for (int i = 0; i < 4 * 36; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1);
  s = cleave_grad_search_new (graph, backend, 1.0f, 1, &error);
  g_assert_no_error (error);
  cleave_grad_search_set_logit_loss (s, TRUE);
  cleave_grad_search_heads (s, &h[0], &h[1], &h[2], &h[3]);
  /* Heads away from the identity start, with no dead hidden unit. */
  for (int k = 0; k < 4; k++)
    for (gsize i = 0; i < hsz[k]; i++)
      h[k][i] = (float) g_rand_double_range (r, -0.8, 0.8) + (k == 1 ? 0.5f : 0.0f);
  /* lr 0: the step computes gradients and leaves the heads as they are. */
  g_assert_true (cleave_grad_search_begin_phase (s, CLEAVE_GRAD_PHASE_HEADS, 0, 0, &error));
  g_assert_true (cleave_grad_search_step (s, x, y, 4, 0, &loss, &correct, &error));
  g_assert_no_error (error);
  cleave_grad_search_head_grads (s, &hg[0], &hg[1], &hg[2], &hg[3]);
  for (int k = 0; k < 4; k++)
    {
      grad = g_memdup2 (hg[k], hsz[k] * sizeof (float));
      for (gsize i = 0; i < hsz[k]; i += 3)
        {
          const float eps = 1e-3f;
          float keep = h[k][i];
          double lp, lm, fd;
          h[k][i] = keep + eps;
          g_assert_true (cleave_grad_search_step (s, x, y, 4, 0, &lp, &correct, &error));
          h[k][i] = keep - eps;
          g_assert_true (cleave_grad_search_step (s, x, y, 4, 0, &lm, &correct, &error));
          h[k][i] = keep;
          fd = (lp - lm) / (2 * eps);
          worst = MAX (worst, fabs (fd - grad[i]) / MAX (1.0, fabs (fd)));
        }
      g_clear_pointer (&grad, g_free);
    }
  g_assert_cmpfloat (worst, <, 2e-3);
  /* And the loss is the CE over the pre-sigmoid outputs: recompute it from the scores. */
  {
    float sc[12];
    double ce = 0;
    g_assert_true (cleave_grad_search_scores (s, x, 4, sc, &error));
    for (int i = 0; i < 4; i++)
      {
        double z[3], mx = -INFINITY, sum = 0;
        for (int g = 0; g < 3; g++)
          z[g] = log (sc[i * 3 + g] / (1 - sc[i * 3 + g])), mx = MAX (mx, z[g]);
        for (int g = 0; g < 3; g++)
          sum += exp (z[g] - mx);
        ce += log (sum) + mx - z[(int) y[i]];
      }
    g_assert_true (cleave_grad_search_step (s, x, y, 4, 0, &loss, &correct, &error));
    g_assert_cmpfloat (fabs (ce / 4 - loss), <, 1e-4);
  }
  g_rand_free (r);
  cleave_grad_search_free (s);
}

/* ------------------------------------------------ end to end (synthetic) */

/* Three classes of 8×8 images: a bright 3×3 patch in one of three places, noise elsewhere. */
static CleaveDataset *
synthetic_dataset (int n, guint32 seed)
{
  CleaveDataset *ds = g_new0 (CleaveDataset, 1);
  GRand *r = g_rand_new_with_seed (seed);
  static const int pos[3][2] = { { 1, 1 }, { 1, 4 }, { 4, 2 } };

  ds->name = g_strdup ("synthetic");
  ds->source = g_strdup ("memory");
  ds->n = n, ds->c = 1, ds->h = 8, ds->w = 8;
  ds->n_classes = 3;
  ds->class_names = g_new0 (char *, 4);
  for (int k = 0; k < 3; k++)
    ds->class_names[k] = g_strdup_printf ("c%d", k);
  ds->pixels = g_new (guint8, (gsize) n * 64);
  ds->labels = g_new (guint8, n);
  for (int i = 0; i < n; i++)
    {
      int y = i % 3;
      guint8 *p = ds->pixels + (gsize) i * 64;
      ds->labels[i] = (guint8) y;
      for (int k = 0; k < 64; k++)
        p[k] = (guint8) g_rand_int_range (r, 0, 90);
      for (int dy = 0; dy < 3; dy++)
        for (int dx = 0; dx < 3; dx++)
          p[(pos[y][0] + dy) * 8 + pos[y][1] + dx] = (guint8) g_rand_int_range (r, 150, 256);
    }
  g_rand_free (r);
  return ds;
}

typedef struct {
  CleaveDataset *ds;
  CleaveModel *model;
  int *train, *val;
  int n_train, n_val;
} Fixture;

static Fixture fx;

static void
fixture_setup (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_new (1, 8, 8);
  CleaveTrainOptions topt;
  CleaveTrainResult res = { 0 };
  int x;

  x = cleave_graph_add_conv2d (g, "conv1", 0, 8, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn1", x);
  x = cleave_graph_add_relu (g, "relu1", x);
  x = cleave_graph_add_maxpool2d (g, "pool1", x, 2, 2, 0);
  x = cleave_graph_add_conv2d (g, "conv2", x, 12, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn2", x);
  x = cleave_graph_add_relu (g, "relu2", x);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  x = cleave_graph_add_flatten (g, "flatten", x);
  cleave_graph_add_linear (g, "fc", x, 3, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  cleave_graph_init_params (g, 5);

  fx.ds = synthetic_dataset (600, 11);
  fx.n_train = 480, fx.n_val = 120;
  fx.train = g_new (int, fx.n_train);
  fx.val = g_new (int, fx.n_val);
  for (int i = 0; i < 600; i++)
    if (i < 480)
      fx.train[i] = i;
    else
      fx.val[i - 480] = i;
  fx.model = cleave_model_new (g, 3, (const char *const *) fx.ds->class_names);
  cleave_model_set_norm_from_dataset (fx.model, fx.ds, fx.train, fx.n_train);
  cleave_train_options_init (&topt);
  topt.epochs = 6;
  topt.batch = 32;
  topt.lr = 0.05f;
  topt.use_augment = FALSE;
  g_assert_true (cleave_train (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &topt,
                               NULL, NULL, NULL, &res, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat (res.best_val_accuracy, >, 0.9);
  /* The step schedule: ×0.1 after 30% and 60% of the epochs (1 and 3 of 6). */
  {
    const double want[6] = { 0.05, 0.005, 0.005, 0.0005, 0.0005, 0.0005 };
    g_assert_cmpuint (res.history->len, ==, 6);
    for (int e = 0; e < 6; e++)
      g_assert_cmpfloat (fabs (g_array_index (res.history, CleaveEpochRecord, e).lr - want[e]), <, 1e-7);
  }
  cleave_train_result_clear (&res);
}

/* Short runs still start at the base rate: 3 epochs go 0.01, 0.001, 0.0001
 * (plain ⌊0.3·E⌋ and ⌊0.6·E⌋ would put the milestones at epochs 0 and 1, so
 * no epoch would train at the base rate). */
static void
test_short_schedule (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) m = cleave_model_new (cleave_graph_copy (fx.model->graph), 3,
                                               (const char *const *) fx.ds->class_names);
  CleaveTrainOptions topt;
  CleaveTrainResult res = { 0 };
  const double want[3] = { 0.01, 0.001, 0.0001 };

  cleave_model_set_norm_from_dataset (m, fx.ds, fx.train, fx.n_train);
  cleave_train_options_init (&topt);
  topt.epochs = 3;
  topt.use_augment = FALSE;
  g_assert_true (cleave_train (m, backend, fx.ds, fx.train, 128, fx.val, 32, &topt, NULL, NULL, NULL, &res, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (res.history->len, ==, 3);
  for (int e = 0; e < 3; e++)
    g_assert_cmpfloat (fabs (g_array_index (res.history, CleaveEpochRecord, e).lr - want[e]), <, 1e-9);
  cleave_train_result_clear (&res);
}

static void
small_options (CleaveGradSplitOptions *o)
{
  cleave_grad_split_options_init (o);
  o->head_epochs = 2;
  o->rounds = 3;
  o->mask_epochs = 2;
  o->head_only_epochs = 1;
  o->batch = 32;
  o->train_images = 0;
  o->val_images = 0;
  o->alpha = 2.0f;
  o->lr_mask = 0.05f;
  o->theta_init = 0.1f;
  o->lr_head = 0.02f;
  o->lr_head_joint = 0.01f;
  o->max_loss = 2.0;
  o->seed = 3;
}

/* One member of the options JSON (which must parse). */
static JsonNode *
option_node (const char *json, const char *key)
{
  static JsonParser *p;
  g_autoptr(GError) error = NULL;
  JsonObject *o;

  g_clear_object (&p);
  p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, -1, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (p));
  g_assert_true (json_object_has_member (o, key));
  return json_object_get_member (o, key);
}

static gboolean
option_bool (const char *json, const char *key)
{
  return json_node_get_boolean (option_node (json, key));
}

static gint64
option_int (const char *json, const char *key)
{
  return json_node_get_int (option_node (json, key));
}

static const char *
option_str (const char *json, const char *key)
{
  return json_node_get_string (option_node (json, key));
}

static double
option_double (const char *json, const char *key)
{
  return json_node_get_double (option_node (json, key));
}

static JsonArray *
parse_log (JsonParser *p, const CleaveSplitLog *log)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *text = NULL;
  g_assert_nonnull (log);
  /* the log's JSON form, as the module file and the report hold it */
  text = cleave_split_log_to_json (log);
  g_assert_true (json_parser_load_from_data (p, text, -1, &error));
  g_assert_no_error (error);
  return json_node_get_array (json_parser_get_root (p));
}

/* The log entry of the selected epoch (there must be exactly one). */
static JsonObject *
selected_entry (JsonArray *log)
{
  JsonObject *sel = NULL;

  for (guint i = 0; i < json_array_get_length (log); i++)
    if (json_object_get_boolean_member (json_array_get_object_element (log, i), "selected"))
      {
        g_assert_null (sel);
        sel = json_array_get_object_element (log, i);
      }
  g_assert_nonnull (sel);
  return sel;
}

/* @data: GINT_TO_POINTER (holdout). Without the held-out check the
 * selection is the reference's rule, checked exactly; with it, each half of
 * the validation images is checked on its own. */
static void
test_end_to_end (gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  CleaveGradSplitOptions o;
  gboolean cancelled = TRUE;
  g_autoptr(CleaveModuleSet) set = NULL;
  JsonArray *log;
  int selected = -1;
  double first_krr, last_krr, sel_acc = 0;
  gint64 sel_kept = 0;

  small_options (&o);
  o.holdout = GPOINTER_TO_INT (data);
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_nonnull (set);
  g_assert_false (cancelled);
  g_assert_cmpuint (set->modules->len, ==, 3);
  g_assert_nonnull (set->options_json);

  log = parse_log (parser, set->log);
  g_assert_cmpuint (json_array_get_length (log), ==, 2 + 3 * 3);
  first_krr = json_object_get_double_member (json_array_get_object_element (log, 0), "mean_krr");
  last_krr = json_object_get_double_member (json_array_get_object_element (log, json_array_get_length (log) - 1), "mean_krr");
  g_assert_cmpfloat (first_krr, ==, 1.0);
  g_assert_cmpfloat (last_krr, <, 0.9);

  /* The selected epoch: within the bound, and no epoch within the bound has fewer kernels. */
  for (guint i = 0; i < json_array_get_length (log); i++)
    {
      JsonObject *e = json_array_get_object_element (log, i);
      if (json_object_get_boolean_member (e, "selected"))
        {
          g_assert_cmpint (selected, ==, -1);
          selected = (int) i;
          sel_kept = json_object_get_int_member (e, "kept_kernels");
          sel_acc = json_object_get_double_member (e, "val_accuracy");
        }
    }
  g_assert_cmpint (selected, >=, 0);
  g_assert_cmpfloat (100 * (set->source_accuracy - sel_acc), <=, o.max_loss + 1e-9);
  for (guint i = 0; i < json_array_get_length (log) && !o.holdout; i++)
    {
      JsonObject *e = json_array_get_object_element (log, i);
      double acc = json_object_get_double_member (e, "val_accuracy");
      if (100 * (set->source_accuracy - acc) <= o.max_loss)
        g_assert_cmpint (json_object_get_int_member (e, "kept_kernels"), >=, sel_kept);
    }
  /* Per-module choice: each module from its own epoch, never more kernels
   * than the uniform choice, still within the bound; the extracted modules
   * reproduce the masked search's validation accuracy of that mix. */
  {
    JsonObject *e = json_array_get_object_element (log, selected);
    JsonArray *me = json_object_get_array_member (e, "module_epochs");
    double mix_acc = json_object_get_double_member (e, "modules_val_accuracy");
    double mix_krr = json_object_get_double_member (e, "modules_mean_krr");
    double sel_krr = json_object_get_double_member (e, "mean_krr");
    g_assert_cmpuint (json_array_get_length (me), ==, 3);
    g_assert_cmpfloat (mix_krr, <=, sel_krr + 1e-12);
    g_assert_cmpfloat (100 * (set->source_accuracy - mix_acc), <=, o.max_loss + 1e-9);
    g_assert_cmpfloat (fabs (set->composed_accuracy - mix_acc), <, 1e-9);
    sel_kept = 0;
    for (guint g = 0; g < 3; g++)
      {
        JsonObject *from = json_array_get_object_element (log, (guint) json_array_get_int_element (me, g) - 1);
        JsonArray *mk = json_object_get_array_member (from, "module_krr");
        CleaveModule *m = set->modules->pdata[g];
        g_assert_cmpint (json_object_get_int_member (from, "epoch"), ==, json_array_get_int_element (me, g));
        g_assert_cmpfloat (fabs (cleave_module_kept_total (m) - json_array_get_double_element (mk, g) * set->total_kernels),
                           <, 1e-6);
        sel_kept += cleave_module_kept_total (m);
      }
  }
  {
    gint64 kept = 0;
    for (guint i = 0; i < set->modules->len; i++)
      {
        CleaveModule *m = set->modules->pdata[i];
        g_assert_true (m->has_head);
        g_assert_cmpint (m->class_index, ==, (int) i);
        for (int s = 0; s < m->n_sites; s++)
          g_assert_cmpint (m->n_kept[s], >=, 1);
        kept += cleave_module_kept_total (m);
        g_assert_true (isfinite (m->val_f1));
      }
    g_assert_cmpint (kept, ==, sel_kept);
  }
  /* The held-out check (on by default): the extracted mix is within the
   * bound on the odd validation positions alone, the half the greedy walk
   * did not choose on, against the source on the same images. */
  if (!o.holdout)
    g_assert_false (option_bool (set->options_json, "holdout"));
  else
  {
    int nh = fx.n_val / 2;
    g_autofree int *odd = g_new (int, nh);
    CleaveNet *plain;
    CleaveMetrics *m;
    double src;

    g_assert_true (option_bool (set->options_json, "holdout"));
    g_assert_true (json_object_has_member (json_array_get_object_element (log, selected), "holdout_moves_undone"));
    for (int i = 0; i < nh; i++)
      odd[i] = fx.val[2 * i + 1];
    plain = cleave_net_new (fx.model->graph, backend, &error);
    g_assert_no_error (error);
    m = cleave_evaluate (fx.model, plain, fx.ds, odd, nh, 64, NULL, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    src = m->accuracy;
    cleave_metrics_free (m);
    cleave_net_free (plain);
    g_assert_true (cleave_module_set_evaluate (set, backend, fx.ds, odd, nh, NULL, NULL, &error));
    g_assert_no_error (error);
    g_assert_cmpfloat (100 * (src - set->composed_accuracy), <=, o.max_loss + 1e-9);
  }
}

/* The final head refit: the log says what it did; the choice of kernels is
 * the same as without it; the refitted heads are kept only if validation
 * does not drop, and then the extracted modules carry them and reproduce
 * the refitted accuracy; otherwise the heads are the search's. */
static void
test_refit (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(CleaveModuleSet) plain = NULL, set = NULL;
  CleaveGradSplitOptions o;
  gboolean cancelled = TRUE, kept, heads_differ = FALSE;
  JsonObject *sel = NULL, *r;
  JsonArray *log;
  double before, after;

  small_options (&o);
  o.refit_images = 0;
  plain = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                             NULL, NULL, NULL, &cancelled, &error);
  g_assert_no_error (error);
  {
    g_autofree char *plain_log = cleave_split_log_to_json (plain->log);
    g_assert_null (strstr (plain_log, "head_refit"));
  }
  g_assert_cmpint (option_int (plain->options_json, "refit_images"), ==, 0);

  small_options (&o);
  o.refit_images = 300;
  o.refit_passes = 5;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_false (cancelled);
  log = parse_log (parser, set->log);
  sel = selected_entry (log);
  g_assert_true (json_object_has_member (sel, "head_refit"));
  r = json_object_get_object_member (sel, "head_refit");
  g_assert_cmpint (json_object_get_int_member (r, "images"), ==, 300);
  g_assert_cmpint (json_object_get_int_member (r, "passes"), ==, 5);
  before = json_object_get_double_member (r, "val_accuracy_before");
  after = json_object_get_double_member (r, "val_accuracy_after");
  kept = json_object_get_boolean_member (r, "kept");
  g_assert_cmpfloat (after, >=, 0);
  g_assert_cmpfloat (after, <=, 1);
  g_assert_cmpfloat (fabs (cleave_module_set_mean_krr (set) - cleave_module_set_mean_krr (plain)), <, 1e-12);
  g_assert_cmpfloat (fabs (before - plain->composed_accuracy), <, 1e-9);
  g_assert_cmpint (kept, ==, after >= before);
  g_assert_cmpfloat (100 * (set->source_accuracy - set->composed_accuracy), <=, o.max_loss + 1e-9);
  g_assert_cmpfloat (fabs (set->composed_accuracy - (kept ? after : before)), <, 1e-9);
  for (guint g = 0; g < set->modules->len; g++)
    {
      CleaveModule *a = set->modules->pdata[g], *b = plain->modules->pdata[g];
      heads_differ |= memcmp (a->head_w1, b->head_w1, sizeof (float) * CLEAVE_HEAD_HIDDEN * a->n_logits) != 0 ||
                      a->head_b2 != b->head_b2;
    }
  g_assert_cmpint (heads_differ, ==, kept);
  g_test_message ("refit: validation %.4f -> %.4f, %s", before, after, kept ? "kept" : "not kept");
}

/* Under a locale that writes "0,1", the options and the log are still JSON
 * with the same numbers (they went through printf's %g before). */
static void
test_locale (void)
{
  static const char *names[] = { "de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "nl_NL.UTF-8" };
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(CleaveModuleSet) set = NULL;
  g_autofree char *old = g_strdup (setlocale (LC_NUMERIC, NULL));
  CleaveGradSplitOptions o;
  gboolean cancelled;
  const char *got = NULL;
  char buf[32];

  for (gsize i = 0; i < G_N_ELEMENTS (names) && got == NULL; i++)
    got = setlocale (LC_NUMERIC, names[i]);
  g_snprintf (buf, sizeof buf, "%g", 0.5);
  if (got == NULL || strchr (buf, ',') == NULL)
    {
      setlocale (LC_NUMERIC, old);
      g_test_skip ("no locale with a decimal comma is installed (localedef -i de_DE -f UTF-8 de_DE.UTF-8)");
      return;
    }
  small_options (&o);
  o.lr_head = 0.025f;
  o.refit_images = 200;
  o.refit_passes = 2;
  o.max_loss = 2.5;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, &cancelled, &error);
  setlocale (LC_NUMERIC, old);
  g_assert_no_error (error);
  g_assert_cmpfloat (option_double (set->options_json, "alpha"), ==, 2.0);
  g_assert_cmpfloat (option_double (set->options_json, "lr_head"), ==, 0.025);
  g_assert_cmpfloat (option_double (set->options_json, "max_loss"), ==, 2.5);
  g_assert_cmpuint (json_array_get_length (parse_log (parser, set->log)), ==, 2 + 3 * 3);
}

/* The options beyond the reference together: logit loss, cached head
 * passes, α growing per round, row-wise Adam. The search still prunes, the
 * selection still honours the bound, and the extracted modules reproduce it. */
static void
test_end_to_end_options (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  CleaveGradSplitOptions o;
  gboolean cancelled = TRUE;
  g_autoptr(CleaveModuleSet) set = NULL;
  JsonArray *log;
  JsonObject *sel = NULL;

  small_options (&o);
  o.logit_loss = TRUE;
  o.head_passes = 4;
  o.alpha_growth = 1.5f;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_false (cancelled);
  g_assert_cmpstr (option_str (set->options_json, "loss"), ==, "logits");
  g_assert_cmpint (option_int (set->options_json, "head_passes"), ==, 4);
  log = parse_log (parser, set->log);
  g_assert_cmpuint (json_array_get_length (log), ==, 2 + 3 * 3);
  g_assert_cmpfloat (json_object_get_double_member (json_array_get_object_element (log, 10), "mean_krr"), <, 0.9);
  sel = selected_entry (log);
  g_assert_cmpfloat (100 * (set->source_accuracy - set->composed_accuracy), <=, o.max_loss + 1e-9);
  g_assert_cmpfloat (fabs (set->composed_accuracy - json_object_get_double_member (sel, "modules_val_accuracy")), <, 1e-9);

  /* Row-wise Adam runs and also prunes under the same α. */
  g_clear_pointer (&set, cleave_module_set_free);
  small_options (&o);
  o.row_adam = TRUE;
  o.alpha = 50.0f;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (option_str (set->options_json, "mask_optimizer"), ==, "adam-row");
  g_assert_cmpfloat (100 * (set->source_accuracy - set->composed_accuracy), <=, o.max_loss + 1e-9);
}

typedef struct {
  GCancellable *cancel;
  int calls, after;
} CancelAfter;

static void
cancel_progress (const CleaveProgress *p, gpointer user_data)
{
  CancelAfter *c = user_data;
  g_assert_cmpfloat (p->fraction, >=, 0);
  g_assert_cmpfloat (p->fraction, <=, 1);
  if (++c->calls == c->after)
    g_cancellable_cancel (c->cancel);
}

static void
test_cancel (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  CleaveGradSplitOptions o;
  CancelAfter ca = { cancel, 0, 0 };
  gboolean cancelled = FALSE;
  g_autoptr(CleaveModuleSet) set = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();

  small_options (&o);
  /* 15 training steps and one validation per epoch: stop in the third epoch. */
  ca.after = 2 * 16 + 5;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           cancel_progress, &ca, cancel, &cancelled, &error);
  g_assert_no_error (error);
  g_assert_nonnull (set);
  g_assert_true (cancelled);
  g_assert_cmpuint (set->modules->len, ==, 3);
  /* No progress after the cancel: it is checked every batch. */
  g_assert_cmpint (ca.calls, ==, ca.after);
  g_assert_cmpuint (json_array_get_length (parse_log (parser, set->log)), ==, 2);

  /* Cancelled before anything ran: still a (whole-model) result. */
  {
    g_autoptr(GCancellable) c2 = g_cancellable_new ();
    g_autoptr(CleaveModuleSet) s2 = NULL;
    g_cancellable_cancel (c2);
    s2 = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                            NULL, NULL, c2, &cancelled, &error);
    g_assert_no_error (error);
    g_assert_nonnull (s2);
    g_assert_true (cancelled);
    g_assert_cmpfloat (cleave_module_set_mean_krr (s2), ==, 1.0);
  }
}

static void
test_bad_input (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGradSplitOptions o;
  CleaveModuleSet *set;
  int bad = 100000;

  small_options (&o);
  o.batch = 0;
  set = grad_split (fx.model, backend, fx.ds, fx.train, fx.n_train, fx.val, fx.n_val, &o,
                           NULL, NULL, NULL, NULL, &error);
  g_assert_null (set);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  small_options (&o);
  set = grad_split (fx.model, backend, fx.ds, &bad, 1, fx.val, fx.n_val, &o, NULL, NULL, NULL, NULL, &error);
  g_assert_null (set);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  {
    g_autoptr(CleaveDataset) other = synthetic_dataset (10, 1);
    other->h = other->w = 4;   /* wrong image size (pixels are only read after the check) */
    set = grad_split (fx.model, backend, other, fx.train, 5, fx.val, 5, &o, NULL, NULL, NULL, NULL, &error);
    g_assert_null (set);
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  }
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  int rc;

  g_test_init (&argc, &argv, NULL);
  backend = cleave_device_open ("cpu", NULL, &error);
  g_assert_no_error (error);
  fixture_setup ();
  g_test_add_func ("/gradsplitter/step-matches-pytorch", test_step_matches_pytorch);
  g_test_add_func ("/gradsplitter/logit-loss-gradient", test_logit_loss_gradient);
  g_test_add_func ("/gradsplitter/train-short-schedule", test_short_schedule);
  g_test_add_data_func ("/gradsplitter/end-to-end", GINT_TO_POINTER (TRUE), test_end_to_end);
  g_test_add_data_func ("/gradsplitter/end-to-end-reference-rule", GINT_TO_POINTER (FALSE), test_end_to_end);
  g_test_add_func ("/gradsplitter/end-to-end-options", test_end_to_end_options);
  g_test_add_func ("/gradsplitter/refit", test_refit);
  g_test_add_func ("/gradsplitter/locale", test_locale);
  g_test_add_func ("/gradsplitter/cancel", test_cancel);
  g_test_add_func ("/gradsplitter/bad-input", test_bad_input);
  rc = g_test_run ();
  cleave_model_free (fx.model);
  cleave_dataset_free (fx.ds);
  g_free (fx.train);
  g_free (fx.val);
  cleave_backend_unref (backend);
  return rc;
}
