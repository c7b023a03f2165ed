/* cmd-eval.c: `cleave-cli eval MODEL DATASET` — accuracy, P/R/F1, confusion. */
#include "cli-common.h"

#include <string.h>

static CleaveMetrics *
eval_one (const char *path, CleaveDataset *ds, CleaveBackend *backend, const char *arch, GCancellable *cancel,
          CleaveModel **model_out, GError **error)
{
  CleaveModel *model = cleave_cli_load_model (path, arch, NULL, ds->n_classes, error);
  CleaveMetrics *m;
  CleaveCliProgress *bar;
  if (model == NULL)
    return NULL;
  bar = cleave_cli_progress_new ("eval");
  m = cleave_model_evaluate (model, backend, ds, cleave_cli_progress_cb, bar, cancel, error);
  cleave_cli_progress_free (bar);
  *model_out = model;
  return m;
}

int
cleave_cmd_eval (int argc, char **argv)
{
  g_autofree char *device = NULL, *split = g_strdup ("test"), *compare = NULL, *arch = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, "test (default) or train", "SPLIT" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print JSON", NULL },
    { "compare", 0, 0, G_OPTION_ARG_FILENAME, &compare, "Also evaluate this model and print both side by side", "MODEL" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture preset for a weights-only state_dict", "SPEC" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new ("MODEL DATASET — evaluate a model on a dataset");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autoptr(CleaveModel) model = NULL, other = NULL;
  g_autoptr(CleaveMetrics) m = NULL, m2 = NULL;
  GCancellable *cancel = cleave_cli_cancellable ();

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc != 3)
    {
      fprintf (stderr, "Usage: cleave-cli eval MODEL DATASET [--json] [--compare OTHER]\n");
      return 2;
    }
  ds = cleave_dataset_load (argv[2], g_str_equal (split, "train") ? CLEAVE_SPLIT_TRAIN : CLEAVE_SPLIT_TEST, cancel, &error);
  if (ds == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  backend = cleave_cli_open_device (device, &error);
  if (backend == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  m = eval_one (argv[1], ds, backend, arch, cancel, &model, &error);
  if (m == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (compare)
    {
      m2 = eval_one (compare, ds, backend, arch, cancel, &other, &error);
      if (m2 == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
    }
  if (json)
    {
      g_autofree char *a = cleave_metrics_to_json (m, (const char *const *) model->class_names);
      if (m2)
        {
          g_autofree char *b = cleave_metrics_to_json (m2, (const char *const *) other->class_names);
          printf ("{\"split\": \"%s\", \"a\": %s,\n\"b\": %s}\n", split, a, b);
        }
      else
        printf ("%s\n", a);
      return 0;
    }
  if (m2 == NULL)
    {
      g_autofree char *title = g_strdup_printf ("%s on %s (%s split)", argv[1], argv[2], split);
      cleave_cli_print_metrics (m, (const char *const *) model->class_names, title);
      return 0;
    }
  printf ("%s split of %s: A = %s, B = %s\n", split, argv[2], argv[1], compare);
  printf ("accuracy  A %.2f%%  B %.2f%%  (%+.2f points)\n", 100 * m->accuracy, 100 * m2->accuracy,
          100 * (m2->accuracy - m->accuracy));
  printf ("%-14s %8s %8s %8s | %8s %8s %8s\n", "class", "P(A)", "R(A)", "F1(A)", "P(B)", "R(B)", "F1(B)");
  for (int c = 0; c < MIN (m->n_classes, m2->n_classes); c++)
    printf ("%-14.14s %8.4f %8.4f %8.4f | %8.4f %8.4f %8.4f\n", model->class_names[c], m->precision[c],
            m->recall[c], m->f1[c], m2->precision[c], m2->recall[c], m2->f1[c]);
  return 0;
}
