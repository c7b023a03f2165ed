/* cmd-modules.c: `cleave-cli modules MODULES` — per-module and per-layer
 * tables, module overlap, accuracy of the composition; --report DIR. */
#include "cli-common.h"
#include "cleave-module.h"
#include "cleave-report.h"

#include <math.h>
#include <string.h>

/* "86.58%" or "-" for a number that was never measured. */
static char *
percent (double v)
{
  return isfinite (v) ? g_strdup_printf ("%.2f%%", 100.0 * v) : g_strdup ("-");
}

static char *
fixed3 (double v)
{
  return isfinite (v) ? g_strdup_printf ("%.3f", v) : g_strdup ("-");
}

/* A short column heading for a module: its class name cut to @width. */
static char *
short_label (const CleaveModuleSet *set, const CleaveModule *m, int width)
{
  const char *name = m->class_name && *m->class_name ? m->class_name : set->class_names[m->class_index];
  return g_utf8_substring (name, 0, MIN ((glong) width, g_utf8_strlen (name, -1)));
}

static void
print_header (const CleaveModuleSet *set, const char *path)
{
  g_autofree char *src = percent (set->source_accuracy), *comp = percent (set->composed_accuracy);
  g_autofree char *krr = percent (cleave_module_set_mean_krr (set));

  printf ("module set  %s\n", path);
  printf ("method      %s\n", set->method);
  printf ("source      %s\n", set->source_path ? set->source_path : "(unknown)");
  if (set->source_sha256)
    printf ("sha256      %s\n", set->source_sha256);
  if (set->dataset)
    printf ("dataset     %s\n", set->dataset);
  printf ("input       %d×%d×%d, %d classes, %d kernels in %d conv layers\n",
          set->in_c, set->in_h, set->in_w, set->n_classes, set->total_kernels, set->n_sites);
  printf ("accuracy    source %s, composed %s", src, comp);
  if (isfinite (set->source_accuracy) && isfinite (set->composed_accuracy))
    printf (" (loss %.2f points)", 100.0 * (set->source_accuracy - set->composed_accuracy));
  printf (" — validation split\n");
  printf ("mean KRR    %s over %u modules\n", krr, set->modules->len);
}

static void
print_modules (const CleaveModuleSet *set)
{
  guint64 params = 0, flops = 0;
  int kept = 0;

  printf ("\n%-3s %-14s %4s %7s %6s %10s %9s %8s %7s %7s %7s  %s\n", "#", "class", "head", "KRR", "kept",
          "params", "MFLOPs", "acc", "P", "R", "F1", "score range (own class)");
  for (guint k = 0; k < set->modules->len; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      g_autofree char *label = short_label (set, m, 14);
      g_autofree char *acc = percent (m->val_accuracy);
      g_autofree char *p = fixed3 (m->val_precision), *r = fixed3 (m->val_recall), *f = fixed3 (m->val_f1);
      g_autofree char *lo = fixed3 (m->score_min), *hi = fixed3 (m->score_max);

      printf ("%-3u %-14s %4s %6.2f%% %6d %10" G_GUINT64_FORMAT " %9.3f %8s %7s %7s %7s  [%s, %s]\n",
              k, label, m->has_head ? "yes" : "no", 100.0 * m->krr, cleave_module_kept_total (m),
              cleave_module_params (m), cleave_module_flops (m) / 1e6, acc, p, r, f, lo, hi);
      params += cleave_module_params (m);
      flops += cleave_module_flops (m);
      kept += cleave_module_kept_total (m);
    }
  printf ("all modules together: %d kept kernels (%.2f× the source's %d), %" G_GUINT64_FORMAT
          " parameters, %.3f MFLOPs per image\n",
          kept, set->total_kernels ? (double) kept / set->total_kernels : 0.0, set->total_kernels, params, flops / 1e6);
}

static void
print_layers (const CleaveModuleSet *set)
{
  printf ("\nKRR per layer (%%)\n%-16s %7s", "layer", "kernels");
  for (guint k = 0; k < set->modules->len; k++)
    {
      g_autofree char *label = short_label (set, set->modules->pdata[k], 6);
      printf (" %6s", label);
    }
  printf ("\n");
  for (int s = 0; s < set->n_sites; s++)
    {
      printf ("%-16.16s %7d", set->site_names[s], set->site_channels[s]);
      for (guint k = 0; k < set->modules->len; k++)
        {
          const CleaveModule *m = set->modules->pdata[k];
          printf (" %6.1f", 100.0 * m->n_kept[s] / set->site_channels[s]);
        }
      if (set->site_tie[s] != s)
        printf ("  (tied to %s)", set->site_names[set->site_tie[s]]);
      printf ("\n");
    }
}

static void
print_jaccard (const CleaveModuleSet *set)
{
  printf ("\nModule overlap (Jaccard of kept kernels)\n%-8s", "");
  for (guint k = 0; k < set->modules->len; k++)
    {
      g_autofree char *label = short_label (set, set->modules->pdata[k], 6);
      printf (" %6s", label);
    }
  printf ("\n");
  for (guint i = 0; i < set->modules->len; i++)
    {
      g_autofree char *label = short_label (set, set->modules->pdata[i], 8);
      printf ("%-8s", label);
      for (guint j = 0; j < set->modules->len; j++)
        printf (" %6.3f", cleave_module_jaccard (set->modules->pdata[i], set->modules->pdata[j]));
      printf ("\n");
    }
}

int
cleave_cmd_modules (int argc, char **argv)
{
  g_autofree char *report = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "report", 0, 0, G_OPTION_ARG_FILENAME, &report, "Write report.json and PNG/SVG charts into DIR", "DIR" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the report as JSON instead of tables", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODULES — show a module set: KRR, size, accuracy, overlap");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModuleSet) set = NULL;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc != 2)
    {
      fprintf (stderr, "Usage: cleave-cli modules MODULES [--report DIR] [--json]\n");
      return 2;
    }
  set = cleave_module_set_load (argv[1], &error);
  if (set == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (json)
    {
      g_autofree char *text = cleave_report_module_set_json (set);
      printf ("%s\n", text);
    }
  else
    {
      print_header (set, argv[1]);
      print_modules (set);
      print_layers (set);
      print_jaccard (set);
    }
  if (report)
    {
      if (!cleave_report_write_module_set (set, report, &error))
        return cleave_cli_fail (g_steal_pointer (&error));
      fprintf (stderr, "report written to %s\n", report);
    }
  return 0;
}
