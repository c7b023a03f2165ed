/* cmd-split.c: `cleave-cli split` — decompose a model into per-class modules
 * with GradSplitter (--method grad) or CNNSplitter (--method ga). */
#include "cli-common.h"
#include "cleave-error.h"
#include "cleave-job.h"
#include "cleave-report.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* Training images pushed through the search, summed over the log. */
static gint64
log_images (const char *log_json)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  JsonArray *a;
  gint64 total = 0;

  if (log_json == NULL || !json_parser_load_from_data (p, log_json, -1, NULL) ||
      !JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)))
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
      !JSON_NODE_HOLDS_ARRAY (json_parser_get_root (p)))
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
print_table (const CleaveModuleSet *set, const double *test_f1, double source_test, double composed_test,
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
      printf ("%-8d %-16s %7.2f%% %9.2f%% %7.2f%%\n", m->class_index, m->class_name, 100 * m->krr,
              100 * m->val_f1, test_f1 ? 100 * test_f1[k] : NAN);
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
  g_autofree char *method = g_strdup ("grad"), *output = NULL, *device = NULL, *report = NULL, *fitness = NULL;
  g_autofree char *mask_opt = NULL, *loss_kind = NULL;
  int seed = 0;
  double val = CLEAVE_VAL_FRACTION_DEFAULT;
  CleaveGradSplitOptions go;
  CleaveGaSplitOptions ga;
  double alpha_growth, alpha, lr_head, lr_mask, lr_head_joint, theta_init, max_loss;
  int val_images = -1;
  gboolean no_test = FALSE, uniform = FALSE, no_holdout = FALSE;
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL DATASET — decompose a model into per-class modules");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) model = NULL;
  g_auto(CleaveSplitJobResult) res = { 0 };
  CleaveSplitRequest req;
  CleaveModuleSet *set;
  GCancellable *cancel = cleave_cli_cancellable ();
  Show show = { 0 };
  gboolean cancelled, ok;
  const char *parts[2] = { NULL, NULL };

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
      { "seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed of the validation split and the search (default 0)", "N" },
      { "val", 0, 0, G_OPTION_ARG_DOUBLE, &val, "Validation fraction of the training split (default " G_STRINGIFY (CLEAVE_VAL_FRACTION_DEFAULT) ", as in train)", "F" },
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
  parts[0] = argv[2];

  model = cleave_cli_load_model (argv[1], NULL, NULL, 0, &error);
  if (model == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  cleave_split_request_init (&req);
  req.model = model;
  req.dataset.parts = parts;
  req.dataset.data_dirs = cleave_cli_data_dirs ();
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

  if (!cleave_module_set_save (set, output, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (cancelled)
    fprintf (stderr, "interrupted at %s %d: kept the best result so far\n",
             req.method == CLEAVE_SPLIT_METHOD_GA ? "generation" : "epoch", res.split.cancelled_at);
  print_selected (set->log_json);
  if (report && !cleave_report_write_module_set (set, report, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  print_table (set, res.test_f1, res.source_test, res.composed_test, res.seconds, log_images (set->log_json));
  printf ("wrote %s%s%s\n", output, report ? " and the report in " : "", report ? report : "");
  return cancelled ? 130 : 0;
}
