/* cmd-patch.c: `cleave-cli patch WEAK MODULES:CLASS … -o PATCHED` — replace
 * a weak model's softmax column for each target class by a strong module's
 * min–max normalised score (docs/ALGORITHMS.md, Reuse). */
#include "cli-common.h"
#include "cleave-compose.h"
#include "cleave-error.h"

int
cleave_cmd_patch (int argc, char **argv)
{
  g_autofree char *output = NULL, *arch = NULL;
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Patched-model file to write (required)", "FILE" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture when WEAK is a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("WEAK MODULES:CLASS[,CLASS…] … — patch a weak model with strong modules");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveCliOutput) claim = NULL;
  g_autoptr(CleavePatched) p = NULL;
  CleaveModel *weak;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc < 3 || output == NULL)
    {
      fprintf (stderr, "Usage: cleave-cli patch WEAK MODULES:CLASS … -o PATCHED\n");
      return 2;
    }
  if ((claim = cleave_cli_output_claim (output, (const char *const *) argv + 1, argc - 1, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if ((weak = cleave_cli_load_model (argv[1], arch, NULL, 0, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  p = cleave_patched_new (weak);
  for (int i = 2; i < argc; i++)
    {
      g_autofree char *path = NULL;
      g_autofree int *list = NULL;
      g_autoptr(CleaveModuleSet) set = NULL;
      int n = 0;

      if (!cleave_parse_path_list (argv[i], &path, &list, &n, &error))
        return cleave_cli_fail (g_steal_pointer (&error));
      if (list == NULL)
        return cleave_cli_fail (g_error_new (G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                             "'%s': name the target class(es), e.g. %s:3", argv[i], argv[i]));
      if ((set = cleave_module_set_load (path, &error)) == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
      if (set->n_classes != weak->n_classes)
        return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                             "%s has modules of a %d-class model, the weak model has %d classes",
                                             path, set->n_classes, weak->n_classes));
      for (int j = 0; j < n; j++)
        {
          int k = -1;
          for (guint m = 0; m < set->modules->len; m++)
            if (((CleaveModule *) set->modules->pdata[m])->class_index == list[j])
              k = (int) m;
          if (k < 0)
            return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                                 "%s has no module for class %d", path, list[j]));
          if (!cleave_patched_add (p, set, k, list[j], &error))
            return cleave_cli_fail (g_steal_pointer (&error));
          {
            const CleaveModule *m = set->modules->pdata[k];
            printf ("patch class %d (%s) with %s module %d: KRR %.2f%%, val F1 %.4f, score range [%.4g, %.4g]\n",
                    list[j], weak->class_names[list[j]], path, k, 100 * m->krr, m->val_f1, m->score_min, m->score_max);
          }
        }
    }
  if (!cleave_patched_save (p, output, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  printf ("wrote %s (%d patched classes)\n", output, cleave_composition_n_classes (p->modules));
  return 0;
}
