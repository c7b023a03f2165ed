/* cmd-demo.c: `cleave-cli demo` — the README's main job on the shipped demo
 * model: evaluate it, split it with GradSplitter, compose modules into a new
 * task, patch a weak model's weakest class, print every table. It runs the
 * same subcommands a user would type, printing each command first. */
#include "config.h"
#include "cli-common.h"
#include "cleave-error.h"
#include "cleave-paths.h"

#include <glib/gstdio.h>
#include <errno.h>
#include <string.h>

/* A shipped model: from $CLEAVE_MODELS_DIR when set, else from the data
 * folders (cleave-paths.h). */
static char *
find_model (const char *name)
{
  const char *env = g_getenv ("CLEAVE_MODELS_DIR");
  g_autofree char *rel = g_build_filename ("models", name, NULL);

  if (env && *env)
    {
      g_autofree char *p = g_build_filename (env, name, NULL);

      if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&p);
    }
  return cleave_find_data_file (rel);
}

/* Runs `cleave-cli ARGS…` (this executable), output straight to ours. */
static gboolean
run_step (const char *title, const char *const *args, GError **error)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *self = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *shown = NULL;
  int status = 0;

  g_ptr_array_add (argv, self ? self : (char *) "cleave-cli");
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  shown = g_strjoinv (" ", (char **) args);
  printf ("\n━━ %s\n$ cleave-cli %s\n", title, shown);
  fflush (stdout);
  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, NULL, NULL,
                     &status, error))
    return FALSE;
  if (!g_spawn_check_wait_status (status, error))
    {
      g_prefix_error (error, "step '%s' failed: ", title);
      return FALSE;
    }
  return TRUE;
}

/* The weak model's weakest class: lowest F1 on the validation split (seed 0),
 * so the choice never looks at test images. */
static int
weakest_class (const char *weak_path, const char *dataset, char **name, GError **error)
{
  g_autoptr(CleaveModel) weak = cleave_model_load (weak_path, error);
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autoptr(CleaveMetrics) m = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  CleaveNet *net;
  int n_train, n_val, worst = 0;

  if (weak == NULL)
    return -1;
  ds = cleave_cli_load_dataset (dataset, CLEAVE_SPLIT_TRAIN, NULL, error);
  backend = ds ? cleave_cli_open_device (NULL, error) : NULL;
  if (backend == NULL)
    return -1;
  cleave_dataset_split (ds, CLEAVE_VAL_FRACTION_DEFAULT, 0, &train_idx, &n_train, &val_idx, &n_val);
  net = cleave_net_new (weak->graph, backend, error);
  if (net == NULL)
    return -1;
  m = cleave_evaluate (weak, net, ds, val_idx, n_val, 256, NULL, NULL, NULL, NULL, error);
  cleave_net_free (net);
  if (m == NULL)
    return -1;
  for (int c = 1; c < m->n_classes; c++)
    if (m->f1[c] < m->f1[worst])
      worst = c;
  *name = g_strdup (weak->class_names[worst]);
  printf ("weak model %s: validation accuracy %.2f%%; weakest class %d (%s), validation F1 %.4f\n",
          weak_path, 100 * m->accuracy, worst, *name, m->f1[worst]);
  return worst;
}

int
cleave_cmd_demo (int argc, char **argv)
{
  g_autofree char *outdir = NULL, *device = NULL;
  int train_images = 0, rounds = 0;
  GOptionEntry entries[] = {
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &outdir, "Folder for the files the demo writes (default demo-output)", "DIR" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Device (see 'cleave-cli devices')", "DEV" },
    { "train-images", 0, 0, G_OPTION_ARG_INT, &train_images, "GradSplitter training images per epoch (default: split's)", "N" },
    { "rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "GradSplitter rounds (default: split's)", "N" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("— the main job: evaluate, split, compose and patch with the shipped demo model");
  g_autoptr(GError) error = NULL;
  g_autofree char *demo = find_model ("demo.safetensors"), *weak = find_model ("weak.safetensors");
  g_autofree char *modules = NULL, *report = NULL, *composed = NULL, *patched = NULL;
  g_autofree char *weak_name = NULL, *patch_spec = NULL, *ti = NULL, *rn = NULL;
  const char *dataset = "fashion-mnist";
  gint64 t0 = g_get_monotonic_time ();
  int weak_class;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (outdir == NULL)
    outdir = g_strdup ("demo-output");   /* the default, set here: GOption does not free a replaced default */
  if (demo == NULL || weak == NULL)
    {
      g_auto(GStrv) dirs = cleave_data_dirs ();
      g_autofree char *searched = g_strjoinv ("/models, ", dirs);

      g_set_error (&error, CLEAVE_ERROR, CLEAVE_ERROR_IO,
                   "the demo models (demo.safetensors, weak.safetensors) were not found in %s/models "
                   "or $CLEAVE_MODELS_DIR", searched);
      return cleave_cli_fail (g_steal_pointer (&error));
    }
  if (g_mkdir_with_parents (outdir, 0755) != 0)
    {
      g_set_error (&error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "cannot create %s: %s", outdir, g_strerror (errno));
      return cleave_cli_fail (g_steal_pointer (&error));
    }
  modules = g_build_filename (outdir, "demo.modules", NULL);
  report = g_build_filename (outdir, "report", NULL);
  composed = g_build_filename (outdir, "footwear.safetensors", NULL);
  patched = g_build_filename (outdir, "patched.safetensors", NULL);
  ti = g_strdup_printf ("%d", train_images);
  rn = g_strdup_printf ("%d", rounds);
  if (device)
    g_setenv ("CLEAVE_DEVICE", device, TRUE);

  printf ("Cleave demo: %s on Fashion-MNIST; files go to %s/\n", demo, outdir);
  {
    const char *info[] = { "info", demo, NULL };
    const char *eval[] = { "eval", demo, dataset, NULL };
    if (!run_step ("1. The demo model", info, &error) || !run_step ("2. Its accuracy on the test split", eval, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
  }
  {
    g_autoptr(GPtrArray) a = g_ptr_array_new ();
    const char *base[] = { "split", "--method", "grad", demo, dataset, "-o", modules, "--report", report };
    for (gsize i = 0; i < G_N_ELEMENTS (base); i++)
      g_ptr_array_add (a, (char *) base[i]);
    if (train_images > 0)
      {
        g_ptr_array_add (a, "--train-images");
        g_ptr_array_add (a, ti);
      }
    if (rounds > 0)
      {
        g_ptr_array_add (a, "--rounds");
        g_ptr_array_add (a, rn);
      }
    g_ptr_array_add (a, NULL);
    if (!run_step ("3. Split it into one module per class (GradSplitter)", (const char *const *) a->pdata, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
  }
  {
    g_autofree char *spec = g_strconcat (modules, ":5,7,9", NULL);
    const char *mods[] = { "modules", modules, NULL };
    const char *compose[] = { "compose", "-o", composed, spec, NULL };
    const char *eval[] = { "eval", composed, "--mix", "fashion-mnist:5,7,9", NULL };
    if (!run_step ("4. The modules", mods, &error) ||
        !run_step ("5. Compose a footwear classifier from three modules (Sandal, Sneaker, Ankle boot)", compose, &error) ||
        !run_step ("6. Evaluate it on the footwear test images", eval, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
  }
  printf ("\n━━ 7. Find the weak model's weakest class (validation split)\n");
  weak_class = weakest_class (weak, dataset, &weak_name, &error);
  if (weak_class < 0)
    return cleave_cli_fail (g_steal_pointer (&error));
  patch_spec = g_strdup_printf ("%s:%d", modules, weak_class);
  {
    const char *patch[] = { "patch", weak, patch_spec, "-o", patched, NULL };
    const char *cmp[] = { "eval", weak, dataset, "--compare", patched, NULL };
    if (!run_step ("8. Patch it with the demo model's module for that class", patch, &error) ||
        !run_step ("9. Before and after, on the test split", cmp, &error))
      return cleave_cli_fail (g_steal_pointer (&error));
  }
  printf ("\ndemo finished in %.0f s; files in %s/ (report charts in %s/)\n",
          (g_get_monotonic_time () - t0) / 1e6, outdir, report);
  return 0;
}
