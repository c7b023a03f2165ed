/* cmd-compose.c: `cleave-cli compose -o NEW MODULES:0,3 OTHER:7 …` and
 * `--best-of A B C` — a composed model from modules (docs/ALGORITHMS.md, Reuse). */
#include "cli-common.h"
#include "cleave-compose.h"
#include "cleave-error.h"

#include <math.h>
#include <string.h>

/* The module of @set recognising source class @cls, or -1. */
static int
find_module (const CleaveModuleSet *set, int cls)
{
  for (guint k = 0; k < set->modules->len; k++)
    if (((CleaveModule *) set->modules->pdata[k])->class_index == cls)
      return (int) k;
  return -1;
}

static gboolean
add_spec (CleaveComposition *c, GPtrArray *keep_sets, const char *arg, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree int *list = NULL;
  int n = 0;
  CleaveModuleSet *set;

  if (!cleave_parse_path_list (arg, &path, &list, &n, error))
    return FALSE;
  if ((set = cleave_module_set_load (path, error)) == NULL)
    return FALSE;
  g_ptr_array_add (keep_sets, set);
  if (list == NULL)
    {
      for (guint k = 0; k < set->modules->len; k++)
        if (!cleave_composition_add (c, set, (int) k, NULL, error))
          return FALSE;
      return TRUE;
    }
  for (int i = 0; i < n; i++)
    {
      int k = find_module (set, list[i]);
      if (k < 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s has no module for class %d", path, list[i]);
          return FALSE;
        }
      if (!cleave_composition_add (c, set, k, NULL, error))
        return FALSE;
    }
  return TRUE;
}

static void
print_summary (const CleaveComposition *c, const char *output)
{
  CleaveComposeFlops f;
  int K = cleave_composition_n_classes (c), kept = 0, total = 0;

  cleave_composition_flops (c, &f);
  printf ("composition %s: %d classes from %u module set(s), calibration %s%s\n", output, K, c->sources->len,
          cleave_calibration_to_string (c->calibration), cleave_composition_uses_minmax (c) ? " (min–max in effect)" : "");
  printf ("%-3s %-20s %-8s %6s %5s %8s %10s\n", "#", "class", "source", "class", "head", "KRR", "val F1");
  for (int k = 0; k < K; k++)
    {
      const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
      const CleaveModule *m = cleave_composition_module (c, k);
      printf ("%-3d %-20.20s %-8d %6d %5s %7.2f%% %10.4f\n", k, cc->class_name, cc->source, m->class_index,
              m->has_head ? "yes" : "no", 100 * m->krr, m->val_f1);
      kept += cleave_module_kept_total (m);
    }
  for (guint i = 0; i < c->sources->len; i++)
    total += ((CleaveModuleSet *) c->sources->pdata[i])->total_kernels;
  /* Modules reused together count their kept kernels summed (no sharing),
   * against the kernels of their source models (docs/ALGORITHMS.md, Metrics). */
  printf ("KRR of the composition: %.2f%% (%d kept kernels summed over modules / %d kernels of the source models)\n",
          total ? 100.0 * kept / total : 0.0, kept, total);
  printf ("FLOPs per image: one by one %.3f M, executed %.3f M%s, exact layer-prefix sharing bound %.3f M\n",
          f.one_by_one / 1e6, f.executed / 1e6, c->shared ? " (identical modules once)" : "", f.prefix_shared / 1e6);
}

/* Times scoring with and without shared execution on @n images. */
static gboolean
measure (CleaveComposition *c, const char *dataset, int n, const char *device, GError **error)
{
  g_autoptr(CleaveBackend) backend = cleave_cli_open_device (device, error);
  g_autoptr(CleaveDataset) ds = NULL;
  g_autofree float *a = NULL, *b = NULL;
  int K = cleave_composition_n_classes (c);
  gboolean shared = c->shared;
  double t_one, t_shared, diff = 0;
  gint64 t0;

  if (backend == NULL || (ds = cleave_cli_load_dataset (dataset, CLEAVE_SPLIT_TEST, NULL, error)) == NULL)
    return FALSE;
  n = MIN (n, ds->n);
  a = g_new (float, (gsize) n * K);
  b = g_new (float, (gsize) n * K);
  c->shared = FALSE;
  t0 = g_get_monotonic_time ();
  if (!cleave_composition_scores (c, backend, ds, NULL, n, a, NULL, error))
    return FALSE;
  t_one = (g_get_monotonic_time () - t0) / 1e6;
  c->shared = TRUE;
  t0 = g_get_monotonic_time ();
  if (!cleave_composition_scores (c, backend, ds, NULL, n, b, NULL, error))
    return FALSE;
  t_shared = (g_get_monotonic_time () - t0) / 1e6;
  c->shared = shared;
  for (gsize i = 0; i < (gsize) n * K; i++)
    diff = MAX (diff, fabs (a[i] - b[i]));
  printf ("measured on %d %s test images: one by one %.3f s (%.0f img/s), shared %.3f s (%.0f img/s), "
          "max |score difference| %.2g\n", n, dataset, t_one, n / t_one, t_shared, n / t_shared, diff);
  return TRUE;
}

int
cleave_cmd_compose (int argc, char **argv)
{
  g_autofree char *output = NULL, *calibration = NULL, *names = NULL, *measure_ds = NULL, *device = NULL;
  gboolean best_of = FALSE, no_shared = FALSE;
  int measure_n = 1000;
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Composition file to write (required)", "FILE" },
    { "best-of", 0, 0, G_OPTION_ARG_NONE, &best_of, "Arguments are module sets of one task: per class take the module with the best validation F1", NULL },
    { "calibration", 0, 0, G_OPTION_ARG_STRING, &calibration, "auto (default), raw or minmax (see docs)", "C" },
    { "names", 0, 0, G_OPTION_ARG_STRING, &names, "Class names of the new task, comma-separated", "A,B,…" },
    { "no-shared", 0, 0, G_OPTION_ARG_NONE, &no_shared, "Run every module on its own, even identical ones", NULL },
    { "measure", 0, 0, G_OPTION_ARG_STRING, &measure_ds, "Time shared vs one-by-one scoring on this dataset's test split", "DATASET" },
    { "measure-images", 0, 0, G_OPTION_ARG_INT, &measure_n, "Images for --measure (default 1000)", "N" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device for --measure", "DEV" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODULES[:CLASSES] … — compose modules into a model for a new task");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveCliOutput) claim = NULL;
  g_autoptr(CleaveComposition) c = NULL;
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_module_set_free);

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc < 2 || output == NULL)
    {
      fprintf (stderr, "Usage: cleave-cli compose -o NEW MODULES:0,3 OTHER:7 …\n"
                       "       cleave-cli compose -o NEW --best-of A B C\n");
      return 2;
    }
  if ((claim = cleave_cli_output_claim (output, (const char *const *) argv + 1, argc - 1, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (best_of)
    {
      g_autofree int *chosen = NULL;
      for (int i = 1; i < argc; i++)
        {
          CleaveModuleSet *set = cleave_module_set_load (argv[i], &error);
          if (set == NULL)
            return cleave_cli_fail (g_steal_pointer (&error));
          g_ptr_array_add (sets, set);
        }
      c = cleave_composition_best_of ((CleaveModuleSet **) sets->pdata, (int) sets->len, &chosen, &error);
      if (c == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
      printf ("best of %u module sets, per class (validation F1):\n", sets->len);
      for (int k = 0; k < cleave_composition_n_classes (c); k++)
        {
          printf ("  class %-3d %-16.16s from %s", k, g_array_index (c->classes, CleaveComposedClass, k).class_name,
                  argv[1 + chosen[k]]);
          for (guint i = 0; i < sets->len; i++)
            {
              const CleaveModuleSet *s = sets->pdata[i];
              int m = find_module (s, k);
              printf ("  [%u] %.4f", i, m >= 0 ? ((CleaveModule *) s->modules->pdata[m])->val_f1 : NAN);
            }
          printf ("\n");
        }
    }
  else
    {
      c = cleave_composition_new ();
      for (int i = 1; i < argc; i++)
        if (!add_spec (c, sets, argv[i], &error))
          return cleave_cli_fail (g_steal_pointer (&error));
    }
  if (calibration)
    {
      int cal = cleave_calibration_from_string (calibration);
      if (cal < 0)
        return cleave_cli_fail (g_error_new (G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                             "--calibration must be auto, raw or minmax"));
      c->calibration = cal;
    }
  c->shared = !no_shared;
  if (names)
    {
      g_auto(GStrv) v = g_strsplit (names, ",", -1);
      if ((int) g_strv_length (v) != cleave_composition_n_classes (c))
        return cleave_cli_fail (g_error_new (G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                             "--names has %u names for %d classes", g_strv_length (v),
                                             cleave_composition_n_classes (c)));
      for (int k = 0; k < cleave_composition_n_classes (c); k++)
        {
          CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
          g_free (cc->class_name);
          cc->class_name = g_strdup (v[k]);
        }
    }
  if (!cleave_composition_save (c, output, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  print_summary (c, output);
  if (measure_ds && !measure (c, measure_ds, measure_n, device, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  return 0;
}
