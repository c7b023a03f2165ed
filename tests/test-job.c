/* test-job.c: the job layer (cleave-job.h) called directly, as the command
 * line and the app call it: a short split on a tiny IDX dataset written to a
 * temporary data directory, a cancelled split keeping its modules and the
 * epoch it reached, and evaluation of a model on a dataset, a class mix and
 * a capped sample. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "cleave-job.h"
#include "cleave-train.h"
#include "cleave-options.h"

static char *data_root;        /* a data directory holding "tiny" */
static CleaveModel *model;     /* trained on tiny, saved as data_root/tiny.safetensors */
static CleaveBackendConfig config;

static void
put_be32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* Three classes of 16×16 images: a bright 5×5 square at a class-specific
 * place, plus noise. */
static void
write_idx (const char *dir, const char *prefix, int n, guint32 seed)
{
  gsize isize = 16 + (gsize) n * 256, lsize = 8 + n;
  g_autofree guint8 *img = g_malloc0 (isize), *lab = g_malloc0 (lsize);
  g_autofree char *ip = g_strdup_printf ("%s/%s-images-idx3-ubyte", dir, prefix);
  g_autofree char *lp = g_strdup_printf ("%s/%s-labels-idx1-ubyte", dir, prefix);
  GRand *r = g_rand_new_with_seed (seed);

  put_be32 (img, 0x803);
  put_be32 (img + 4, n);
  put_be32 (img + 8, 16);
  put_be32 (img + 12, 16);
  put_be32 (lab, 0x801);
  put_be32 (lab + 4, n);
  for (int i = 0; i < n; i++)
    {
      int cls = i % 3, x0 = 1 + cls * 5, y0 = 2 + cls * 4;
      guint8 *p = img + 16 + (gsize) i * 256;
      lab[8 + i] = cls;
      for (int k = 0; k < 256; k++)
        p[k] = g_rand_int_range (r, 0, 60);
      for (int y = y0; y < y0 + 5; y++)
        for (int x = x0; x < x0 + 5; x++)
          p[y * 16 + x] = 200 + g_rand_int_range (r, 0, 55);
    }
  g_rand_free (r);
  g_assert_true (g_file_set_contents (ip, (char *) img, isize, NULL));
  g_assert_true (g_file_set_contents (lp, (char *) lab, lsize, NULL));
}

static void
dataset_spec (CleaveDatasetSpec *spec, const char *const *parts)
{
  static const char *dirs[2];

  dirs[0] = data_root;
  spec->parts = parts;
  spec->data_dirs = dirs;
  spec->max_images = 0;
}

/* A small CNN trained for a few epochs on tiny's training split. */
static void
train_model (void)
{
  static const char *const parts[] = { "tiny", NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = cleave_device_open ("cpu", &config, &error);
  CleaveDatasetSpec spec;
  CleaveGraph *g = cleave_graph_new (1, 16, 16);
  CleaveTrainOptions topt;
  CleaveTrainResult res = { 0 };
  g_autofree int *tr = NULL, *va = NULL;
  int n_tr, n_va, x;

  dataset_spec (&spec, parts);
  ds = cleave_job_load_dataset (&spec, CLEAVE_SPLIT_TRAIN, NULL, NULL, &error);
  g_assert_no_error (error);
  x = cleave_graph_add_conv2d (g, "conv1", 0, 8, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn1", x);
  x = cleave_graph_add_relu (g, "relu1", x);
  x = cleave_graph_add_maxpool2d (g, "pool1", x, 2, 2, 0);
  x = cleave_graph_add_conv2d (g, "conv2", x, 12, 3, 1, 1, 1, FALSE);
  x = cleave_graph_add_batchnorm2d (g, "bn2", x);
  x = cleave_graph_add_relu (g, "relu2", x);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  cleave_graph_add_linear (g, "fc", x, 3, TRUE);
  g_assert_true (cleave_graph_finalize (g, &error));
  cleave_graph_init_params (g, 5);
  model = cleave_model_new (g, 3, (const char *const *) ds->class_names);
  cleave_dataset_split (ds, CLEAVE_VAL_FRACTION_DEFAULT, 0, &tr, &n_tr, &va, &n_va);
  cleave_model_set_norm_from_dataset (model, ds, tr, n_tr);
  cleave_train_options_init (&topt);
  topt.epochs = 4;
  topt.batch = 32;
  topt.lr = 0.05f;
  topt.use_augment = FALSE;
  g_assert_true (cleave_train (model, backend, ds, tr, n_tr, va, n_va, &topt, NULL, NULL, NULL, &res, &error));
  g_assert_no_error (error);
  g_test_message ("model: validation accuracy %.3f", res.best_val_accuracy);
  cleave_train_result_clear (&res);
  model->path = g_build_filename (data_root, "tiny.safetensors", NULL);
  /* the module sets name it as their source: compose's "before" loads it */
  g_assert_true (cleave_model_save (model, model->path, &error));
}

static void
short_split_request (CleaveSplitRequest *req, const char *const *parts)
{
  cleave_split_request_init (req);
  req->model = model;
  dataset_spec (&req->dataset, parts);
  req->device.device = "cpu";
  req->device.config = &config;
  req->grad.head_epochs = 1;
  req->grad.rounds = 2;
  req->grad.mask_epochs = 1;
  req->grad.head_only_epochs = 1;
  req->grad.batch = 32;
  req->grad.refit_images = 60;
  req->grad.refit_passes = 2;
}

typedef struct {
  int last_epoch;
  guint phases_seen;           /* bit per phase */
  GCancellable *cancel;
  int cancel_after;            /* epoch whose end cancels; 0 = never */
  const CleaveSplitJobResult *result;
  int n_train_seen;            /* result->n_train as read from the callback */
} Watch;

static void
watch_progress (const CleaveProgress *p, gpointer data)
{
  Watch *w = data;

  g_assert_cmpfloat (p->fraction, >=, 0);
  g_assert_cmpfloat (p->fraction, <=, 1.0 + 1e-9);
  w->phases_seen |= 1u << p->phase;
  if (p->phase == CLEAVE_PHASE_HEADS || p->phase == CLEAVE_PHASE_MASKS)
    w->n_train_seen = w->result->n_train;
  w->last_epoch = MAX (w->last_epoch, p->epoch);
  if (w->cancel && p->epoch_done && p->epoch == w->cancel_after)
    g_cancellable_cancel (w->cancel);
}

/* A whole short GradSplitter job with the test evaluation. */
static void
test_split (void)
{
  static const char *const parts[] = { "tiny", NULL };
  g_autoptr(GError) error = NULL;
  g_auto(CleaveSplitJobResult) res = { 0 };
  CleaveSplitRequest req;
  Watch w = { .result = &res };
  CleaveModuleSet *set;

  short_split_request (&req, parts);
  req.test = TRUE;
  g_assert_true (cleave_job_split (&req, watch_progress, &w, NULL, &res, &error));
  g_assert_no_error (error);
  set = res.split.set;
  g_assert_nonnull (set);
  g_assert_false (res.split.cancelled);
  g_assert_cmpint (set->modules->len, ==, 3);
  /* the default fraction: 60 of the 300 training images validate */
  g_assert_cmpint (res.n_train + res.n_val, ==, 300);
  g_assert_cmpint (res.n_val, ==, 60);
  g_assert_cmpint (w.n_train_seen, ==, 240);
  g_assert_cmpstr (res.device_name, ==, "cpu");
  g_assert_cmpstr (set->source_path, ==, model->path);
  g_assert_cmpstr (set->dataset, !=, NULL);
  g_assert_true (w.phases_seen & (1u << CLEAVE_PHASE_LOAD));
  g_assert_true (w.phases_seen & (1u << CLEAVE_PHASE_HEADS));
  g_assert_true (w.phases_seen & (1u << CLEAVE_PHASE_MASKS));
  g_assert_true (w.phases_seen & (1u << CLEAVE_PHASE_TEST));
  g_assert_cmpint (w.last_epoch, ==, 1 + 2 * 2);
  /* the test numbers are the job's; the set keeps its validation ones */
  g_assert_cmpfloat (res.source_test, >=, 0.9);
  g_assert_cmpfloat (res.composed_test, >, 0.5);
  g_assert_nonnull (res.test_f1);
  g_assert_cmpfloat (set->source_accuracy, >=, 0.9);
  /* the log: one entry per epoch, one selected, and its JSON reads back the same */
  {
    g_autofree char *text = cleave_split_log_to_json (set->log);
    g_autoptr(CleaveSplitLog) back = cleave_split_log_from_json (text, &error);
    g_autofree char *again = NULL;
    const CleaveSplitLogEntry *sel = cleave_split_log_selected (set->log);

    g_assert_no_error (error);
    g_assert_cmpuint (set->log->entries->len, ==, 5);
    g_assert_nonnull (sel);
    g_assert_cmpint (sel->n_modules, ==, 3);
    g_assert_cmpint (cleave_split_log_images (set->log), >, 0);
    g_assert_cmpint (cleave_split_log_images (back), ==, cleave_split_log_images (set->log));
    g_assert_cmpint (cleave_split_log_selected (back)->epoch, ==, sel->epoch);
    again = cleave_split_log_to_json (back);
    g_assert_cmpstr (again, ==, text);
  }
  g_test_message ("split: source test %.3f, composed test %.3f (validation %.3f), mean KRR %.3f",
                  res.source_test, res.composed_test, set->composed_accuracy, cleave_module_set_mean_krr (set));
}

/* Cancelled at the end of epoch 2: FALSE with G_IO_ERROR_CANCELLED, the best
 * modules so far kept, the epoch reached reported, no test evaluation. */
static void
test_split_cancel (void)
{
  static const char *const parts[] = { "tiny", NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  g_auto(CleaveSplitJobResult) res = { 0 };
  CleaveSplitRequest req;
  Watch w = { .result = &res, .cancel = cancel, .cancel_after = 2 };

  short_split_request (&req, parts);
  req.test = TRUE;
  g_assert_false (cleave_job_split (&req, watch_progress, &w, cancel, &res, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_true (res.split.cancelled);
  g_assert_nonnull (res.split.set);
  g_assert_cmpint (res.split.set->modules->len, ==, 3);
  g_assert_cmpint (res.split.cancelled_at, >=, 2);
  g_assert_cmpint (res.split.cancelled_at, <=, 3);
  g_assert_true (isnan (res.source_test));
  g_assert_null (res.test_f1);
  g_assert_false (w.phases_seen & (1u << CLEAVE_PHASE_TEST));
}

/* Bad requests fail before any work, naming what is wrong. */
static void
test_split_bad_request (void)
{
  static const char *const missing[] = { "no-such-dataset-anywhere", NULL };
  static const char *const mix[] = { "tiny:0,1", NULL };
  g_autoptr(GError) error = NULL;
  CleaveSplitRequest req;

  {
    g_auto(CleaveSplitJobResult) res = { 0 };
    short_split_request (&req, missing);
    g_assert_false (cleave_job_split (&req, NULL, NULL, NULL, &res, &error));
    g_assert_nonnull (strstr (error->message, "no-such-dataset-anywhere"));
    g_assert_null (res.split.set);
    g_clear_error (&error);
  }
  {
    g_auto(CleaveSplitJobResult) res = { 0 };
    short_split_request (&req, mix);
    g_assert_false (cleave_job_split (&req, NULL, NULL, NULL, &res, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull (strstr (error->message, "2 classes, the model 3"));
    g_clear_error (&error);
  }
  {
    g_auto(CleaveSplitJobResult) res = { 0 };
    short_split_request (&req, (const char *const[]) { "tiny", NULL });
    req.val_fraction = 1.5;
    g_assert_false (cleave_job_split (&req, NULL, NULL, NULL, &res, &error));
    g_assert_nonnull (strstr (error->message, "validation fraction"));
    g_clear_error (&error);
  }
}

/* Evaluate: the same metrics as evaluating by hand; a class mix relabels;
 * max_images caps the sample; two scorers share one loaded dataset. */
static void
test_evaluate (void)
{
  static const char *const whole[] = { "tiny", NULL };
  static const char *const mix[] = { "tiny:2", "tiny:0", NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveScorer) scorer = cleave_scorer_new_model (cleave_model_copy (model));
  CleaveScorer *two[2] = { scorer, scorer };
  CleaveEvaluateRequest req;

  cleave_evaluate_request_init (&req);
  req.scorers = two;
  req.n_scorers = 2;
  dataset_spec (&req.dataset, whole);
  req.device.device = "cpu";
  req.device.config = &config;
  {
    g_auto(CleaveEvaluateResult) res = { 0 };
    g_autoptr(CleaveDataset) test = NULL;
    g_autoptr(CleaveBackend) backend = cleave_device_open ("cpu", &config, &error);
    g_autoptr(CleaveMetrics) direct = NULL;

    g_assert_true (cleave_job_evaluate (&req, NULL, NULL, NULL, &res, &error));
    g_assert_no_error (error);
    test = cleave_job_load_dataset (&req.dataset, CLEAVE_SPLIT_TEST, NULL, NULL, &error);
    direct = cleave_model_evaluate (model, backend, test, NULL, NULL, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (res.n_images, ==, 90);
    g_assert_cmpint (res.metrics[0]->correct, ==, direct->correct);
    g_assert_cmpint (res.metrics[1]->correct, ==, direct->correct);
    g_assert_cmpfloat (fabs (res.metrics[0]->loss - direct->loss), <, 1e-6);
    g_assert_cmpstr (res.class_names[2], ==, test->class_names[2]);
  }
  {
    g_auto(CleaveEvaluateResult) res = { 0 };
    req.n_scorers = 1;
    req.dataset.max_images = 30;
    g_assert_true (cleave_job_evaluate (&req, NULL, NULL, NULL, &res, &error));
    g_assert_cmpint (res.n_images, ==, 30);
    g_assert_cmpint (res.metrics[0]->total, ==, 30);
    req.dataset.max_images = 0;
  }
  {
    /* two parts: classes 2 then 0 of tiny; the model's 3 outputs do not fit */
    g_auto(CleaveEvaluateResult) res = { 0 };
    g_autoptr(CleaveDataset) ds = NULL;
    g_auto(GStrv) names = NULL;
    req.dataset.parts = mix;
    ds = cleave_job_load_dataset (&req.dataset, CLEAVE_SPLIT_TEST, &names, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpint (ds->n_classes, ==, 2);
    g_assert_cmpint (ds->n, ==, 60);
    g_assert_true (g_str_has_prefix (names[0], "tiny:"));
    g_assert_false (cleave_job_evaluate (&req, NULL, NULL, NULL, &res, &error));
    g_assert_nonnull (error);
    g_clear_error (&error);
  }
}

/* Train: a small preset on tiny, then the same cancelled after epoch 1,
 * keeping that epoch's model; then resumed from a copy. */
typedef struct {
  GCancellable *cancel;
  int cancel_after;
  int epochs_done;
} TrainWatch;

static void
train_progress (const CleaveProgress *p, gpointer data)
{
  TrainWatch *w = data;

  if (p->epoch_done)
    w->epochs_done++;
  if (w->cancel && p->epoch_done && p->epoch == w->cancel_after)
    g_cancellable_cancel (w->cancel);
}

static void
test_train (void)
{
  static const char *const parts[] = { "tiny", NULL };
  static const int classes[] = { 2, 0 };
  g_autoptr(GError) error = NULL;
  CleaveTrainRequest req;

  cleave_train_request_init (&req);
  req.arch = "weak";
  dataset_spec (&req.dataset, parts);
  req.device.device = "cpu";
  req.device.config = &config;
  req.train.epochs = 3;
  req.train.batch = 32;
  req.train.lr = 0.05f;
  req.train.use_augment = FALSE;
  {
    g_auto(CleaveTrainJobResult) res = { 0 };
    TrainWatch w = { 0 };
    g_assert_true (cleave_job_train (&req, train_progress, &w, NULL, &res, &error));
    g_assert_no_error (error);
    g_assert_cmpint (res.n_train + res.n_val, ==, 300);
    g_assert_cmpint (res.n_val, ==, 60);
    g_assert_cmpint (w.epochs_done, >=, 3);
    g_assert_nonnull (res.test);
    g_assert_cmpint (res.test->total, ==, 90);
    g_assert_cmpint (res.train.best_epoch, >=, 1);
    g_assert_nonnull (strstr (res.model->provenance_json, "\"test_accuracy\""));
    g_assert_cmpstr (res.model->dataset, ==, "tiny");
    g_test_message ("train: best epoch %d, validation %.3f, test %.3f", res.train.best_epoch,
                    res.train.best_val_accuracy, res.test->accuracy);
  }
  {
    /* two classes, relabelled: a 2-class model */
    g_auto(CleaveTrainJobResult) res = { 0 };
    req.classes = classes;
    req.n_classes = 2;
    req.train.epochs = 1;
    g_assert_true (cleave_job_train (&req, NULL, NULL, NULL, &res, &error));
    g_assert_cmpint (res.model->n_classes, ==, 2);
    g_assert_cmpint (res.test->total, ==, 60);
    req.classes = NULL;
    req.n_classes = 0;
  }
  {
    g_autoptr(GCancellable) cancel = g_cancellable_new ();
    g_auto(CleaveTrainJobResult) res = { 0 };
    TrainWatch w = { cancel, 1, 0 };
    req.train.epochs = 5;
    g_assert_false (cleave_job_train (&req, train_progress, &w, cancel, &res, &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
    g_assert_true (res.cancelled);
    g_assert_nonnull (res.model);
    g_assert_cmpint (res.train.best_epoch, ==, 1);
    g_assert_null (res.test);
  }
}

/* Compose two of a split's modules and patch a class, each evaluated
 * against its source (the model file the set names). */
static void
test_reuse (void)
{
  static const char *const parts[] = { "tiny", NULL };
  g_autoptr(GError) error = NULL;
  g_auto(CleaveSplitJobResult) split = { 0 };
  CleaveSplitRequest sreq;
  CleaveReuseRequest req = { 0 };

  short_split_request (&sreq, parts);
  g_assert_true (cleave_job_split (&sreq, NULL, NULL, NULL, &split, &error));
  g_assert_no_error (error);
  dataset_spec (&req.dataset, parts);
  req.device.device = "cpu";
  req.device.config = &config;
  {
    g_auto(CleaveReuseResult) res = { 0 };
    CleaveComposition *c = cleave_composition_new ();
    g_autoptr(CleaveScorer) scorer = NULL;

    g_assert_true (cleave_composition_add (c, split.split.set, 2, NULL, &error));
    g_assert_true (cleave_composition_add (c, split.split.set, 0, NULL, &error));
    scorer = cleave_scorer_new_composition (c);
    req.scorer = scorer;
    g_assert_true (cleave_job_reuse (&req, NULL, NULL, NULL, &res, &error));
    g_assert_no_error (error);
    g_assert_cmpint (res.n_classes, ==, 2);
    g_assert_cmpint (res.after->total, ==, 60);
    g_assert_cmpint (res.n_sources, ==, 1);
    g_assert_cmpstr (res.source_names[0], ==, "tiny.safetensors");
    g_assert_false (isnan (res.source_accuracy[0]));
    for (int i = 0; i < 6; i++)
      g_assert_false (isnan (res.before_prf[i]));
    g_test_message ("compose: source %.3f on the task's images, composed %.3f", res.source_accuracy[0],
                    res.after->accuracy);
  }
  {
    g_auto(CleaveReuseResult) res = { 0 };
    CleavePatched *p = cleave_patched_new (cleave_model_copy (model));
    g_autoptr(CleaveScorer) scorer = NULL;

    g_assert_true (cleave_patched_add (p, split.split.set, 1, 1, &error));
    g_assert_no_error (error);
    scorer = cleave_scorer_new_patched (p);
    req.scorer = scorer;
    g_assert_true (cleave_job_reuse (&req, NULL, NULL, NULL, &res, &error));
    g_assert_cmpint (res.n_classes, ==, 3);
    g_assert_cmpint (res.after->total, ==, 90);
    g_assert_cmpfloat (res.source_accuracy[0], >=, 0.9);
    g_test_message ("patch: weak %.3f, patched %.3f", res.source_accuracy[0], res.after->accuracy);
  }
}

/* The log reader names the entry and the field it cannot read. */
static void
test_split_log_errors (void)
{
  static const struct { const char *json, *what; } bad[] = {
    { "{}", "not an array" },
    { "[{\"epoch\": 1}, {\"val_accuracy\": 0.5}]", "log[1].epoch" },
    { "[{\"epoch\": 1, \"phase\": \"lunch\"}]", "log[0].phase" },
    { "[{\"epoch\": 1, \"module_krr\": [0.5, \"x\"]}]", "log[0].module_krr" },
    { "[{\"epoch\": 1, \"module_krr\": [0.5], \"module_epochs\": [1, 2]}]", "log[0].module_epochs" },
    { "[{\"generation\": 0, \"best_fitness\": \"high\"}]", "log[0].best_fitness" },
    { "[{\"epoch\": -3}]", "log[0].epoch" },
  };

  for (gsize i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(CleaveSplitLog) log = cleave_split_log_from_json (bad[i].json, &error);
      g_assert_null (log);
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
      if (strstr (error->message, bad[i].what) == NULL)
        g_error ("expected '%s' in: %s", bad[i].what, error->message);
    }
  {
    /* measurements not taken (-1 or null) read as NAN; generations have their own key */
    g_autoptr(GError) error = NULL;
    g_autoptr(CleaveSplitLog) log = cleave_split_log_from_json (
      "[{\"epoch\": 1, \"phase\": \"heads\", \"train_loss\": -1, \"val_accuracy\": null},"
      " {\"generation\": 0, \"val_accuracy\": 0.5, \"best_fitness\": -0.2}]", &error);
    const CleaveSplitLogEntry *a, *b;
    g_assert_no_error (error);
    a = log->entries->pdata[0];
    b = log->entries->pdata[1];
    g_assert_true (isnan (a->train_loss) && isnan (a->val_accuracy));
    g_assert_cmpint (a->phase, ==, CLEAVE_PHASE_HEADS);
    g_assert_cmpint (b->phase, ==, CLEAVE_PHASE_GENERATION);
    g_assert_cmpfloat (b->best_fitness, ==, -0.2);
  }
}

static void
test_parse (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree int *list = NULL;
  g_autofree char *path = NULL;
  int n = 0;

  list = cleave_parse_index_list ("0,3-5,9", &n, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, ==, 5);
  g_assert_cmpint (list[1], ==, 3);
  g_assert_cmpint (list[3], ==, 5);
  g_assert_null (cleave_parse_index_list ("2-x", &n, &error));
  g_assert_nonnull (strstr (error->message, "2-x"));
  g_clear_error (&error);
  g_clear_pointer (&list, g_free);
  g_assert_true (cleave_parse_path_list ("data/a:b/mnist", &path, &list, &n, &error));
  g_assert_cmpstr (path, ==, "data/a:b/mnist");
  g_assert_null (list);
  g_clear_pointer (&path, g_free);
  g_assert_true (cleave_parse_path_list ("mnist:1,7", &path, &list, &n, &error));
  g_assert_cmpstr (path, ==, "mnist");
  g_assert_cmpint (n, ==, 2);
  g_assert_cmpint (list[1], ==, 7);
}

/* The option tables: defaults in range, options_init from them, the core's
 * validation naming the option, parsing words and numbers. */
static void
test_options (void)
{
  g_autoptr(GError) error = NULL;
  CleaveGradSplitOptions go;
  CleaveGaSplitOptions ga;
  guint n;
  const CleaveOptionDesc *t = cleave_grad_split_option_table (&n);

  cleave_grad_split_options_init (&go);
  cleave_ga_split_options_init (&ga);
  g_assert_true (cleave_grad_split_options_validate (&go, &error));
  g_assert_true (cleave_ga_split_options_validate (&ga, &error));
  g_assert_no_error (error);
  for (guint i = 0; i < n; i++)
    g_assert_cmpfloat (fabs (cleave_option_get (&t[i], &go) - t[i].def), <, 1e-6);
  g_assert_cmpfloat (go.alpha_growth, ==, 1.35f);
  g_assert_true (go.per_module && go.holdout && go.logit_loss && !go.row_adam);

  /* α growth ≤ 0 and a negative loss bound are refused, not replaced */
  go.alpha_growth = 0;
  g_assert_false (cleave_grad_split_options_validate (&go, &error));
  g_assert_nonnull (strstr (error->message, "--alpha-growth"));
  g_clear_error (&error);
  cleave_grad_split_options_init (&go);
  go.max_loss = -1;
  g_assert_false (cleave_grad_split_options_validate (&go, &error));
  g_assert_nonnull (strstr (error->message, "--max-loss"));
  g_clear_error (&error);

  cleave_grad_split_options_init (&go);
  g_assert_true (cleave_option_parse (cleave_options_find (t, n, "loss"), &go, "scores", &error));
  g_assert_false (go.logit_loss);
  g_assert_true (cleave_option_parse (cleave_options_find (t, n, "uniform-epoch"), &go, "", &error));
  g_assert_false (go.per_module);
  g_assert_true (cleave_option_parse (cleave_options_find (t, n, "alpha"), &go, "0.25", &error));
  g_assert_cmpfloat (go.alpha, ==, 0.25f);
  g_assert_false (cleave_option_parse (cleave_options_find (t, n, "loss"), &go, "mse", &error));
  g_assert_nonnull (strstr (error->message, "scores, logits"));
  g_clear_error (&error);
  g_assert_false (cleave_option_parse (cleave_options_find (t, n, "batch"), &go, "12x", &error));
  g_clear_error (&error);
  {
    g_autofree char *d = cleave_option_default_text (cleave_options_find (t, n, "alpha-growth"));
    g_assert_cmpstr (d, ==, "1.35");
  }

  ga.elites = ga.population;
  g_assert_false (cleave_ga_split_options_validate (&ga, &error));
  g_assert_nonnull (strstr (error->message, "--elites"));
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
        g_remove (p);
    }
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_autofree char *tiny = NULL;
  int rc;

  g_test_init (&argc, &argv, NULL);
  cleave_backend_config_init (&config);
  config.threads = 2;
  data_root = g_dir_make_tmp ("cleave-job-XXXXXX", NULL);
  tiny = g_build_filename (data_root, "tiny", NULL);
  g_mkdir (tiny, 0755);
  write_idx (tiny, "train", 300, 1);
  write_idx (tiny, "t10k", 90, 2);
  train_model ();

  g_test_add_func ("/job/parse", test_parse);
  g_test_add_func ("/job/options", test_options);
  g_test_add_func ("/job/split-log/errors", test_split_log_errors);
  g_test_add_func ("/job/split/grad", test_split);
  g_test_add_func ("/job/split/cancel-keeps-modules", test_split_cancel);
  g_test_add_func ("/job/split/bad-request", test_split_bad_request);
  g_test_add_func ("/job/evaluate", test_evaluate);
  g_test_add_func ("/job/train", test_train);
  g_test_add_func ("/job/reuse", test_reuse);
  rc = g_test_run ();
  cleave_model_free (model);
  remove_tree (data_root);
  g_free (data_root);
  return rc;
}
