/* cmd-split.c: `cleave-cli split` — decompose a model into per-class modules
 * with GradSplitter (--method grad) or CNNSplitter (--method ga). */
#include "cli-common.h"
#include "cleave-error.h"
#include "cleave-job.h"
#include "cleave-options.h"
#include "cleave-report.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static void
print_selected (const CleaveSplitLog *log)
{
  const CleaveSplitLogEntry *e = cleave_split_log_selected (log);
  gboolean mixed = FALSE;

  if (e == NULL)
    return;
  printf ("selected epoch %d (%s): validation accuracy %.2f%%, mean KRR %.2f%% — %s\n", e->epoch,
          cleave_phase_name (e->phase), 100 * e->val_accuracy, 100 * e->mean_krr, e->selection ? e->selection : "");
  for (int k = 0; e->module_epochs && k < e->n_modules; k++)
    mixed |= e->module_epochs[k] != e->epoch;
  if (mixed)
    {
      printf ("modules taken from epochs");
      for (int k = 0; k < e->n_modules; k++)
        printf (" %d", e->module_epochs[k]);
      printf (" (per class): mean KRR %.2f%%\n", 100 * e->modules_mean_krr);
    }
  if (e->has_refit)
    printf ("heads refitted together on %d training images (%d passes): validation %.2f%% → %.2f%%, %s\n",
            e->refit.images, e->refit.passes, 100 * e->refit.val_accuracy_before, 100 * e->refit.val_accuracy_after,
            e->refit.kept ? "kept" : "not kept (the saved heads are the search's)");
}

static void
print_table (const CleaveModuleSet *set, const double *test_f1, double source_test, double composed_test,
             double seconds, gint64 images)
{
  int n_mod = (int) set->modules->len;
  /* Without a test run (--no-test, or interrupted) the test columns are left out. */
  gboolean test = test_f1 != NULL;

  printf ("\n%-26s %10s %s\n", "", "validation", test ? "      test" : "");
  printf ("%-26s %9.2f%%", "source model accuracy", 100 * set->source_accuracy);
  if (test)
    printf (" %9.2f%%", 100 * source_test);
  printf ("\n%-26s %9.2f%%", "composed modules accuracy", 100 * set->composed_accuracy);
  if (test)
    printf (" %9.2f%%", 100 * composed_test);
  printf ("\n%-26s %9.2f ", "loss (points)", 100 * (set->source_accuracy - set->composed_accuracy));
  if (test)
    printf ("  %9.2f", 100 * (source_test - composed_test));
  printf ("\nmean KRR %.2f%% (%d modules, %d kernels in the source)\n",
          100 * cleave_module_set_mean_krr (set), n_mod, set->total_kernels);
  printf ("\n%-8s %-16s %8s %10s%s\n", "module", "class", "KRR", "val F1", test ? "  test F1" : "");
  for (int k = 0; k < n_mod; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      printf ("%-8d %-16s %7.2f%% %9.2f%%", m->class_index, m->class_name, 100 * m->krr, 100 * m->val_f1);
      if (test)
        printf (" %7.2f%%", 100 * test_f1[k]);
      printf ("\n");
    }
  printf ("\nKRR per layer (mean over modules):\n");
  for (int s = 0; s < set->n_sites; s++)
    {
      double sum = 0;
      for (int k = 0; k < n_mod; k++)
        sum += (double) ((const CleaveModule *) set->modules->pdata[k])->n_kept[s] / set->site_channels[s];
      printf ("  %-24s %4d kernels %7.2f%%%s\n", set->site_names[s], set->site_channels[s],
              n_mod ? 100 * sum / n_mod : NAN,
              set->site_tie[s] != s ? " (tied)" : "");
    }
  printf ("\nwall time %.1f s", seconds);
  if (images > 0)
    printf (", %" G_GINT64_FORMAT " training images through the search, %.1f images/s", images, images / seconds);
  printf ("\n");
}

/* The progress bar, and the run's description once the data is loaded. */
typedef struct {
  CleaveCliProgress *bar;
  const CleaveSplitRequest *req;
  const CleaveSplitJobResult *result;
  gboolean described;
} Show;

static void
describe_run (const CleaveSplitRequest *req, const CleaveSplitJobResult *res)
{
  const CleaveGradSplitOptions *go = &req->grad;
  const CleaveGaSplitOptions *ga = &req->ga;
  const char *path = req->model->path ? req->model->path : "the model";

  fprintf (stderr, "device: %s\n", res->device_name);
  if (req->method == CLEAVE_SPLIT_METHOD_GRAD)
    fprintf (stderr, "GradSplitter on %s: %d epochs (%d head, %d × [%d mask, %d head]), %d training images "
                     "per epoch of %d, %d validation images, batch %d, α %g (×%g per round), lr θ %g, θ0 %g, "
                     "loss over %s, %d head passes\n",
             path, go->head_epochs + go->rounds * (go->mask_epochs + go->head_only_epochs), go->head_epochs,
             go->rounds, go->mask_epochs, go->head_only_epochs,
             go->train_images ? MIN (go->train_images, res->n_train) : res->n_train, res->n_train,
             go->val_images ? MIN (go->val_images, res->n_val) : res->n_val, go->batch, go->alpha, go->alpha_growth,
             go->lr_mask, go->theta_init, go->logit_loss ? "logits" : "scores", go->head_passes);
  else
    fprintf (stderr, "CNNSplitter on %s: population %d, %d generations, %d parents, %d elites, mutation %g, "
                     "sensitivity threshold %g points, fitness %s (weight %g)\n",
             path, ga->population, ga->generations, ga->parents, ga->elites, ga->mutation, ga->sensitivity_threshold,
             ga->fitness == CLEAVE_GA_FITNESS_KRR ? "krr" : "reference",
             ga->fitness == CLEAVE_GA_FITNESS_KRR ? ga->krr_weight : ga->diff_weight);
}

static void
show_progress (const CleaveProgress *p, gpointer data)
{
  Show *show = data;

  if (p->phase == CLEAVE_PHASE_LOAD)
    return;
  if (!show->described)
    {
      describe_run (show->req, show->result);
      show->described = TRUE;
    }
  if (p->phase == CLEAVE_PHASE_TEST)
    {
      if (p->fraction == 0)
        cleave_cli_progress_line (show->bar, "evaluating on the test split…");
      return;
    }
  cleave_cli_progress_cb (p, show->bar);
}

int
cleave_cmd_split (int argc, char **argv)
{
  g_autofree char *method = NULL, *output = NULL, *device = NULL, *report = NULL, *arch = NULL;
  int seed = 0;
  double val = CLEAVE_VAL_FRACTION_DEFAULT;
  CleaveGradSplitOptions go;
  CleaveGaSplitOptions ga;
  gboolean no_test = FALSE;
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL DATASET — decompose a model into per-class modules");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) model = NULL;
  g_auto(CleaveSplitJobResult) res = { 0 };
  CleaveSplitRequest req;
  CleaveModuleSet *set;
  g_autoptr(CleaveCliOutput) claim = NULL;
  GCancellable *cancel = cleave_cli_cancellable ();
  Show show = { 0 };
  gboolean cancelled, ok;
  const char *parts[2] = { NULL, NULL };
  GOptionEntry entries[] = {
    { "method", 'm', 0, G_OPTION_ARG_STRING, &method, "grad (GradSplitter, default) or ga (CNNSplitter)", "M" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Module-set file to write (required)", "FILE" },
    { "report", 0, 0, G_OPTION_ARG_FILENAME, &report, "Also write report.json and charts into DIR", "DIR" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture of a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
    { "seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed of the validation split and the search (default 0)", "N" },
    { "val", 0, 0, G_OPTION_ARG_DOUBLE, &val,
      "Validation fraction of the training split (default " G_STRINGIFY (CLEAVE_VAL_FRACTION_DEFAULT) ", as in train)", "F" },
    { "no-test", 0, 0, G_OPTION_ARG_NONE, &no_test, "Skip the test-split evaluation at the end", NULL },
    { NULL }
  };
  guint n_grad, n_ga;
  CleaveCliOptionTable tables[2];

  cleave_grad_split_options_init (&go);
  cleave_ga_split_options_init (&ga);
  tables[0] = (CleaveCliOptionTable) { cleave_grad_split_option_table (&n_grad), n_grad, &go, "grad" };
  tables[1] = (CleaveCliOptionTable) { cleave_ga_split_option_table (&n_ga), n_ga, &ga, "ga" };
  g_option_context_add_main_entries (ctx, entries, NULL);
  cleave_cli_add_option_tables (ctx, tables, G_N_ELEMENTS (tables));
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (method == NULL)
    method = g_strdup ("grad");   /* the default, set here: GOption does not free a replaced default */
  if (argc != 3 || output == NULL)
    {
      fprintf (stderr, "usage: cleave-cli split [--method grad|ga] MODEL DATASET -o MODULES [options]\n"
                       "(see cleave-cli split --help)\n");
      return 2;
    }
  if (!g_str_equal (method, "grad") && !g_str_equal (method, "ga"))
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                         "--method must be grad or ga, not '%s'", method));
  /* Checked before the model and the data load (the job checks them again). */
  if (!cleave_dataset_validate_split (val, &error) ||
      !(g_str_equal (method, "ga") ? cleave_ga_split_options_validate (&ga, &error)
                                   : cleave_grad_split_options_validate (&go, &error)))
    return cleave_cli_fail (g_steal_pointer (&error));
  if ((claim = cleave_cli_output_claim (output, (const char *const *) argv + 1, 2, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  parts[0] = argv[2];

  cleave_split_request_init (&req);
  req.dataset.parts = parts;
  req.dataset.data_dirs = cleave_cli_data_dirs ();
  if (arch)
    {
      /* A weights-only state_dict takes its input shape and class names from the data. */
      g_autoptr(CleaveDataset) ds = cleave_job_load_dataset (&req.dataset, CLEAVE_SPLIT_TRAIN, NULL, cancel, &error);
      model = ds ? cleave_cli_load_model_for (argv[1], arch, ds, &error) : NULL;
    }
  else
    model = cleave_cli_load_model (argv[1], NULL, NULL, 0, &error);
  if (model == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  req.model = model;
  req.device.device = device ? device : cleave_cli_default_device ();
  req.device.config = cleave_cli_backend_config ();
  req.val_fraction = val;
  req.seed = (guint64) seed;
  req.method = g_str_equal (method, "ga") ? CLEAVE_SPLIT_METHOD_GA : CLEAVE_SPLIT_METHOD_GRAD;
  req.grad = go;
  req.ga = ga;
  req.test = !no_test;
  fprintf (stderr, "loading %s…\n", argv[2]);
  show.bar = cleave_cli_progress_new ("split");
  show.req = &req;
  show.result = &res;
  ok = cleave_job_split (&req, show_progress, &show, cancel, &res, &error);
  cleave_cli_progress_free (show.bar);
  cancelled = res.split.cancelled;
  set = res.split.set;
  if (!ok && !(cancelled && set))
    return cleave_cli_fail (g_steal_pointer (&error));
  g_clear_error (&error);

  /* An interrupted search's result goes beside the output, never over it. */
  if (cancelled)
    {
      g_autofree char *partial = g_strconcat (output, ".partial", NULL);
      g_free (output);
      output = g_steal_pointer (&partial);
    }
  if (!cleave_module_set_save (set, output, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (cancelled)
    fprintf (stderr, "interrupted at %s %d: the best result so far is in %s\n",
             req.method == CLEAVE_SPLIT_METHOD_GA ? "generation" : "epoch", res.split.cancelled_at, output);
  print_selected (set->log);
  if (report && !cleave_report_write_module_set (set, report, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  print_table (set, res.test_f1, res.source_test, res.composed_test, res.seconds, cleave_split_log_images (set->log));
  printf ("wrote %s%s%s\n", output, report ? " and the report in " : "", report ? report : "");
  return cancelled ? 130 : 0;
}
