/* cleave-train.c: the training loop (SGD, step schedule, best-val checkpoint). */
#include "cleave-train.h"
#include "cleave-optim.h"
#include "cleave-ops.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <math.h>
#include <string.h>

void
cleave_train_options_init (CleaveTrainOptions *opt)
{
  memset (opt, 0, sizeof *opt);
  opt->epochs = 30;
  opt->batch = 128;
  opt->lr = 0.01f;
  opt->momentum = 0.9f;
  opt->weight_decay = 1e-4f;
  opt->gamma = 0.1f;
  opt->augment.crop = TRUE;
  opt->augment.pad = 4;
  opt->augment.flip = TRUE;
  opt->use_augment = TRUE;
}

gboolean
cleave_train_options_validate (const CleaveTrainOptions *opt, GError **error)
{
  return cleave_check_option (error, "epochs", opt->epochs, 1, FALSE, 1e6, FALSE) &&
         cleave_check_option (error, "start-epoch", opt->start_epoch, 0, FALSE, opt->epochs, FALSE) &&
         cleave_check_option (error, "batch", opt->batch, 1, FALSE, CLEAVE_MAX_BATCH, FALSE) &&
         cleave_check_option (error, "lr", opt->lr, 0, TRUE, 100, FALSE) &&
         cleave_check_option (error, "momentum", opt->momentum, 0, FALSE, 1, TRUE) &&
         cleave_check_option (error, "weight-decay", opt->weight_decay, 0, FALSE, 1, FALSE) &&
         cleave_check_option (error, "gamma", opt->gamma, 0, TRUE, 1, FALSE);
}

void
cleave_train_result_clear (CleaveTrainResult *r)
{
  if (r->history)
    g_array_unref (r->history);
  memset (r, 0, sizeof *r);
}

typedef struct {
  float **saved;     /* host copies of the best parameters */
  int n;
} Snapshot;

static void
snapshot_take (Snapshot *s, CleaveGraph *g)
{
  if (s->saved == NULL)
    {
      s->n = cleave_graph_n_params (g);
      s->saved = g_new0 (float *, s->n);
    }
  for (int i = 0; i < s->n; i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      g_free (s->saved[i]);
      s->saved[i] = g_memdup2 (p->data, cleave_param_numel (p) * sizeof (float));
    }
}

static void
snapshot_restore (Snapshot *s, CleaveGraph *g)
{
  if (s->saved == NULL)
    return;
  for (int i = 0; i < s->n; i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      memcpy (p->data, s->saved[i], cleave_param_numel (p) * sizeof (float));
    }
}

static void
snapshot_clear (Snapshot *s)
{
  for (int i = 0; i < s->n; i++)
    g_free (s->saved[i]);
  g_free (s->saved);
  s->saved = NULL;
}

gboolean
cleave_train (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
              const int *train_idx, int n_train, const int *val_idx, int n_val,
              const CleaveTrainOptions *opt, CleaveProgressFunc progress, gpointer user_data,
              GCancellable *cancellable, CleaveTrainResult *result, GError **error)
{
  CleaveGraph *g = model->graph;
  int n_out = cleave_graph_n_outputs (g);
  int c, h, w, B = opt->batch;
  gsize img = 0;
  CleaveNet *net = NULL;
  CleaveOptimizer *sgd = NULL;
  CleaveTensor *labels = NULL, *loss = NULL, *dlogits = NULL;
  g_autofree float *x = NULL, *y = NULL, *logits = NULL;
  g_autofree int *order = NULL;
  Snapshot best = { 0 };
  GRand *rng = NULL;
  gboolean ok = FALSE;
  int milestones[2];
  gint64 t0 = g_get_monotonic_time ();
  double train_images = 0, train_seconds = 0;
  const CleaveAugment *aug = opt->use_augment ? &opt->augment : NULL;
  CleaveAugment aug_local;

  memset (result, 0, sizeof *result);
  result->history = g_array_new (FALSE, TRUE, sizeof (CleaveEpochRecord));
  if (!cleave_train_options_validate (opt, error))
    return FALSE;
  cleave_graph_input_shape (g, &c, &h, &w);
  if (ds->c != c || ds->h != h || ds->w != w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset '%s' has %d×%d×%d images, the model expects %d×%d×%d", ds->name, ds->c, ds->h, ds->w, c, h, w);
      return FALSE;
    }
  if (ds->n_classes > n_out || n_train < 1 || B < 1 || opt->epochs < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "cannot train: %s (%d classes, %d outputs, %d training images, batch %d, %d epochs)",
                   ds->n_classes > n_out ? "the dataset has more classes than the model has outputs"
                   : n_train < 1 ? "no training images"
                   : B < 1 ? "the batch size must be at least 1" : "the number of epochs must be at least 1",
                   ds->n_classes, n_out, n_train, B, opt->epochs);
      return FALSE;
    }
  /* A batch beyond the training set would only cost memory. */
  B = MIN (B, n_train);
  if (aug && ds->digits && aug->flip)
    {
      /* Mirrored digits are other digits (or none). */
      aug_local = *aug;
      aug_local.flip = FALSE;
      aug = &aug_local;
    }
  img = (gsize) c * h * w;
  /* At 30% and 60% of the epochs, but never before the first epoch is done
   * nor both at once: with (int) (E · 0.3) alone, runs of 1–3 epochs never
   * trained at the base rate (E = 3 gave 0.001, 0.0001, 0.0001). */
  milestones[0] = MAX (1, (int) (opt->epochs * 0.3));
  milestones[1] = MAX (milestones[0] + 1, (int) (opt->epochs * 0.6));

  cleave_graph_set_trainable (g, TRUE);
  net = cleave_net_new (g, backend, error);
  if (net == NULL)
    goto out;
  cleave_net_set_seed (net, opt->seed * 7919 + 1);
  sgd = cleave_optimizer_new_sgd (opt->lr, opt->momentum, opt->weight_decay);
  if (!cleave_optimizer_add_net (sgd, net, error))
    goto out;
  labels = cleave_tensor_new_1d (backend, B, error);
  loss = labels ? cleave_tensor_new_1d (backend, 1, error) : NULL;
  dlogits = loss ? cleave_tensor_new_2d (backend, B, n_out, error) : NULL;
  if (dlogits == NULL)
    goto out;
  x = g_new (float, B * img);
  y = g_new (float, B);
  logits = g_new (float, (gsize) B * n_out);
  order = g_memdup2 (train_idx, sizeof (int) * n_train);
  rng = g_rand_new_with_seed ((guint32) opt->seed + 17);
  result->best_val_accuracy = -1;

  for (int epoch = opt->start_epoch; epoch < opt->epochs; epoch++)
    {
      CleaveEpochRecord rec = { 0 };
      double loss_sum = 0;
      int correct = 0, seen = 0;
      gint64 e0 = g_get_monotonic_time ();
      float lr = cleave_step_lr (opt->lr, epoch, milestones, 2, opt->gamma);
      CleaveMetrics *vm = NULL;

      cleave_optimizer_set_lr (sgd, lr);
      g_rand_set_seed (rng, (guint32) (opt->seed * 1000003u + epoch));
      cleave_shuffle_indices (order, n_train, rng);
      for (int s = 0; s + B <= n_train || (s < n_train && s == 0); s += B)
        {
          /* Full batches only (a tiny last batch destabilises BN), except when the set is smaller than one batch. */
          int b = MIN (B, n_train - s);
          CleaveTensor *lab = labels, *dl = dlogits;
          float lossv;

          if (g_cancellable_set_error_if_cancelled (cancellable, error))
            goto cancelled;
          cleave_dataset_fill_batch (ds, order + s, b, model->mean, model->std, aug, rng, x, y);
          if (b != B)
            {
              /* Rare path (a set smaller than one batch): tensors of its size. */
              lab = cleave_tensor_new_1d (backend, b, error);
              dl = lab ? cleave_tensor_new_2d (backend, b, n_out, error) : NULL;
              if (dl == NULL)
                {
                  cleave_tensor_free (lab);
                  goto out;
                }
            }
          ok = cleave_net_forward (net, x, b, TRUE, error) &&
               cleave_tensor_upload (lab, y, b, error) &&
               cleave_softmax_ce (cleave_net_output (net), lab, loss, dl, error) &&
               cleave_net_backward (net, dl, error) &&
               cleave_optimizer_step (sgd, error) &&
               cleave_tensor_download (loss, &lossv, 1, error) &&
               cleave_net_download_output (net, logits, error);
          if (b != B)
            {
              cleave_tensor_free (lab);
              cleave_tensor_free (dl);
            }
          if (!ok)
            goto out;
          ok = FALSE;
          if (!isfinite (lossv))
            {
              g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED,
                           "training diverged at epoch %d (loss is %g): lower the learning rate", epoch + 1, lossv);
              goto out;
            }
          loss_sum += lossv * b;
          for (int i = 0; i < b; i++)
            {
              const float *row = logits + (gsize) i * n_out;
              int best_k = 0;
              for (int k = 1; k < n_out; k++)
                if (row[k] > row[best_k])
                  best_k = k;
              correct += best_k == (int) y[i];
            }
          seen += b;
          if (progress)
            {
              CleaveProgress p = { 0 };
              double secs = (g_get_monotonic_time () - e0) / 1e6;
              p.phase = CLEAVE_PHASE_TRAIN;
              p.epoch = epoch + 1;
              p.epochs = opt->epochs;
              p.fraction = (epoch - opt->start_epoch + (double) seen / n_train) / (opt->epochs - opt->start_epoch);
              p.loss = loss_sum / seen;
              p.accuracy = (double) correct / seen;
              p.val_accuracy = result->history->len ? g_array_index (result->history, CleaveEpochRecord, result->history->len - 1).val_accuracy : NAN;
              p.krr = NAN;
              p.images_per_s = secs > 0 ? seen / secs : 0;
              progress (&p, user_data);
            }
        }
      rec.seconds = (g_get_monotonic_time () - e0) / 1e6;
      train_images += seen;
      train_seconds += rec.seconds;
      rec.epoch = epoch + 1;
      rec.lr = lr;
      rec.train_loss = seen ? loss_sum / seen : NAN;
      rec.train_accuracy = seen ? (double) correct / seen : NAN;
      rec.images_per_s = rec.seconds > 0 ? seen / rec.seconds : 0;

      /* Validation on the current weights (running BN statistics). */
      if (n_val > 0)
        {
          vm = cleave_evaluate (model, net, ds, val_idx, n_val, 256, NULL, NULL, NULL, cancellable, error);
          if (vm == NULL)
            {
              if (g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                goto cancelled;
              goto out;
            }
          rec.val_accuracy = vm->accuracy;
          rec.val_loss = vm->loss;
          cleave_metrics_free (vm);
        }
      else
        rec.val_accuracy = rec.train_accuracy, rec.val_loss = rec.train_loss;
      /* The epoch's last steps may have left weights that no longer give a
       * finite loss: stop rather than keep (and save) them. */
      if (!isfinite (rec.val_loss))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED,
                       "training diverged at epoch %d (the validation loss is %g): lower the learning rate",
                       rec.epoch, rec.val_loss);
          goto out;
        }
      g_array_append_val (result->history, rec);

      if (rec.val_accuracy > result->best_val_accuracy)
        {
          g_autofree char *prov = NULL;
          result->best_val_accuracy = rec.val_accuracy;
          result->best_epoch = rec.epoch;
          if (!cleave_net_sync_to_graph (net, error))
            goto out;
          snapshot_take (&best, g);
          if (opt->checkpoint)
            {
              char acc[G_ASCII_DTOSTR_BUF_SIZE];   /* (not %f: the same JSON in every locale) */
              prov = g_strdup_printf ("{\"epoch\": %d, \"epochs\": %d, \"val_accuracy\": %s}", rec.epoch, opt->epochs,
                                      g_ascii_formatd (acc, sizeof acc, "%.6f", rec.val_accuracy));
              cleave_model_set_provenance (model, "checkpoint", prov);
              if (!cleave_model_save (model, opt->checkpoint, error))
                goto out;
            }
        }
      if (progress)
        {
          CleaveProgress p = { 0 };
          p.phase = CLEAVE_PHASE_VALIDATE;
          p.epoch = epoch + 1;
          p.epochs = opt->epochs;
          p.fraction = (double) (epoch + 1 - opt->start_epoch) / (opt->epochs - opt->start_epoch);
          p.loss = rec.train_loss;
          p.accuracy = rec.train_accuracy;
          p.val_accuracy = rec.val_accuracy;
          p.krr = NAN;
          p.images_per_s = rec.images_per_s;
          p.epoch_done = TRUE;
          progress (&p, user_data);
        }
    }
  snapshot_restore (&best, g);
  ok = TRUE;
  goto out;

cancelled:
  /* Keep the best epoch so far: the graph is left consistent. */
  if (best.saved)
    snapshot_restore (&best, g);
  else
    cleave_net_sync_to_graph (net, NULL);
  ok = FALSE;

out:
  result->seconds = (g_get_monotonic_time () - t0) / 1e6;
  result->images_per_s = train_seconds > 0 ? train_images / train_seconds : 0;
  snapshot_clear (&best);
  if (rng)
    g_rand_free (rng);
  cleave_tensor_free (labels);
  cleave_tensor_free (loss);
  cleave_tensor_free (dlogits);
  cleave_optimizer_free (sgd);
  cleave_net_free (net);
  return ok;
}
