/* cmd-train.c: `cleave-cli train` — the reference recipe (docs/ALGORITHMS.md) by default. */
#include "cli-common.h"
#include "cleave-train.h"
#include "cleave-file.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <glib/gstdio.h>

/* The progress bar, and what is being trained once the data is loaded. */
typedef struct {
  CleaveCliProgress *bar;
  const char *label;
  const CleaveTrainRequest *req;
  const CleaveTrainJobResult *res;
  gboolean described;
} Show;

static void
show_progress (const CleaveProgress *p, gpointer data)
{
  Show *show = data;

  if (p->phase == CLEAVE_PHASE_LOAD || p->phase == CLEAVE_PHASE_TEST)
    return;
  if (!show->described)
    {
      g_autofree char *ds = cleave_dataset_spec_label (&show->req->dataset);
      fprintf (stderr, "device: %s\n", show->res->device_name);
      if (show->res->start_epoch > 0)
        fprintf (stderr, "resuming after epoch %d\n", show->res->start_epoch);
      fprintf (stderr, "training %s on %s: %d train / %d validation images, %d epochs, batch %d%s\n",
               show->req->resume ? "the resumed model" : show->label, ds, show->res->n_train, show->res->n_val,
               show->req->train.epochs, MIN (show->req->train.batch, show->res->n_train),
               show->req->train.batch > show->res->n_train ? " (all the training images)" : "");
      show->described = TRUE;
    }
  cleave_cli_progress_cb (p, show->bar);
}

int
cleave_cmd_train (int argc, char **argv)
{
  g_autofree char *arch = NULL, *dataset = NULL;   /* defaults set after parsing: GOption does not free them */
  g_autofree char *output = NULL, *device = NULL, *resume = NULL, *classes = NULL, *arch_file = NULL;
  g_auto(GStrv) mix = NULL;
  int epochs = 30, batch = 128, seed = 0, max_train = 0, min_per_class = 100;
  double lr = 0.01, val = CLEAVE_VAL_FRACTION_DEFAULT, dirichlet = -1;   /* -1: no --dirichlet */
  gboolean no_augment = FALSE;
  GOptionEntry entries[] = {
    { "arch", 'a', 0, G_OPTION_ARG_STRING, &arch, "Architecture preset: simcnn, rescnn, incecnn, weak, bench with :w=WIDTH (default simcnn:w=0.125)", "SPEC" },
    { "arch-file", 0, 0, G_OPTION_ARG_FILENAME, &arch_file, "Custom architecture JSON file (docs/ARCHITECTURE-JSON.md)", "FILE" },
    { "dataset", 'd', 0, G_OPTION_ARG_STRING, &dataset, "fashion-mnist, mnist, cifar10 or a path (default fashion-mnist)", "SPEC" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Model file to write (required)", "FILE" },
    { "epochs", 'e', 0, G_OPTION_ARG_INT, &epochs, "Epochs (default 30)", "N" },
    { "batch", 'b', 0, G_OPTION_ARG_INT, &batch, "Batch size (default 128)", "N" },
    { "lr", 0, 0, G_OPTION_ARG_DOUBLE, &lr, "SGD learning rate (default 0.01; ×0.1 at 30% and 60%)", "LR" },
    { "seed", 0, 0, G_OPTION_ARG_INT, &seed, "Seed for the split, init and shuffling (default 0)", "N" },
    { "val", 0, 0, G_OPTION_ARG_DOUBLE, &val, "Validation fraction of the training split (default " G_STRINGIFY (CLEAVE_VAL_FRACTION_DEFAULT) ")", "F" },
    { "max-train", 0, 0, G_OPTION_ARG_INT, &max_train, "Use at most N training images (0 = all)", "N" },
    { "mix", 0, 0, G_OPTION_ARG_STRING_ARRAY, &mix, "A new task mixing datasets: repeat --mix DATASET:0,3 (classes relabelled in order; replaces --dataset)", "SPEC" },
    { "classes", 0, 0, G_OPTION_ARG_STRING, &classes, "Train on these classes only, relabelled 0..k-1 (e.g. 0,3,5)", "LIST" },
    { "dirichlet", 0, 0, G_OPTION_ARG_DOUBLE, &dirichlet, "Class-skewed training subset, Dirichlet(ALPHA) proportions (weak models)", "ALPHA" },
    { "min-per-class", 0, 0, G_OPTION_ARG_INT, &min_per_class, "With --dirichlet: at least N images per class (default 100)", "N" },
    { "no-augment", 0, 0, G_OPTION_ARG_NONE, &no_augment, "No random crop / flip", NULL },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { "resume", 0, 0, G_OPTION_ARG_FILENAME, &resume, "Resume from a checkpoint of an earlier run, or fine-tune any model file (Cleave or ONNX)", "FILE" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("— train a CNN on a dataset");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) resumed = NULL;
  g_auto(CleaveTrainJobResult) res = { 0 };
  g_autofree int *class_list = NULL;
  g_autofree char *cmdline = cleave_cli_command_line (argc, argv);
  g_autofree char *ckpt = NULL, *arch_json = NULL;
  const char *single[2] = { NULL, NULL };
  CleaveTrainRequest req;
  Show show = { 0 };
  g_autoptr(CleaveCliOutput) claim = NULL;
  GCancellable *cancel = cleave_cli_cancellable ();
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (arch == NULL)
    arch = g_strdup ("simcnn:w=0.125");
  if (dataset == NULL)
    dataset = g_strdup ("fashion-mnist");
  if (output == NULL)
    {
      fprintf (stderr, "cleave-cli train: --output FILE is required\n");
      return 2;
    }
  if (epochs < 1 || batch < 1)
    {
      fprintf (stderr, "cleave-cli train: --%s must be at least 1 (got %d)\n", epochs < 1 ? "epochs" : "batch",
               epochs < 1 ? epochs : batch);
      return 2;
    }
  cleave_train_request_init (&req);
  if (classes && !(class_list = cleave_parse_index_list (classes, &req.n_classes, &error)))
    return cleave_cli_fail (g_steal_pointer (&error));
  req.train.epochs = epochs;
  req.train.batch = batch;
  req.train.lr = (float) lr;
  req.train.seed = (guint64) seed;
  if (!cleave_train_options_validate (&req.train, &error) || !cleave_dataset_validate_split (val, &error) ||
      !cleave_dataset_validate_subset (dirichlet == -1 ? 1 : dirichlet, min_per_class, max_train, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  {
    const char *inputs[3] = { resume, arch_file, dataset };
    if ((claim = cleave_cli_output_claim (output, inputs, 3, &error)) == NULL)
      return cleave_cli_fail (g_steal_pointer (&error));
  }
  if (arch_file && !g_file_get_contents (arch_file, &arch_json, NULL, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  /* a Cleave model or an ONNX file */
  if (resume && (resumed = cleave_cli_load_model (resume, NULL, NULL, 0, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  single[0] = dataset;
  req.arch = arch;
  req.arch_json = arch_json;
  req.resume = resumed;
  req.dataset.parts = mix ? (const char *const *) mix : single;
  req.dataset.data_dirs = cleave_cli_data_dirs ();
  req.classes = class_list;
  req.device.device = device ? device : cleave_cli_default_device ();
  req.device.config = cleave_cli_backend_config ();
  req.val_fraction = val;
  req.seed = (guint64) seed;
  req.max_train = max_train;
  req.dirichlet = dirichlet == -1 ? 0 : dirichlet;   /* validated above: > 0 when given */
  req.min_per_class = min_per_class;
  req.train.epochs = epochs;
  req.train.batch = batch;
  req.train.lr = (float) lr;
  req.train.use_augment = !no_augment;
  ckpt = g_strconcat (output, ".ckpt", NULL);
  req.train.checkpoint = ckpt;
  cleave_file_remove_stale_temps (ckpt);   /* the output's lock covers its checkpoint too */
  show.label = arch_file ? arch_file : arch;
  show.req = &req;
  show.res = &res;
  show.bar = cleave_cli_progress_new ("train");
  fprintf (stderr, "loading %s…\n", mix ? "the mix" : dataset);
  ok = cleave_job_train (&req, show_progress, &show, cancel, &res, &error);
  cleave_cli_progress_free (show.bar);
  if (!ok && res.cancelled)
    {
      fprintf (stderr, "interrupted: the best checkpoint so far (epoch %d, validation %.2f%%) is in %s\n",
               res.train.best_epoch, 100 * res.train.best_val_accuracy, res.train.best_epoch ? ckpt : "(none)");
      return 130;
    }
  if (!ok)
    return cleave_cli_fail (g_steal_pointer (&error));
  cleave_model_set_provenance (res.model, "command", cmdline);
  if (!cleave_model_save (res.model, output, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  g_unlink (ckpt);
  printf ("best epoch %d: validation accuracy %.2f%%; test accuracy %.2f%% (%d images)\n",
          res.train.best_epoch, 100 * res.train.best_val_accuracy, 100 * res.test->accuracy, res.test->total);
  printf ("wall time %.1f s, training %.0f images/s; wrote %s\n", res.train.seconds, res.train.images_per_s, output);
  return 0;
}
