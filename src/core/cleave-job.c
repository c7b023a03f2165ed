/* cleave-job.c: split and evaluate jobs over the core's building blocks. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "cleave-job.h"
#include "cleave-error.h"
#include "cleave-arch.h"
#include "cleave-util-private.h"
#include <json-glib/json-glib.h>

/* ---- inputs --------------------------------------------------------------- */

int *
cleave_parse_index_list (const char *text, int *n_out, GError **error)
{
  g_auto(GStrv) parts = NULL;
  g_autoptr(GArray) a = g_array_new (FALSE, FALSE, sizeof (int));

  g_return_val_if_fail (text != NULL && n_out != NULL, NULL);
  parts = g_strsplit (text, ",", -1);
  for (int i = 0; parts[i] || i == 0; i++)
    {
      char *end;
      gint64 lo, hi;
      const char *dash;

      if (parts[i] == NULL || parts[i][0] == 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "'%s' has an empty element: give a list of numbers like 0,3,5 or 0-4", text);
          return NULL;
        }
      dash = strchr (parts[i] + 1, '-');

      lo = g_ascii_strtoll (parts[i], &end, 10);
      hi = lo;
      if (end != parts[i] && dash && end == dash)
        {
          const char *from = dash + 1;
          hi = g_ascii_strtoll (from, &end, 10);
          if (end == from)
            end = (char *) parts[i];
        }
      if (end == parts[i] || *end != 0 || lo < 0 || hi < lo || hi > 100000)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "'%s' is not a list of numbers like 0,3,5 or 0-4", text);
          return NULL;
        }
      for (gint64 v = lo; v <= hi; v++)
        {
          int iv = (int) v;
          g_array_append_val (a, iv);
        }
    }
  *n_out = (int) a->len;
  return (int *) g_array_free (g_steal_pointer (&a), FALSE);
}

gboolean
cleave_parse_path_list (const char *part, char **path, int **classes, int *n, GError **error)
{
  const char *colon;

  g_return_val_if_fail (part != NULL && path != NULL && classes != NULL && n != NULL, FALSE);
  colon = strrchr (part, ':');
  *classes = NULL;
  *n = 0;
  /* A path without a list: the whole argument is the path. */
  if (colon == NULL || colon[1] == '\0' || strchr (colon, '/') != NULL)
    {
      *path = g_strdup (part);
      return TRUE;
    }
  *classes = cleave_parse_index_list (colon + 1, n, error);
  if (*classes == NULL)
    return FALSE;
  *path = g_strndup (part, colon - part);
  return TRUE;
}

char *
cleave_dataset_spec_label (const CleaveDatasetSpec *spec)
{
  g_return_val_if_fail (spec != NULL && spec->parts != NULL, NULL);
  return g_strjoinv (" + ", (char **) spec->parts);
}

/* One part: the dataset, with only the listed classes when it has a list. */
static CleaveDataset *
load_part (const char *part, const char *const *dirs, CleaveSplit split, char **name_out,
           GCancellable *cancellable, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree int *list = NULL;
  int n = 0;
  CleaveDataset *ds, *sel;

  if (!cleave_parse_path_list (part, &path, &list, &n, error))
    return NULL;
  ds = cleave_dataset_load_from (path, dirs, split, cancellable, error);
  if (ds && list)
    {
      sel = cleave_dataset_select_classes (ds, list, n, error);
      cleave_dataset_free (ds);
      ds = sel;
    }
  if (ds)
    *name_out = g_steal_pointer (&path);
  return ds;
}

CleaveDataset *
cleave_job_load_dataset (const CleaveDatasetSpec *spec, CleaveSplit split, char ***class_names,
                         GCancellable *cancellable, GError **error)
{
  int n_parts;
  g_autoptr(GPtrArray) parts = NULL;
  g_autoptr(GPtrArray) names = NULL;
  CleaveDataset *out = NULL;

  g_return_val_if_fail (spec != NULL && spec->parts != NULL && spec->parts[0] != NULL, NULL);
  n_parts = (int) g_strv_length ((char **) spec->parts);
  parts = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_dataset_free);
  names = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n_parts; i++)
    {
      g_autofree char *name = NULL;
      CleaveDataset *ds = load_part (spec->parts[i], spec->data_dirs, split, &name, cancellable, error);
      if (ds == NULL)
        return NULL;
      g_ptr_array_add (parts, ds);
      for (int c = 0; c < ds->n_classes; c++)
        g_ptr_array_add (names, n_parts > 1 ? g_strdup_printf ("%s:%s", name, ds->class_names[c])
                                            : g_strdup (ds->class_names[c]));
    }
  if (n_parts == 1)
    out = g_ptr_array_steal_index (parts, 0);
  else
    out = cleave_dataset_concat ((CleaveDataset **) parts->pdata, n_parts, error);
  if (out && class_names)
    {
      g_ptr_array_add (names, NULL);
      *class_names = (char **) g_ptr_array_steal (names, NULL);
    }
  return out;
}

CleaveBackend *
cleave_job_open_device (const CleaveDeviceSpec *spec, GError **error)
{
  g_return_val_if_fail (spec != NULL, NULL);
  return cleave_device_open (spec->device, spec->config, error);
}

static void
report_phase (CleaveProgressFunc progress, gpointer user_data, CleavePhase phase, double fraction)
{
  CleaveProgress p = { 0 };

  if (progress == NULL)
    return;
  p.phase = phase;
  p.fraction = fraction;
  p.loss = p.accuracy = p.val_accuracy = p.krr = p.fitness = NAN;
  progress (&p, user_data);
}

/* ---- split ---------------------------------------------------------------- */

void
cleave_split_request_init (CleaveSplitRequest *request)
{
  g_return_if_fail (request != NULL);
  memset (request, 0, sizeof *request);
  request->val_fraction = CLEAVE_VAL_FRACTION_DEFAULT;
  request->method = CLEAVE_SPLIT_METHOD_GRAD;
  cleave_grad_split_options_init (&request->grad);
  cleave_ga_split_options_init (&request->ga);
}

void
cleave_split_job_result_clear (CleaveSplitJobResult *result)
{
  g_return_if_fail (result != NULL);
  cleave_split_result_clear (&result->split);
  g_free (result->device_name);
  g_free (result->test_f1);
  memset (result, 0, sizeof *result);
}

/* The test numbers: the source model's accuracy and the modules' (whose
 * set keeps its validation numbers). */
static gboolean
split_test (const CleaveSplitRequest *request, CleaveBackend *backend, const CleaveDataset *test,
            CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
            CleaveSplitJobResult *result, GError **error)
{
  CleaveModuleSet *set = result->split.set;
  double val_composed = set->composed_accuracy;
  guint n_mod = set->modules->len;
  g_autofree double *val_f1 = g_new (double, n_mod);
  g_autofree int *all = g_new (int, test->n);
  g_autoptr(CleaveMetrics) src = NULL;

  for (guint k = 0; k < n_mod; k++)
    val_f1[k] = ((CleaveModule *) set->modules->pdata[k])->val_f1;
  for (int i = 0; i < test->n; i++)
    all[i] = i;
  report_phase (progress, user_data, CLEAVE_PHASE_TEST, 0);
  src = cleave_model_evaluate (request->model, backend, test, NULL, NULL, cancellable, error);
  if (src == NULL || !cleave_module_set_evaluate (set, backend, test, all, test->n, NULL, cancellable, error))
    return FALSE;
  result->source_test = src->accuracy;
  result->composed_test = set->composed_accuracy;
  result->test_f1 = g_new (double, n_mod);
  for (guint k = 0; k < n_mod; k++)
    {
      CleaveModule *m = set->modules->pdata[k];
      result->test_f1[k] = m->val_f1;
      m->val_f1 = val_f1[k];
    }
  set->composed_accuracy = val_composed;
  report_phase (progress, user_data, CLEAVE_PHASE_TEST, 1);
  return TRUE;
}

static gboolean
run_method (const CleaveSplitRequest *request, CleaveBackend *backend, const CleaveDataset *train,
            const int *train_idx, const int *val_idx, CleaveProgressFunc progress, gpointer user_data,
            GCancellable *cancellable, CleaveSplitJobResult *result, GError **error)
{
  if (request->method == CLEAVE_SPLIT_METHOD_GA)
    {
      CleaveGaSplitOptions ga = request->ga;
      ga.seed = request->seed;
      return cleave_ga_split (request->model, backend, train, val_idx, result->n_val, &ga, progress, user_data,
                              cancellable, &result->split, error);
    }
  else
    {
      CleaveGradSplitOptions grad = request->grad;
      grad.seed = request->seed;
      return cleave_grad_split (request->model, backend, train, train_idx, result->n_train, val_idx, result->n_val,
                                &grad, progress, user_data, cancellable, &result->split, error);
    }
}

gboolean
cleave_job_split (const CleaveSplitRequest *request, CleaveProgressFunc progress, gpointer user_data,
                  GCancellable *cancellable, CleaveSplitJobResult *result, GError **error)
{
  g_autoptr(CleaveDataset) train = NULL, test = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  g_autofree char *label = NULL;
  gint64 t0;
  gboolean ok;

  g_return_val_if_fail (request != NULL && request->model != NULL, FALSE);
  g_return_val_if_fail (result != NULL && result->split.set == NULL, FALSE);
  if (!(request->val_fraction > 0 && request->val_fraction < 1))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "the validation fraction must lie between 0 and 1, not %g", request->val_fraction);
      return FALSE;
    }
  result->source_test = result->composed_test = NAN;
  report_phase (progress, user_data, CLEAVE_PHASE_LOAD, 0);
  label = cleave_dataset_spec_label (&request->dataset);
  train = cleave_job_load_dataset (&request->dataset, CLEAVE_SPLIT_TRAIN, NULL, cancellable, error);
  if (train && request->test)
    test = cleave_job_load_dataset (&request->dataset, CLEAVE_SPLIT_TEST, NULL, cancellable, error);
  if (train == NULL || (request->test && test == NULL))
    return FALSE;
  if (train->n_classes != request->model->n_classes)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s has %d classes, the model %d", label,
                   train->n_classes, request->model->n_classes);
      return FALSE;
    }
  /* An imported model's classes "0".."N-1" take the dataset's names. */
  cleave_model_name_classes_from_dataset (request->model, train);
  backend = cleave_job_open_device (&request->device, error);
  if (backend == NULL)
    return FALSE;
  result->device_name = g_strdup (backend->name);
  /* The same stratified split as training with the same seed and fraction. */
  cleave_dataset_split (train, request->val_fraction, request->seed, &train_idx, &result->n_train, &val_idx,
                        &result->n_val);

  t0 = g_get_monotonic_time ();
  ok = run_method (request, backend, train, train_idx, val_idx, progress, user_data, cancellable, result, error);
  result->seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (result->split.set)
    {
      CleaveModuleSet *set = result->split.set;
      g_free (set->source_path);
      set->source_path = g_strdup (request->model->path);
      if (set->dataset == NULL)
        set->dataset = g_strdup (label);
    }
  if (!ok)
    return FALSE;
  return test == NULL || split_test (request, backend, test, progress, user_data, cancellable, result, error);
}

/* ---- train ---------------------------------------------------------------- */

void
cleave_train_request_init (CleaveTrainRequest *request)
{
  g_return_if_fail (request != NULL);
  memset (request, 0, sizeof *request);
  request->arch = "simcnn:w=0.125";
  request->val_fraction = CLEAVE_VAL_FRACTION_DEFAULT;
  request->min_per_class = 100;
  cleave_train_options_init (&request->train);
}

void
cleave_train_job_result_clear (CleaveTrainJobResult *result)
{
  g_return_if_fail (result != NULL);
  cleave_model_free (result->model);
  cleave_train_result_clear (&result->train);
  cleave_metrics_free (result->test);
  g_free (result->device_name);
  memset (result, 0, sizeof *result);
}

/* Both splits, with only the requested classes. */
static gboolean
load_train_data (const CleaveTrainRequest *request, CleaveDataset **train, CleaveDataset **test,
                 GCancellable *cancellable, GError **error)
{
  *train = cleave_job_load_dataset (&request->dataset, CLEAVE_SPLIT_TRAIN, NULL, cancellable, error);
  *test = *train ? cleave_job_load_dataset (&request->dataset, CLEAVE_SPLIT_TEST, NULL, cancellable, error) : NULL;
  if (*test == NULL)
    return FALSE;
  if (request->classes)
    {
      CleaveDataset *a = cleave_dataset_select_classes (*train, request->classes, request->n_classes, error);
      CleaveDataset *b = a ? cleave_dataset_select_classes (*test, request->classes, request->n_classes, error) : NULL;
      cleave_dataset_free (*train);
      cleave_dataset_free (*test);
      *train = a;
      *test = b;
      if (b == NULL)
        return FALSE;
    }
  return TRUE;
}

/* The validation split, then the training images actually used: a
 * class-skewed subset, or at most max_train of them. */
static void
choose_images (const CleaveTrainRequest *request, const CleaveDataset *train, int **train_idx, int *n_train,
               int **val_idx, int *n_val)
{
  cleave_dataset_split (train, request->val_fraction, request->seed, train_idx, n_train, val_idx, n_val);
  if (request->dirichlet > 0)
    {
      int n_sub = 0;
      int *sub = cleave_dataset_dirichlet_subset (train, *train_idx, *n_train, request->dirichlet,
                                                  request->min_per_class,
                                                  request->max_train > 0 ? request->max_train : *n_train,
                                                  request->seed, &n_sub);
      g_free (*train_idx);
      *train_idx = sub;
      *n_train = n_sub;
    }
  else if (request->max_train > 0 && request->max_train < *n_train)
    {
      GRand *r = g_rand_new_with_seed ((guint32) request->seed + 99);
      cleave_shuffle_indices (*train_idx, *n_train, r);
      g_rand_free (r);
      *n_train = request->max_train;
    }
}

/* The epoch a resumed model's checkpoint provenance records (0: none). */
static int
checkpoint_epoch (const CleaveModel *model)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  JsonObject *o;
  JsonNode *c, *e;

  if (model->provenance_json == NULL || !json_parser_load_from_data (p, model->provenance_json, -1, NULL) ||
      !cleave_json_root (p, JSON_NODE_OBJECT))
    return 0;
  o = json_node_get_object (json_parser_get_root (p));
  c = json_object_get_member (o, "checkpoint");
  if (c == NULL || !JSON_NODE_HOLDS_OBJECT (c))
    return 0;
  e = json_object_get_member (json_node_get_object (c), "epoch");
  if (e == NULL || !JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64)
    return 0;
  return (int) CLAMP (json_node_get_int (e), 0, G_MAXINT);
}

static CleaveModel *
make_model (const CleaveTrainRequest *request, const CleaveDataset *train, const int *train_idx, int n_train,
            const char *label, GError **error)
{
  CleaveGraph *g;
  CleaveModel *model;

  if (request->resume)
    return cleave_model_copy (request->resume);
  if (request->arch_json)
    g = cleave_graph_from_json (request->arch_json, error);
  else
    g = cleave_arch_build (request->arch, train->c, train->h, train->w, train->n_classes, error);
  if (g == NULL)
    return NULL;
  cleave_graph_init_params (g, request->seed);
  model = cleave_model_new (g, train->n_classes, (const char *const *) train->class_names);
  cleave_model_set_norm_from_dataset (model, train, train_idx, n_train);
  model->dataset = g_strdup (label);
  return model;
}

/* The "training" provenance: what was trained on and how well it did. */
static char *
train_provenance (const CleaveTrainRequest *request, const char *label, const CleaveTrainJobResult *r)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  const struct { const char *key; gint64 v; } ints[] = {
    { "seed", (gint64) request->seed }, { "epochs", request->train.epochs }, { "best_epoch", r->train.best_epoch },
    { "train_images", r->n_train }, { "val_images", r->n_val },
  };
  const struct { const char *key; double v; } nums[] = {
    { "val_accuracy", r->train.best_val_accuracy }, { "test_accuracy", r->test->accuracy },
    { "train_seconds", round (10 * r->train.seconds) / 10 },
    { "train_images_per_s", round (10 * r->train.images_per_s) / 10 },
  };

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "dataset");
  json_builder_add_string_value (b, label);
  for (gsize i = 0; i < G_N_ELEMENTS (ints); i++)
    {
      json_builder_set_member_name (b, ints[i].key);
      json_builder_add_int_value (b, ints[i].v);
    }
  for (gsize i = 0; i < G_N_ELEMENTS (nums); i++)
    {
      json_builder_set_member_name (b, nums[i].key);
      json_builder_add_double_value (b, nums[i].v);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

gboolean
cleave_job_train (const CleaveTrainRequest *request, CleaveProgressFunc progress, gpointer user_data,
                  GCancellable *cancellable, CleaveTrainJobResult *result, GError **error)
{
  g_autoptr(CleaveDataset) train = NULL, test = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  g_autofree char *label = NULL, *prov = NULL;
  CleaveTrainOptions opt;
  GError *local = NULL;

  g_return_val_if_fail (request != NULL && result != NULL && result->model == NULL, FALSE);
  if (!(request->val_fraction > 0 && request->val_fraction < 1))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "the validation fraction must lie between 0 and 1, not %g", request->val_fraction);
      return FALSE;
    }
  report_phase (progress, user_data, CLEAVE_PHASE_LOAD, 0);
  label = cleave_dataset_spec_label (&request->dataset);
  if (!load_train_data (request, &train, &test, cancellable, error))
    return FALSE;
  choose_images (request, train, &train_idx, &result->n_train, &val_idx, &result->n_val);
  result->model = make_model (request, train, train_idx, result->n_train, label, error);
  backend = result->model ? cleave_job_open_device (&request->device, error) : NULL;
  if (backend == NULL)
    return FALSE;
  result->device_name = g_strdup (backend->name);
  opt = request->train;
  opt.seed = request->seed;
  opt.augment.flip = !train->digits;   /* mirrored digits are other digits; clothes and objects stay what they are */
  opt.augment.pad = train->h >= 32 ? 4 : 2;
  opt.start_epoch = result->start_epoch = request->resume ? checkpoint_epoch (request->resume) : 0;
  if (!cleave_train (result->model, backend, train, train_idx, result->n_train, val_idx, result->n_val, &opt,
                     progress, user_data, cancellable, &result->train, &local))
    {
      result->cancelled = g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_propagate_error (error, local);
      return FALSE;
    }
  report_phase (progress, user_data, CLEAVE_PHASE_TEST, 0);
  result->test = cleave_model_evaluate (result->model, backend, test, NULL, NULL, cancellable, error);
  if (result->test == NULL)
    return FALSE;
  prov = train_provenance (request, label, result);
  cleave_model_set_provenance (result->model, "checkpoint", NULL);
  cleave_model_set_provenance (result->model, "training", prov);
  return TRUE;
}

/* ---- evaluate ------------------------------------------------------------- */

void
cleave_evaluate_request_init (CleaveEvaluateRequest *request)
{
  g_return_if_fail (request != NULL);
  memset (request, 0, sizeof *request);
  request->split = CLEAVE_SPLIT_TEST;
}

void
cleave_evaluate_result_clear (CleaveEvaluateResult *result)
{
  g_return_if_fail (result != NULL);
  for (int i = 0; result->metrics && result->metrics[i]; i++)
    cleave_metrics_free (result->metrics[i]);
  g_free (result->metrics);
  g_free (result->seconds);
  g_strfreev (result->class_names);
  g_free (result->device_name);
  memset (result, 0, sizeof *result);
}

/* Scales each scorer's fractions into its share of the whole job. */
typedef struct {
  CleaveProgressFunc progress;
  gpointer user_data;
  int index, count;
} Share;

static void
share_progress (const CleaveProgress *p, gpointer data)
{
  Share *s = data;
  CleaveProgress q = *p;

  q.fraction = (s->index + p->fraction) / s->count;
  s->progress (&q, s->user_data);
}

static CleaveMetrics *
evaluate_one (CleaveScorer *scorer, CleaveBackend *backend, const CleaveDataset *ds, const int *indices, int n,
              gboolean whole, CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
              GError **error)
{
  CleaveNet *net;
  CleaveMetrics *m;

  /* Plain models on one whole dataset keep the loss cleave_evaluate reports. */
  if (!whole || cleave_scorer_kind (scorer) != CLEAVE_SCORER_MODEL)
    return cleave_scorer_evaluate (scorer, backend, ds, indices, n, NULL, progress, user_data, cancellable, error);
  net = cleave_net_new (cleave_scorer_model (scorer)->graph, backend, error);
  if (net == NULL)
    return NULL;
  m = cleave_evaluate (cleave_scorer_model (scorer), net, ds, indices, indices ? n : 0, 256, NULL, progress,
                       user_data, cancellable, error);
  cleave_net_free (net);
  return m;
}

gboolean
cleave_job_evaluate (const CleaveEvaluateRequest *request, CleaveProgressFunc progress, gpointer user_data,
                     GCancellable *cancellable, CleaveEvaluateResult *result, GError **error)
{
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *pick = NULL;
  int n;
  gboolean whole;

  g_return_val_if_fail (request != NULL && request->scorers != NULL && request->n_scorers > 0, FALSE);
  g_return_val_if_fail (result != NULL && result->metrics == NULL, FALSE);
  report_phase (progress, user_data, CLEAVE_PHASE_LOAD, 0);
  ds = cleave_job_load_dataset (&request->dataset, request->split, &result->class_names, cancellable, error);
  if (ds == NULL)
    return FALSE;
  backend = cleave_job_open_device (&request->device, error);
  if (backend == NULL)
    return FALSE;
  result->device_name = g_strdup (backend->name);
  n = ds->n;
  if (request->dataset.max_images > 0 && request->dataset.max_images < ds->n)
    {
      g_autofree int *rest = NULL;
      int n_rest = 0;
      /* a stratified sample: the "validation" part of a seeded split */
      cleave_dataset_split (ds, (double) request->dataset.max_images / ds->n, 0, &rest, &n_rest, &pick, &n);
    }
  whole = pick == NULL && g_strv_length ((char **) request->dataset.parts) == 1
          && strchr (request->dataset.parts[0], ':') == NULL;
  result->n_images = n;
  result->metrics = g_new0 (CleaveMetrics *, request->n_scorers + 1);
  result->seconds = g_new0 (double, request->n_scorers);
  for (int i = 0; i < request->n_scorers; i++)
    {
      Share share = { progress, user_data, i, request->n_scorers };
      gint64 t0 = g_get_monotonic_time ();
      result->metrics[i] = evaluate_one (request->scorers[i], backend, ds, pick, n, whole,
                                         progress ? share_progress : NULL, &share, cancellable, error);
      result->seconds[i] = (g_get_monotonic_time () - t0) / 1e6;
      if (result->metrics[i] == NULL)
        return FALSE;
    }
  return TRUE;
}

/* ---- compose and patch: before and after ----------------------------------- */

void
cleave_reuse_result_clear (CleaveReuseResult *result)
{
  g_return_if_fail (result != NULL);
  cleave_metrics_free (result->after);
  g_strfreev (result->class_names);
  g_free (result->before_prf);
  g_strfreev (result->source_names);
  g_free (result->source_accuracy);
  memset (result, 0, sizeof *result);
}

static void
set_prf (double *prf, const CleaveMetrics *m, int c)
{
  prf[0] = m->precision[c];
  prf[1] = m->recall[c];
  prf[2] = m->f1[c];
}

static gboolean
reuse_patched (CleavePatched *p, CleaveScorer *scorer, CleaveBackend *backend, const CleaveDataset *ds,
               GCancellable *cancellable, CleaveReuseResult *r, GError **error)
{
  g_autoptr(CleaveScorer) weak = cleave_scorer_new_model (cleave_model_copy (p->weak));
  g_autoptr(CleaveMetrics) before = NULL;

  r->n_classes = cleave_scorer_n_classes (scorer);
  r->class_names = g_strdupv ((char **) cleave_scorer_class_names (scorer));
  before = cleave_scorer_evaluate (weak, backend, ds, NULL, 0, NULL, NULL, NULL, cancellable, error);
  if (before == NULL)
    return FALSE;
  r->after = cleave_scorer_evaluate (scorer, backend, ds, NULL, 0, NULL, NULL, NULL, cancellable, error);
  if (r->after == NULL)
    return FALSE;
  r->before_prf = g_new (double, (gsize) r->n_classes * 3);
  for (int c = 0; c < r->n_classes; c++)
    set_prf (r->before_prf + c * 3, before, c);
  r->n_sources = 1;
  r->source_names = g_new0 (char *, 2);
  r->source_names[0] = p->weak->path ? g_path_get_basename (p->weak->path) : g_strdup ("?");
  r->source_accuracy = g_new (double, 1);
  r->source_accuracy[0] = before->accuracy;
  return TRUE;
}

/* The dataset class serving composed class @k: same name, else the
 * module's class index in its source. */
static int
task_class (const CleaveComposition *c, int k, const CleaveDataset *ds)
{
  const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
  const CleaveModule *m = cleave_composition_module (c, k);

  for (int i = 0; ds->class_names && i < ds->n_classes; i++)
    if (g_strcmp0 (ds->class_names[i], cc->class_name) == 0)
      return i;
  return m->class_index < ds->n_classes ? m->class_index : -1;
}

/* Source model @s on the task's images of the full dataset (its own
 * labels): its accuracy there and its P/R/F1 on the classes it serves. */
static gboolean
reuse_source (const CleaveComposition *c, int s, CleaveBackend *backend, const CleaveDataset *ds,
              const int *task_idx, int n_task, const int *classes, GCancellable *cancellable,
              CleaveReuseResult *r, GError **error)
{
  const CleaveModuleSet *set = g_ptr_array_index (c->sources, s);
  CleaveModel *model = set->source_path ? cleave_model_load (set->source_path, NULL) : NULL;
  g_autoptr(CleaveScorer) src = NULL;
  g_autoptr(CleaveMetrics) m = NULL;

  r->source_names[s] = set->source_path ? g_path_get_basename (set->source_path) : g_strdup ("?");
  r->source_accuracy[s] = NAN;
  if (model == NULL || model->n_classes != ds->n_classes)
    {
      /* not available: the model file is gone or serves another task */
      cleave_model_free (model);
      return TRUE;
    }
  src = cleave_scorer_new_model (model);
  m = cleave_scorer_evaluate (src, backend, ds, task_idx, n_task, NULL, NULL, NULL, cancellable, error);
  if (m == NULL)
    return FALSE;
  r->source_accuracy[s] = m->accuracy;
  for (int k = 0; k < r->n_classes; k++)
    if (g_array_index (c->classes, CleaveComposedClass, k).source == s)
      set_prf (r->before_prf + k * 3, m, classes[k]);
  return TRUE;
}

static gboolean
reuse_composition (CleaveComposition *c, CleaveScorer *scorer, CleaveBackend *backend, const CleaveDataset *ds,
                   GCancellable *cancellable, CleaveReuseResult *r, GError **error)
{
  int K = cleave_composition_n_classes (c), n_task = 0;
  g_autofree int *classes = g_new (int, MAX (K, 1));
  g_autofree int *task_idx = g_new (int, MAX (ds->n, 1));
  g_autoptr(CleaveDataset) sub = NULL;

  for (int k = 0; k < K; k++)
    if ((classes[k] = task_class (c, k, ds)) < 0)
      {
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the dataset has no class '%s'",
                     g_array_index (c->classes, CleaveComposedClass, k).class_name);
        return FALSE;
      }
  sub = cleave_dataset_select_classes (ds, classes, K, error);
  if (sub == NULL)
    return FALSE;
  for (int i = 0; i < ds->n; i++)
    for (int k = 0; k < K; k++)
      if (ds->labels[i] == classes[k])
        {
          task_idx[n_task++] = i;
          break;
        }
  r->n_classes = K;
  r->class_names = g_strdupv ((char **) cleave_scorer_class_names (scorer));
  r->before_prf = g_new (double, (gsize) K * 3);
  for (int i = 0; i < K * 3; i++)
    r->before_prf[i] = NAN;
  r->n_sources = (int) c->sources->len;
  r->source_names = g_new0 (char *, r->n_sources + 1);
  r->source_accuracy = g_new (double, MAX (r->n_sources, 1));
  for (int s = 0; s < r->n_sources; s++)
    if (!reuse_source (c, s, backend, ds, task_idx, n_task, classes, cancellable, r, error))
      return FALSE;
  r->after = cleave_scorer_evaluate (scorer, backend, sub, NULL, 0, NULL, NULL, NULL, cancellable, error);
  return r->after != NULL;
}

gboolean
cleave_job_reuse (const CleaveReuseRequest *request, CleaveProgressFunc progress, gpointer user_data,
                  GCancellable *cancellable, CleaveReuseResult *result, GError **error)
{
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  CleaveScorer *scorer;

  g_return_val_if_fail (request != NULL && request->scorer != NULL, FALSE);
  g_return_val_if_fail (result != NULL && result->after == NULL, FALSE);
  scorer = request->scorer;
  g_return_val_if_fail (cleave_scorer_kind (scorer) != CLEAVE_SCORER_MODEL, FALSE);
  report_phase (progress, user_data, CLEAVE_PHASE_LOAD, 0);
  ds = cleave_job_load_dataset (&request->dataset, CLEAVE_SPLIT_TEST, NULL, cancellable, error);
  backend = ds ? cleave_job_open_device (&request->device, error) : NULL;
  if (backend == NULL)
    return FALSE;
  report_phase (progress, user_data, CLEAVE_PHASE_EVALUATE, 0);
  if (cleave_scorer_kind (scorer) == CLEAVE_SCORER_PATCHED)
    return reuse_patched (cleave_scorer_patched (scorer), scorer, backend, ds, cancellable, result, error);
  return reuse_composition (cleave_scorer_composition (scorer), scorer, backend, ds, cancellable, result, error);
}
