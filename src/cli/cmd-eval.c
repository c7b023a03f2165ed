/* cmd-eval.c: `cleave-cli eval MODEL DATASET` — accuracy, P/R/F1, confusion.
 * MODEL may be a model, an ONNX file, a composition or a patched model;
 * DATASET may be a mix with relabelling (`fashion-mnist:0,3 mnist:7`). */
#include "cli-common.h"
#include "cleave-compose.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

typedef struct {
  CleaveScorer *scorer;
  CleaveMetrics *m;
  double seconds;
} EvalResult;

static void
eval_result_clear (EvalResult *r)
{
  cleave_scorer_free (r->scorer);
  cleave_metrics_free (r->m);
}

static gboolean
eval_one (const char *path, CleaveDataset *ds, gboolean plain_dataset, CleaveBackend *backend, const char *arch,
          GCancellable *cancel, EvalResult *r, GError **error)
{
  CleaveCliProgress *bar;
  gint64 t0 = g_get_monotonic_time ();

  if (arch)
    {
      CleaveModel *model = cleave_cli_load_model (path, arch, NULL, ds->n_classes, error);
      r->scorer = model ? cleave_scorer_new_model (model) : NULL;
    }
  else
    r->scorer = cleave_scorer_load (path, error);
  if (r->scorer == NULL)
    return FALSE;
  bar = cleave_cli_progress_new ("eval");
  /* Plain models on one whole dataset keep the loss cleave_evaluate reports. */
  if (plain_dataset && cleave_scorer_kind (r->scorer) == CLEAVE_SCORER_MODEL)
    r->m = cleave_model_evaluate (cleave_scorer_model (r->scorer), backend, ds, cleave_cli_progress_cb, bar, cancel, error);
  else
    r->m = cleave_scorer_evaluate (r->scorer, backend, ds, NULL, ds->n, NULL, cleave_cli_progress_cb, bar, cancel, error);
  cleave_cli_progress_free (bar);
  r->seconds = (g_get_monotonic_time () - t0) / 1e6;
  return r->m != NULL;
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

int
cleave_cmd_eval (int argc, char **argv)
{
  g_autofree char *device = NULL, *split = g_strdup ("test"), *compare = NULL, *arch = NULL, *targets = NULL;
  g_auto(GStrv) mix = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, "test (default) or train", "SPLIT" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "compare", 0, 0, G_OPTION_ARG_FILENAME, &compare, "Also evaluate this model (e.g. the patched one) and print both side by side", "MODEL" },
    { "mix", 0, 0, G_OPTION_ARG_STRING_ARRAY, &mix, "Dataset part DATASET:CLASSES of a mixed task (repeatable; further DATASET:CLASSES arguments join it)", "SPEC" },
    { "targets", 0, 0, G_OPTION_ARG_STRING, &targets, "With --compare: target classes to report (default: the classes B patches)", "LIST" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture preset for a weights-only state_dict", "SPEC" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL DATASET[:CLASSES] … — evaluate a model, composition or patched model");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autoptr(GPtrArray) specs = g_ptr_array_new ();
  g_auto(GStrv) mix_names = NULL;
  g_autofree char *ds_label = NULL;
  EvalResult a = { 0 }, b = { 0 };
  GCancellable *cancel = cleave_cli_cancellable ();
  gboolean plain_dataset;
  const char *const *names_a, *const *names_b;
  int status = 0;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
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
  plain_dataset = specs->len == 1 && strchr (specs->pdata[0], ':') == NULL;
  ds = cleave_cli_load_mix ((const char *const *) specs->pdata, (int) specs->len,
                            g_str_equal (split, "train") ? CLEAVE_SPLIT_TRAIN : CLEAVE_SPLIT_TEST, &mix_names, cancel,
                            &error);
  if (ds == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  ds_label = g_strjoinv (" + ", (char **) (g_ptr_array_add (specs, NULL), specs->pdata));
  backend = cleave_cli_open_device (device, &error);
  if (backend == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (!eval_one (argv[1], ds, plain_dataset, backend, arch, cancel, &a, &error) ||
      (compare && !eval_one (compare, ds, plain_dataset, backend, arch, cancel, &b, &error)))
    {
      eval_result_clear (&a);
      eval_result_clear (&b);
      return cleave_cli_fail (g_steal_pointer (&error));
    }
  names_a = cleave_scorer_class_names (a.scorer);
  names_b = b.scorer ? cleave_scorer_class_names (b.scorer) : NULL;
  {
    g_autofree gboolean *is_target = g_new0 (gboolean, a.m->n_classes);
    int n_targets = 0;
    if (b.m)
      {
        if (targets)
          {
            int n = 0;
            g_autofree int *list = cleave_cli_parse_int_list (targets, &n, &error);
            if (list == NULL)
              {
                eval_result_clear (&a);
                eval_result_clear (&b);
                return cleave_cli_fail (g_steal_pointer (&error));
              }
            for (int i = 0; i < n; i++)
              if (list[i] >= 0 && list[i] < a.m->n_classes)
                is_target[list[i]] = TRUE;
          }
        else if (cleave_scorer_kind (b.scorer) == CLEAVE_SCORER_PATCHED)
          {
            CleavePatched *p = cleave_scorer_patched (b.scorer);
            for (int e = 0; e < cleave_composition_n_classes (p->modules); e++)
              is_target[p->target[e]] = TRUE;
          }
        for (int c = 0; c < a.m->n_classes; c++)
          n_targets += is_target[c];
      }
    if (json)
      {
        g_autofree char *ja = cleave_metrics_to_json (a.m, names_a);
        if (b.m)
          {
            g_autofree char *jb = cleave_metrics_to_json (b.m, names_b);
            /* Built, not printf'd: the same JSON in every locale. */
            g_autoptr(JsonBuilder) jb_ = json_builder_new ();
            g_autofree char *text = NULL;
            json_builder_begin_object (jb_);
            json_builder_set_member_name (jb_, "split");
            json_builder_add_string_value (jb_, split);
            json_builder_set_member_name (jb_, "dataset");
            json_builder_add_string_value (jb_, ds_label);
            json_builder_set_member_name (jb_, "a");
            json_builder_add_value (jb_, json_from_string (ja, NULL));
            json_builder_set_member_name (jb_, "b");
            json_builder_add_value (jb_, json_from_string (jb, NULL));
            if (n_targets)
              {
                json_builder_set_member_name (jb_, "targets");
                json_builder_begin_array (jb_);
                for (int c = 0; c < a.m->n_classes; c++)
                  if (is_target[c])
                    {
                      const char *keys[3] = { "precision", "recall", "f1" };
                      const double *va[3] = { a.m->precision, a.m->recall, a.m->f1 };
                      const double *vb[3] = { b.m->precision, b.m->recall, b.m->f1 };
                      json_builder_begin_object (jb_);
                      json_builder_set_member_name (jb_, "class");
                      json_builder_add_int_value (jb_, c);
                      for (int q = 0; q < 3; q++)
                        {
                          json_builder_set_member_name (jb_, keys[q]);
                          json_builder_begin_array (jb_);
                          json_builder_add_double_value (jb_, va[q][c]);
                          json_builder_add_double_value (jb_, vb[q][c]);
                          json_builder_end_array (jb_);
                        }
                      json_builder_end_object (jb_);
                    }
                json_builder_end_array (jb_);
                json_builder_set_member_name (jb_, "other_accuracy");
                json_builder_begin_array (jb_);
                json_builder_add_double_value (jb_, other_accuracy (a.m, is_target));
                json_builder_add_double_value (jb_, other_accuracy (b.m, is_target));
                json_builder_end_array (jb_);
              }
            json_builder_end_object (jb_);
            text = cleave_cli_json_text (jb_, TRUE);
            printf ("%s\n", text);
          }
        else
          printf ("%s\n", ja);
      }
    else if (b.m == NULL)
      {
        g_autofree char *title = g_strdup_printf ("%s (%s) on %s (%s split)", argv[1], cleave_scorer_kind_name (a.scorer),
                                                  ds_label, split);
        cleave_cli_print_metrics (a.m, names_a, title);
        printf ("%.1f images/s, %.3f MFLOPs per image\n", a.m->total / MAX (1e-9, a.seconds),
                cleave_scorer_flops (a.scorer) / 1e6);
      }
    else
      {
        printf ("%s split of %s: A = %s (%s), B = %s (%s)\n", split, ds_label, argv[1], cleave_scorer_kind_name (a.scorer),
                compare, cleave_scorer_kind_name (b.scorer));
        printf ("accuracy  A %.2f%%  B %.2f%%  (%+.2f points)\n", 100 * a.m->accuracy, 100 * b.m->accuracy,
                100 * (b.m->accuracy - a.m->accuracy));
        printf ("%-14s %8s %8s %8s | %8s %8s %8s\n", "class", "P(A)", "R(A)", "F1(A)", "P(B)", "R(B)", "F1(B)");
        for (int c = 0; c < MIN (a.m->n_classes, b.m->n_classes); c++)
          printf ("%-14.14s %8.4f %8.4f %8.4f | %8.4f %8.4f %8.4f%s\n", names_a[c], a.m->precision[c],
                  a.m->recall[c], a.m->f1[c], b.m->precision[c], b.m->recall[c], b.m->f1[c],
                  is_target[c] ? "  <- target" : "");
        for (int c = 0; c < a.m->n_classes; c++)
          if (is_target[c])
            printf ("target %d (%s): precision %+.2f, recall %+.2f, F1 %+.2f points\n", c, names_a[c],
                    100 * (b.m->precision[c] - a.m->precision[c]), 100 * (b.m->recall[c] - a.m->recall[c]),
                    100 * (b.m->f1[c] - a.m->f1[c]));
        if (n_targets)
          printf ("accuracy on the other classes  A %.2f%%  B %.2f%%\n", 100 * other_accuracy (a.m, is_target),
                  100 * other_accuracy (b.m, is_target));
      }
  }
  eval_result_clear (&a);
  eval_result_clear (&b);
  return status;
}
