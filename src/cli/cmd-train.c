/* cmd-train.c: `cleave-cli train` — the reference recipe (METHOD.md) by default. */
#include "cli-common.h"
#include "cleave-arch.h"
#include "cleave-train.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <glib/gstdio.h>

int
cleave_cmd_train (int argc, char **argv)
{
  g_autofree char *arch = g_strdup ("simcnn:w=0.125"), *dataset = g_strdup ("fashion-mnist");
  g_autofree char *output = NULL, *device = NULL, *resume = NULL, *classes = NULL, *arch_file = NULL;
  g_auto(GStrv) mix = NULL;
  int epochs = 30, batch = 128, seed = 0, max_train = 0, min_per_class = 100;
  double lr = 0.01, val = CLEAVE_VAL_FRACTION_DEFAULT, dirichlet = 0;
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
  g_autoptr(CleaveDataset) train_ds = NULL, test_ds = NULL;
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL, *class_list = NULL;
  g_autofree char *cmdline = cleave_cli_command_line (argc, argv);
  g_autofree char *ckpt = NULL;
  int n_train = 0, n_val = 0, n_class_list = 0;
  CleaveTrainOptions opt;
  CleaveTrainResult result = { 0 };
  CleaveCliProgress *bar;
  GCancellable *cancel = cleave_cli_cancellable ();
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
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
  if (classes && !(class_list = cleave_parse_index_list (classes, &n_class_list, &error)))
    return cleave_cli_fail (g_steal_pointer (&error));

  if (mix)
    {
      CleaveDatasetSpec spec = { (const char *const *) mix, cleave_cli_data_dirs (), 0 };
      g_free (dataset);
      dataset = g_strjoinv ("+", mix);
      fprintf (stderr, "loading the mix %s…\n", dataset);
      train_ds = cleave_job_load_dataset (&spec, CLEAVE_SPLIT_TRAIN, NULL, cancel, &error);
      test_ds = train_ds ? cleave_job_load_dataset (&spec, CLEAVE_SPLIT_TEST, NULL, cancel, &error) : NULL;
    }
  else
    {
      fprintf (stderr, "loading %s…\n", dataset);
      train_ds = cleave_cli_load_dataset (dataset, CLEAVE_SPLIT_TRAIN, cancel, &error);
      test_ds = train_ds ? cleave_cli_load_dataset (dataset, CLEAVE_SPLIT_TEST, cancel, &error) : NULL;
    }
  if (test_ds == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (class_list)
    {
      CleaveDataset *a = cleave_dataset_select_classes (train_ds, class_list, n_class_list, &error);
      CleaveDataset *b = a ? cleave_dataset_select_classes (test_ds, class_list, n_class_list, &error) : NULL;
      if (b == NULL)
        {
          cleave_dataset_free (a);
          return cleave_cli_fail (g_steal_pointer (&error));
        }
      cleave_dataset_free (train_ds);
      cleave_dataset_free (test_ds);
      train_ds = a;
      test_ds = b;
    }
  cleave_dataset_split (train_ds, val, (guint64) seed, &train_idx, &n_train, &val_idx, &n_val);
  if (dirichlet > 0)
    {
      int n_sub = 0;
      int *sub = cleave_dataset_dirichlet_subset (train_ds, train_idx, n_train, dirichlet, min_per_class,
                                                  max_train > 0 ? max_train : n_train, (guint64) seed, &n_sub);
      g_free (train_idx);
      train_idx = sub;
      n_train = n_sub;
    }
  else if (max_train > 0 && max_train < n_train)
    {
      GRand *r = g_rand_new_with_seed ((guint32) seed + 99);
      cleave_shuffle_indices (train_idx, n_train, r);
      g_rand_free (r);
      n_train = max_train;
    }

  if (resume)
    {
      model = cleave_cli_load_model (resume, NULL, NULL, 0, &error);   /* a Cleave model or an ONNX file */
      if (model == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
    }
  else
    {
      CleaveGraph *g;
      if (arch_file)
        {
          g_autofree char *text = NULL;
          if (!g_file_get_contents (arch_file, &text, NULL, &error))
            return cleave_cli_fail (g_steal_pointer (&error));
          g = cleave_graph_from_json (text, &error);
        }
      else
        g = cleave_arch_build (arch, train_ds->c, train_ds->h, train_ds->w, train_ds->n_classes, &error);
      if (g == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
      cleave_graph_init_params (g, (guint64) seed);
      model = cleave_model_new (g, train_ds->n_classes, (const char *const *) train_ds->class_names);
      cleave_model_set_norm_from_dataset (model, train_ds, train_idx, n_train);
      model->dataset = g_strdup (dataset);
    }

  backend = cleave_cli_open_device (device, &error);
  if (backend == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));

  cleave_train_options_init (&opt);
  opt.epochs = epochs;
  opt.batch = batch;
  opt.lr = (float) lr;
  opt.seed = (guint64) seed;
  opt.use_augment = !no_augment;
  opt.augment.flip = !train_ds->digits;   /* mirrored digits are other digits; clothes and objects stay what they are */
  opt.augment.pad = train_ds->h >= 32 ? 4 : 2;
  ckpt = g_strconcat (output, ".ckpt", NULL);
  opt.checkpoint = ckpt;
  if (resume && model->provenance_json)
    {
      g_autoptr(JsonParser) p = json_parser_new ();
      if (json_parser_load_from_data (p, model->provenance_json, -1, NULL))
        {
          JsonObject *o = json_node_get_object (json_parser_get_root (p));
          JsonObject *c = json_object_has_member (o, "checkpoint") ? json_object_get_object_member (o, "checkpoint") : NULL;
          if (c)
            opt.start_epoch = (int) json_object_get_int_member_with_default (c, "epoch", 0);
        }
      fprintf (stderr, "resuming after epoch %d\n", opt.start_epoch);
    }

  fprintf (stderr, "training %s on %s: %d train / %d validation images, %d epochs, batch %d\n",
           arch_file ? arch_file : arch, dataset, n_train, n_val, epochs, batch);
  bar = cleave_cli_progress_new ("train");
  ok = cleave_train (model, backend, train_ds, train_idx, n_train, val_idx, n_val, &opt,
                     cleave_cli_progress_cb, bar, cancel, &result, &error);
  cleave_cli_progress_free (bar);
  if (!ok && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      cleave_train_result_clear (&result);
      return cleave_cli_fail (g_steal_pointer (&error));
    }
  if (!ok)
    {
      fprintf (stderr, "interrupted: the best checkpoint so far (epoch %d, validation %.2f%%) is in %s\n",
               result.best_epoch, 100 * result.best_val_accuracy, result.best_epoch ? ckpt : "(none)");
      cleave_train_result_clear (&result);
      return 130;
    }

  {
    g_autoptr(CleaveMetrics) test = NULL;
    g_autofree char *prov = NULL;
    test = cleave_model_evaluate (model, backend, test_ds, NULL, NULL, cancel, &error);
    if (test == NULL)
      {
        cleave_train_result_clear (&result);
        return cleave_cli_fail (g_steal_pointer (&error));
      }
    {
      g_autoptr(JsonBuilder) b = json_builder_new ();
      const struct { const char *key; gint64 v; } ints[] = {
        { "seed", seed }, { "epochs", epochs }, { "best_epoch", result.best_epoch }, { "train_images", n_train },
        { "val_images", n_val },
      };
      const struct { const char *key; double v; } nums[] = {
        { "val_accuracy", result.best_val_accuracy }, { "test_accuracy", test->accuracy },
        { "train_seconds", round (10 * result.seconds) / 10 },
        { "train_images_per_s", round (10 * result.images_per_s) / 10 },
      };
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dataset");
      json_builder_add_string_value (b, dataset ? dataset : "");
      for (gsize i = 0; i < G_N_ELEMENTS (ints); i++)
        {
          json_builder_set_member_name (b, ints[i].key);
          json_builder_add_int_value (b, ints[i].v);
        }
      for (gsize i = 0; i < G_N_ELEMENTS (nums); i++)
        {
          json_builder_set_member_name (b, nums[i].key);
          json_builder_add_double_value (b, nums[i].v);
        }
      json_builder_end_object (b);
      prov = cleave_cli_json_text (b, FALSE);
    }
    cleave_model_set_provenance (model, "checkpoint", NULL);
    cleave_model_set_provenance (model, "training", prov);
    cleave_model_set_provenance (model, "command", cmdline);
    if (!cleave_model_save (model, output, &error))
      {
        cleave_train_result_clear (&result);
        return cleave_cli_fail (g_steal_pointer (&error));
      }
    g_unlink (ckpt);
    printf ("best epoch %d: validation accuracy %.2f%%; test accuracy %.2f%% (%d images)\n",
            result.best_epoch, 100 * result.best_val_accuracy, 100 * test->accuracy, test->total);
    printf ("wall time %.1f s, training %.0f images/s; wrote %s\n", result.seconds, result.images_per_s, output);
  }
  cleave_train_result_clear (&result);
  return 0;
}
