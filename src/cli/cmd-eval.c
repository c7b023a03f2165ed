/* cmd-eval.c: `cleave-cli eval MODEL DATASET` — accuracy, P/R/F1, confusion.
 * MODEL may be a model, an ONNX file, a composition or a patched model;
 * DATASET may be a mix with relabelling (`fashion-mnist:0,3 mnist:7`). */
#include "cli-common.h"
#include "cleave-job.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* MODEL as a scorer; a weights-only state_dict (--arch) carries no class
 * count, so it takes the dataset's. */
static CleaveScorer *
load_scorer (const char *path, const char *arch, const CleaveDatasetSpec *spec, CleaveSplit split,
             GCancellable *cancel, GError **error)
{
  g_autoptr(CleaveDataset) ds = NULL;
  CleaveModel *model;

  if (arch == NULL)
    return cleave_scorer_load (path, error);
  ds = cleave_job_load_dataset (spec, split, NULL, cancel, error);
  model = ds ? cleave_cli_load_model_for (path, arch, ds, error) : NULL;
  return model ? cleave_scorer_new_model (model) : NULL;
}

/* Accuracy over images whose true class is not a target. */
static double
other_accuracy (const CleaveMetrics *m, const gboolean *is_target)
{
  guint64 right = 0, all = 0;
  for (int t = 0; t < m->n_classes; t++)
    {
      if (is_target[t])
        continue;
      for (int p = 0; p < m->n_classes; p++)
        all += m->confusion[t * m->n_classes + p];
      right += m->confusion[t * m->n_classes + t];
    }
  return all ? (double) right / all : NAN;
}

/* One side of a comparison: the file, its scorer, its metrics, its class names. */
typedef struct {
  const char *path;
  CleaveScorer *scorer;
  CleaveMetrics *m;
  const char *const *names;
} Side;

/* The target classes of a comparison: --targets, else the classes B patches. */
static gboolean
mark_targets (const char *targets, CleaveScorer *b, int n_classes, gboolean *is_target, int *n_targets,
              GError **error)
{
  if (targets)
    {
      int n = 0;
      g_autofree int *list = cleave_parse_index_list (targets, &n, error);
      if (list == NULL)
        return FALSE;
      for (int i = 0; i < n; i++)
        if (list[i] >= 0 && list[i] < n_classes)
          is_target[list[i]] = TRUE;
    }
  else if (cleave_scorer_kind (b) == CLEAVE_SCORER_PATCHED)
    {
      CleavePatched *p = cleave_scorer_patched (b);
      for (int e = 0; e < cleave_composition_n_classes (p->modules); e++)
        is_target[p->target[e]] = TRUE;
    }
  *n_targets = 0;
  for (int c = 0; c < n_classes; c++)
    *n_targets += is_target[c];
  return TRUE;
}

static void
build_targets (JsonBuilder *jb, const CleaveMetrics *ma, const CleaveMetrics *mb, const gboolean *is_target)
{
  json_builder_set_member_name (jb, "targets");
  json_builder_begin_array (jb);
  for (int c = 0; c < ma->n_classes; c++)
    if (is_target[c])
      {
        const char *keys[3] = { "precision", "recall", "f1" };
        const double *va[3] = { ma->precision, ma->recall, ma->f1 };
        const double *vb[3] = { mb->precision, mb->recall, mb->f1 };
        json_builder_begin_object (jb);
        json_builder_set_member_name (jb, "class");
        json_builder_add_int_value (jb, c);
        for (int q = 0; q < 3; q++)
          {
            json_builder_set_member_name (jb, keys[q]);
            json_builder_begin_array (jb);
            json_builder_add_double_value (jb, va[q][c]);
            json_builder_add_double_value (jb, vb[q][c]);
            json_builder_end_array (jb);
          }
        json_builder_end_object (jb);
      }
  json_builder_end_array (jb);
  json_builder_set_member_name (jb, "other_accuracy");
  json_builder_begin_array (jb);
  json_builder_add_double_value (jb, other_accuracy (ma, is_target));
  json_builder_add_double_value (jb, other_accuracy (mb, is_target));
  json_builder_end_array (jb);
}

/* --json: A's metrics alone, or both with the targets. Built, not printf'd:
 * the same JSON in every locale. */
static void
print_json (const Side *a, const Side *b, const char *split, const char *ds_label, const gboolean *is_target,
            int n_targets)
{
  g_autofree char *ja = cleave_metrics_to_json (a->m, a->names);
  g_autofree char *jb = NULL, *text = NULL;
  g_autoptr(JsonBuilder) bld = NULL;

  if (b == NULL)
    {
      printf ("%s\n", ja);
      return;
    }
  jb = cleave_metrics_to_json (b->m, b->names);
  bld = json_builder_new ();
  json_builder_begin_object (bld);
  json_builder_set_member_name (bld, "split");
  json_builder_add_string_value (bld, split);
  json_builder_set_member_name (bld, "dataset");
  json_builder_add_string_value (bld, ds_label);
  json_builder_set_member_name (bld, "a");
  json_builder_add_value (bld, json_from_string (ja, NULL));
  json_builder_set_member_name (bld, "b");
  json_builder_add_value (bld, json_from_string (jb, NULL));
  if (n_targets)
    build_targets (bld, a->m, b->m, is_target);
  json_builder_end_object (bld);
  text = cleave_cli_json_text (bld, TRUE);
  printf ("%s\n", text);
}

static void
print_compare (const Side *a, const Side *b, const char *split, const char *ds_label, const gboolean *is_target,
               int n_targets)
{
  const CleaveMetrics *ma = a->m, *mb = b->m;

  printf ("%s split of %s: A = %s (%s), B = %s (%s)\n", split, ds_label, a->path, cleave_scorer_kind_name (a->scorer),
          b->path, cleave_scorer_kind_name (b->scorer));
  printf ("accuracy  A %.2f%%  B %.2f%%  (%+.2f points)\n", 100 * ma->accuracy, 100 * mb->accuracy,
          100 * (mb->accuracy - ma->accuracy));
  printf ("%-14s %8s %8s %8s | %8s %8s %8s\n", "class", "P(A)", "R(A)", "F1(A)", "P(B)", "R(B)", "F1(B)");
  for (int c = 0; c < MIN (ma->n_classes, mb->n_classes); c++)
    printf ("%-14.14s %8.4f %8.4f %8.4f | %8.4f %8.4f %8.4f%s\n", a->names[c], ma->precision[c],
            ma->recall[c], ma->f1[c], mb->precision[c], mb->recall[c], mb->f1[c],
            is_target[c] ? "  <- target" : "");
  for (int c = 0; c < ma->n_classes; c++)
    if (is_target[c])
      printf ("target %d (%s): precision %+.2f, recall %+.2f, F1 %+.2f points\n", c, a->names[c],
              100 * (mb->precision[c] - ma->precision[c]), 100 * (mb->recall[c] - ma->recall[c]),
              100 * (mb->f1[c] - ma->f1[c]));
  if (n_targets)
    printf ("accuracy on the other classes  A %.2f%%  B %.2f%%\n", 100 * other_accuracy (ma, is_target),
            100 * other_accuracy (mb, is_target));
}

int
cleave_cmd_eval (int argc, char **argv)
{
  g_autofree char *device = NULL, *split = NULL, *compare = NULL, *arch = NULL, *targets = NULL;
  g_auto(GStrv) mix = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, "test (default) or train", "SPLIT" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "compare", 0, 0, G_OPTION_ARG_FILENAME, &compare, "Also evaluate this model (e.g. the patched one) and print both side by side", "MODEL" },
    { "mix", 0, 0, G_OPTION_ARG_STRING_ARRAY, &mix, "Dataset part DATASET:CLASSES of a mixed task (repeatable; further DATASET:CLASSES arguments join it)", "SPEC" },
    { "targets", 0, 0, G_OPTION_ARG_STRING, &targets, "With --compare: target classes to report (default: the classes B patches)", "LIST" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture of a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL DATASET[:CLASSES] … — evaluate a model, composition or patched model");
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) specs = g_ptr_array_new ();
  g_autofree char *ds_label = NULL;
  g_autoptr(CleaveScorer) sa = NULL, sb = NULL;
  CleaveScorer *scorers[2];
  g_auto(CleaveEvaluateResult) res = { 0 };
  CleaveEvaluateRequest req;
  CleaveMetrics *ma, *mb;
  CleaveCliProgress *bar;
  GCancellable *cancel = cleave_cli_cancellable ();
  const char *const *names_a, *const *names_b;
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (split == NULL)
    split = g_strdup ("test");   /* the default, set here: GOption does not free a replaced default */
  for (int i = 0; mix && mix[i]; i++)
    g_ptr_array_add (specs, mix[i]);
  for (int i = 2; i < argc; i++)
    g_ptr_array_add (specs, argv[i]);
  if (argc < 2 || specs->len == 0)
    {
      fprintf (stderr, "Usage: cleave-cli eval MODEL DATASET [--json] [--compare OTHER]\n"
                       "       cleave-cli eval MODEL --mix fashion-mnist:0,3 mnist:7\n");
      return 2;
    }
  g_ptr_array_add (specs, NULL);
  cleave_evaluate_request_init (&req);
  req.dataset.parts = (const char *const *) specs->pdata;
  req.dataset.data_dirs = cleave_cli_data_dirs ();
  req.split = g_str_equal (split, "train") ? CLEAVE_SPLIT_TRAIN : CLEAVE_SPLIT_TEST;
  req.device.device = device ? device : cleave_cli_default_device ();
  req.device.config = cleave_cli_backend_config ();
  ds_label = cleave_dataset_spec_label (&req.dataset);
  sa = load_scorer (argv[1], arch, &req.dataset, req.split, cancel, &error);
  if (sa && compare)
    sb = load_scorer (compare, arch, &req.dataset, req.split, cancel, &error);
  if (sa == NULL || (compare && sb == NULL))
    return cleave_cli_fail (g_steal_pointer (&error));
  scorers[0] = sa, scorers[1] = sb;
  req.scorers = scorers;
  req.n_scorers = sb ? 2 : 1;
  bar = cleave_cli_progress_new ("eval");
  ok = cleave_job_evaluate (&req, cleave_cli_progress_cb, bar, cancel, &res, &error);
  cleave_cli_progress_free (bar);
  if (!ok)
    return cleave_cli_fail (g_steal_pointer (&error));
  fprintf (stderr, "device: %s\n", res.device_name);
  ma = res.metrics[0];
  mb = sb ? res.metrics[1] : NULL;
  for (int i = 0; i < req.n_scorers; i++)
    if (res.metrics[i]->nonfinite > 0)
      fprintf (stderr, "warning: %s gave non-finite outputs (NaN or infinity) for %d of %d images: "
                       "its results are meaningless\n", i ? compare : argv[1], res.metrics[i]->nonfinite,
               res.metrics[i]->total);
  names_a = cleave_scorer_class_names (sa);
  names_b = sb ? cleave_scorer_class_names (sb) : NULL;
  {
    g_autofree gboolean *is_target = g_new0 (gboolean, ma->n_classes);
    Side A = { argv[1], sa, ma, names_a }, B = { compare, sb, mb, names_b };
    int n_targets = 0;

    if (mb && !mark_targets (targets, sb, ma->n_classes, is_target, &n_targets, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
    if (json)
      print_json (&A, mb ? &B : NULL, split, ds_label, is_target, n_targets);
    else if (mb == NULL)
      {
        g_autofree char *title = g_strdup_printf ("%s (%s) on %s (%s split)", argv[1], cleave_scorer_kind_name (sa),
                                                  ds_label, split);
        cleave_cli_print_metrics (ma, names_a, title);
        printf ("%.1f images/s, %.3f MFLOPs per image\n", ma->total / MAX (1e-9, res.seconds[0]),
                cleave_scorer_flops (sa) / 1e6);
      }
    else
      print_compare (&A, &B, split, ds_label, is_target, n_targets);
  }
  return 0;
}
