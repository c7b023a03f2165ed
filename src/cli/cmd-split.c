/* cmd-split.c: `cleave-cli split` — decompose a model into per-class modules
 * with GradSplitter (--method grad) or CNNSplitter (--method ga). */
#include "cli-common.h"
#include "cleave-error.h"
#include "cleave-split.h"
#include "cleave-report.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Training images pushed through the search, summed over the log. */
static gint64
log_images (const char *log_json)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  JsonArray *a;
  gint64 total = 0;

  if (log_json == NULL || !json_parser_load_from_data (p, log_json, -1, NULL) ||
      json_parser_get_root (p) == NULL || !JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)))
    return 0;
  a = json_node_get_array (json_parser_get_root (p));
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *n = json_array_get_element (a, i);
      if (JSON_NODE_HOLDS_OBJECT (n))
        total += json_object_get_int_member_with_default (json_node_get_object (n), "images", 0);
    }
  return total;
}

static void
print_selected (const char *log_json)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  JsonArray *a;

  if (log_json == NULL || !json_parser_load_from_data (p, log_json, -1, NULL) ||
      json_parser_get_root (p) == NULL || !JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)))
    return;
  a = json_node_get_array (json_parser_get_root (p));
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonObject *o = json_node_get_object (json_array_get_element (a, i));
      if (o && json_object_get_boolean_member_with_default (o, "selected", FALSE))
        {
          double acc = json_object_get_double_member_with_default (o, "val_accuracy", -1);
          printf ("selected epoch %" G_GINT64_FORMAT " (%s): validation accuracy %.2f%%, mean KRR %.2f%% — %s\n",
                  json_object_get_int_member_with_default (o, "epoch", 0),
                  json_object_get_string_member_with_default (o, "phase", "?"),
                  acc >= 0 ? 100 * acc : NAN,
                  100 * json_object_get_double_member_with_default (o, "mean_krr", NAN),
                  json_object_get_string_member_with_default (o, "selection", ""));
          if (json_object_has_member (o, "module_epochs"))
            {
              JsonArray *me = json_object_get_array_member (o, "module_epochs");
              gboolean mixed = FALSE;
              for (guint k = 0; k < json_array_get_length (me); k++)
                mixed |= json_array_get_int_element (me, k) != json_object_get_int_member_with_default (o, "epoch", 0);
              if (mixed)
                {
                  printf ("modules taken from epochs");
                  for (guint k = 0; k < json_array_get_length (me); k++)
                    printf (" %" G_GINT64_FORMAT, json_array_get_int_element (me, k));
                  printf (" (per class): mean KRR %.2f%%\n",
                          100 * json_object_get_double_member_with_default (o, "modules_mean_krr", NAN));
                }
            }
          if (json_object_has_member (o, "head_refit") && JSON_NODE_HOLDS_OBJECT (json_object_get_member (o, "head_refit")))
            {
              JsonObject *r = json_object_get_object_member (o, "head_refit");
              printf ("heads refitted together on %" G_GINT64_FORMAT " training images (%" G_GINT64_FORMAT
                      " passes): validation %.2f%% → %.2f%%, %s\n",
                      json_object_get_int_member_with_default (r, "images", 0),
                      json_object_get_int_member_with_default (r, "passes", 0),
                      100 * json_object_get_double_member_with_default (r, "val_accuracy_before", NAN),
                      100 * json_object_get_double_member_with_default (r, "val_accuracy_after", NAN),
                      json_object_get_boolean_member_with_default (r, "kept", FALSE) ? "kept" : "not kept (the saved heads are the search's)");
            }
          return;
        }
    }
}

static void
print_table (const CleaveModuleSet *set, const double *val_f1, double source_test, double composed_test,
             double seconds, gint64 images)
{
  int n_mod = (int) set->modules->len;

  printf ("\n%-26s %10s %10s\n", "", "validation", "test");
  printf ("%-26s %9.2f%% %9.2f%%\n", "source model accuracy", 100 * set->source_accuracy, 100 * source_test);
  printf ("%-26s %9.2f%% %9.2f%%\n", "composed modules accuracy", 100 * set->composed_accuracy, 100 * composed_test);
  printf ("%-26s %9.2f   %9.2f\n", "loss (points)", 100 * (set->source_accuracy - set->composed_accuracy),
          100 * (source_test - composed_test));
  printf ("mean KRR %.2f%% (%d modules, %d kernels in the source)\n",
          100 * cleave_module_set_mean_krr (set), n_mod, set->total_kernels);
  printf ("\n%-8s %-16s %8s %10s %8s\n", "module", "class", "KRR", "val F1", "test F1");
  for (int k = 0; k < n_mod; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      /* Without val_f1 the module's own numbers are the validation ones (no test run). */
      printf ("%-8d %-16s %7.2f%% %9.2f%% %7.2f%%\n", m->class_index, m->class_name, 100 * m->krr,
              100 * (val_f1 ? val_f1[k] : m->val_f1), val_f1 ? 100 * m->val_f1 : NAN);
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

/* A two-way option: *second = whether @value is @b; anything else is an error. */
static gboolean
pick_one_of (const char *option, const char *value, const char *a, const char *b, gboolean *second, GError **error)
{
  if (!g_str_equal (value, a) && !g_str_equal (value, b))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s must be %s or %s, not '%s'", option, a, b, value);
      return FALSE;
    }
  *second = g_str_equal (value, b);
  return TRUE;
}

int
cleave_cmd_split (int argc, char **argv)
{
  g_autofree char *method = NULL, *output = NULL, *device = NULL, *report = NULL, *fitness = NULL;
  g_autofree char *mask_opt = NULL, *loss_kind = NULL, *arch = NULL;
  int seed = 0;
  double val = 0.2;
  CleaveGradSplitOptions go;
  CleaveGaSplitOptions ga;
  double alpha_growth, alpha, lr_head, lr_mask, lr_head_joint, theta_init, max_loss;
  int val_images = -1;
  gboolean no_test = FALSE, uniform = FALSE, no_holdout = FALSE;
  g_autoptr(GOptionContext) ctx = g_option_context_new ("MODEL DATASET — decompose a model into per-class modules");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveDataset) train_ds = NULL, test_ds = NULL;
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autoptr(CleaveModuleSet) set = NULL;
  g_autoptr(CleaveCliOutput) claim = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  g_autofree char *cmdline = cleave_cli_command_line (argc, argv);
  int n_train = 0, n_val = 0;
  GCancellable *cancel = cleave_cli_cancellable ();
  CleaveCliProgress *bar;
  gboolean cancelled = FALSE;
  gint64 t0;
  g_autofree double *val_f1 = NULL;
  double seconds, source_test = NAN, composed_test = NAN;

#ifdef __GLIBC__
  /* The search allocates and frees the same large scratch buffers on every
   * batch; glibc would hand them back to the kernel each time (mmap/trim)
   * and fault them in again. Measured here: a third fewer page faults and
   * about 20% less CPU time for the search. */
  mallopt (M_MMAP_THRESHOLD, 256 << 20);
  mallopt (M_TRIM_THRESHOLD, 512 << 20);
#endif
  cleave_grad_split_options_init (&go);
  cleave_ga_split_options_init (&ga);
  alpha_growth = go.alpha_growth;
  alpha = go.alpha, lr_head = go.lr_head, lr_mask = go.lr_mask, lr_head_joint = go.lr_head_joint;
  theta_init = go.theta_init, max_loss = go.max_loss;
  {
    GOptionEntry entries[] = {
      { "method", 'm', 0, G_OPTION_ARG_STRING, &method, "grad (GradSplitter, default) or ga (CNNSplitter)", "M" },
      { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Module-set file to write (required)", "FILE" },
      { "report", 0, 0, G_OPTION_ARG_FILENAME, &report, "Also write report.json and charts into DIR", "DIR" },
      { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
      { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture of a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
      { "seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed of the validation split and the search (default 0)", "N" },
      { "val", 0, 0, G_OPTION_ARG_DOUBLE, &val, "Validation fraction of the training split (default 0.2, as in train)", "F" },
      { "val-images", 0, 0, G_OPTION_ARG_INT, &val_images, "Validation images for selection/fitness (0 = all; default per method)", "N" },
      { "no-test", 0, 0, G_OPTION_ARG_NONE, &no_test, "Skip the test-split evaluation at the end", NULL },
      /* grad */
      { "head-epochs", 0, 0, G_OPTION_ARG_INT, &go.head_epochs, "grad: warm-up epochs training heads only", "N" },
      { "rounds", 0, 0, G_OPTION_ARG_INT, &go.rounds, "grad: rounds of [mask epochs, head-only epochs]", "N" },
      { "mask-epochs", 0, 0, G_OPTION_ARG_INT, &go.mask_epochs, "grad: mask+head epochs per round", "N" },
      { "head-only-epochs", 0, 0, G_OPTION_ARG_INT, &go.head_only_epochs, "grad: head-only epochs per round", "N" },
      { "batch", 'b', 0, G_OPTION_ARG_INT, &go.batch, "grad: batch size (each image runs once per module)", "N" },
      { "train-images", 0, 0, G_OPTION_ARG_INT, &go.train_images, "grad: training images drawn per epoch (0 = all)", "N" },
      { "alpha", 0, 0, G_OPTION_ARG_DOUBLE, &alpha, "grad: weight of mean(mask) in the loss during mask epochs", "A" },
      { "alpha-growth", 0, 0, G_OPTION_ARG_DOUBLE, &alpha_growth, "grad: factor applied to α at each round (default 1.35; 1 = constant, the reference)", "G" },
      { "lr-head", 0, 0, G_OPTION_ARG_DOUBLE, &lr_head, "grad: Adam lr of head-only epochs", "LR" },
      { "lr-mask", 0, 0, G_OPTION_ARG_DOUBLE, &lr_mask, "grad: Adam lr of θ", "LR" },
      { "lr-head-joint", 0, 0, G_OPTION_ARG_DOUBLE, &lr_head_joint, "grad: Adam lr of heads in mask epochs", "LR" },
      { "theta-init", 0, 0, G_OPTION_ARG_DOUBLE, &theta_init, "grad: initial θ (the reference uses 1)", "T" },
      { "max-loss", 0, 0, G_OPTION_ARG_DOUBLE, &max_loss, "grad: selection bound on the validation accuracy loss, points (default 1)", "P" },
      { "mask-optimizer", 0, 0, G_OPTION_ARG_STRING, &mask_opt, "grad: adam (per-entry, the reference's) or adam-row (second moment shared per module and layer)", "OPT" },
      { "loss", 0, 0, G_OPTION_ARG_STRING, &loss_kind, "grad: logits (default: CE over the heads' pre-sigmoid outputs) or scores (CE over the N sigmoid scores, the reference's)", "L" },
      { "head-passes", 0, 0, G_OPTION_ARG_INT, &go.head_passes, "grad: passes over each head-only epoch's images, the logits computed once (default 10; the reference: 1)", "N" },
      { "uniform-epoch", 0, 0, G_OPTION_ARG_NONE, &uniform, "grad: take every module from the one selected epoch (default: each module from its own epoch)", NULL },
      { "refit-images", 0, 0, G_OPTION_ARG_INT, &go.refit_images, "grad: training images for the final joint refit of the chosen modules' heads (0 = no refit; default 10000)", "N" },
      { "refit-passes", 0, 0, G_OPTION_ARG_INT, &go.refit_passes, "grad: passes of that refit over the images' cached logits (default 20)", "N" },
      { "no-holdout", 0, 0, G_OPTION_ARG_NONE, &no_holdout, "grad: choose the per-module epochs on all validation images (default: on half of them, checked on the other half)", NULL },
      /* ga */
      { "population", 0, 0, G_OPTION_ARG_INT, &ga.population, "ga: population per class", "N" },
      { "generations", 0, 0, G_OPTION_ARG_INT, &ga.generations, "ga: generations", "N" },
      { "parents", 0, 0, G_OPTION_ARG_INT, &ga.parents, "ga: parents kept per generation", "N" },
      { "elites", 0, 0, G_OPTION_ARG_INT, &ga.elites, "ga: elites surviving unchanged", "N" },
      { "mutation", 0, 0, G_OPTION_ARG_DOUBLE, &ga.mutation, "ga: gene flip probability", "P" },
      { "fitness", 0, 0, G_OPTION_ARG_STRING, &fitness,
        "ga: reference (default: composed accuracy + diff_weight × mean(1 − Jaccard) between modules' kept kernels) "
        "or krr (composed accuracy − krr_weight × KRR); accuracy and KRR as fractions", "F" },
      { "sensitivity-threshold", 0, 0, G_OPTION_ARG_DOUBLE, &ga.sensitivity_threshold,
        "ga: accuracy drop (points) above which a layer counts as sensitive (default 5)", "P" },
      { "krr-weight", 0, 0, G_OPTION_ARG_DOUBLE, &ga.krr_weight, "ga: krr_weight of the krr fitness (default 0.1)", "W" },
      { "diff-weight", 0, 0, G_OPTION_ARG_DOUBLE, &ga.diff_weight,
        "ga: diff_weight of the reference fitness (default 0.1)", "W" },
      { NULL }
    };
    g_option_context_add_main_entries (ctx, entries, NULL);
    if (!g_option_context_parse (ctx, &argc, &argv, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
  }
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
  if (fitness)
    {
      if (g_str_equal (fitness, "reference"))
        ga.fitness = CLEAVE_GA_FITNESS_REFERENCE;
      else if (g_str_equal (fitness, "krr"))
        ga.fitness = CLEAVE_GA_FITNESS_KRR;
      else
        return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                             "--fitness must be reference or krr, not '%s'", fitness));
    }
  go.alpha_growth = (float) alpha_growth;
  if (!(alpha_growth > 0))
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "--alpha-growth must be > 0"));
  go.alpha = (float) alpha, go.lr_head = (float) lr_head, go.lr_mask = (float) lr_mask;
  go.lr_head_joint = (float) lr_head_joint, go.theta_init = (float) theta_init, go.max_loss = max_loss;
  go.seed = ga.seed = (guint64) seed;
  go.per_module = !uniform;
  go.holdout = !no_holdout;
  if (loss_kind && !pick_one_of ("--loss", loss_kind, "scores", "logits", &go.logit_loss, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (go.head_passes < 1)
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "--head-passes must be ≥ 1"));
  if (go.refit_images < 0 || go.refit_passes < 0)
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                         "--refit-images and --refit-passes must be ≥ 0"));
  if (mask_opt && !pick_one_of ("--mask-optimizer", mask_opt, "adam", "adam-row", &go.row_adam, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (!(ga.sensitivity_threshold >= 0) || !(ga.krr_weight >= 0) || !(ga.diff_weight >= 0))
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                         "--sensitivity-threshold, --krr-weight and --diff-weight must be ≥ 0"));
  if (val_images >= 0)
    go.val_images = ga.val_images = val_images;
  if (!cleave_dataset_validate_split (val, &error) ||
      !(g_str_equal (method, "grad") ? cleave_grad_split_options_validate (&go, &error)
                                     : cleave_ga_split_options_validate (&ga, &error)))
    return cleave_cli_fail (g_steal_pointer (&error));
  if ((claim = cleave_cli_output_claim (output, (const char *const *) argv + 1, 2, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));

  fprintf (stderr, "loading %s…\n", argv[2]);
  train_ds = cleave_dataset_load (argv[2], CLEAVE_SPLIT_TRAIN, cancel, &error);
  if (train_ds && !no_test)
    test_ds = cleave_dataset_load (argv[2], CLEAVE_SPLIT_TEST, cancel, &error);
  if (train_ds == NULL || (!no_test && test_ds == NULL))
    return cleave_cli_fail (g_steal_pointer (&error));
  model = cleave_cli_load_model_for (argv[1], arch, train_ds, &error);
  if (model == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (train_ds->n_classes != model->n_classes)
    return cleave_cli_fail (g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                                         "%s has %d classes, the model %d", argv[2], train_ds->n_classes,
                                         model->n_classes));
  /* The same stratified split as `train` with the same seed and fraction. */
  cleave_dataset_split (train_ds, val, (guint64) seed, &train_idx, &n_train, &val_idx, &n_val);
  backend = cleave_cli_open_device (device, &error);
  if (backend == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));

  t0 = g_get_monotonic_time ();
  bar = cleave_cli_progress_new ("split");
  if (g_str_equal (method, "grad"))
    {
      int epochs = go.head_epochs + go.rounds * (go.mask_epochs + go.head_only_epochs);
      fprintf (stderr, "GradSplitter on %s: %d epochs (%d head, %d × [%d mask, %d head]), %d training images "
                       "per epoch of %d, %d validation images, batch %d, α %g (×%g per round), lr θ %g, θ0 %g, "
                       "loss over %s, %d head passes\n",
               argv[1], epochs, go.head_epochs, go.rounds, go.mask_epochs, go.head_only_epochs,
               go.train_images ? MIN (go.train_images, n_train) : n_train, n_train,
               go.val_images ? MIN (go.val_images, n_val) : n_val, go.batch, go.alpha, go.alpha_growth, go.lr_mask,
               go.theta_init, go.logit_loss ? "logits" : "scores", go.head_passes);
      set = cleave_grad_split (model, backend, train_ds, train_idx, n_train, val_idx, n_val, &go,
                               cleave_cli_progress_cb, bar, cancel, &cancelled, &error);
    }
  else
    {
      fprintf (stderr, "CNNSplitter on %s: population %d, %d generations, %d parents, %d elites, mutation %g, "
                       "sensitivity threshold %g points, fitness %s (weight %g)\n",
               argv[1], ga.population, ga.generations, ga.parents, ga.elites, ga.mutation, ga.sensitivity_threshold,
               ga.fitness == CLEAVE_GA_FITNESS_KRR ? "krr" : "reference",
               ga.fitness == CLEAVE_GA_FITNESS_KRR ? ga.krr_weight : ga.diff_weight);
      set = cleave_ga_split (model, backend, train_ds, val_idx, n_val, &ga, cleave_cli_progress_cb, bar, cancel,
                             &cancelled, &error);
    }
  cleave_cli_progress_free (bar);
  seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (set == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  g_free (set->source_path);
  set->source_path = g_strdup (argv[1]);
  if (set->dataset == NULL)
    set->dataset = g_strdup (argv[2]);

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
    fprintf (stderr, "interrupted: the best result so far is in %s\n", output);
  print_selected (set->log_json);
  if (report && !cleave_report_write_module_set (set, report, &error))
    return cleave_cli_fail (g_steal_pointer (&error));

  if (!cancelled && test_ds)
    {
      /* Test metrics go to a copy of the numbers: the file keeps the validation ones. */
      g_autoptr(CleaveMetrics) src = NULL;
      double val_composed = set->composed_accuracy;
      g_autofree int *all = g_new (int, test_ds->n);
      val_f1 = g_new (double, set->modules->len);
      for (guint k = 0; k < set->modules->len; k++)
        val_f1[k] = ((CleaveModule *) set->modules->pdata[k])->val_f1;
      for (int i = 0; i < test_ds->n; i++)
        all[i] = i;
      fprintf (stderr, "evaluating on the test split (%d images)…\n", test_ds->n);
      src = cleave_model_evaluate (model, backend, test_ds, NULL, NULL, cancel, &error);
      if (src == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
      source_test = src->accuracy;
      if (!cleave_module_set_evaluate (set, backend, test_ds, all, test_ds->n, NULL, cancel, &error))
        return cleave_cli_fail (g_steal_pointer (&error));
      composed_test = set->composed_accuracy;
      set->composed_accuracy = val_composed;
    }
  print_table (set, val_f1, source_test, composed_test, seconds, log_images (set->log_json));
  printf ("wrote %s%s%s\n", output, report ? " and the report in " : "", report ? report : "");
  return cancelled ? 130 : 0;
}
