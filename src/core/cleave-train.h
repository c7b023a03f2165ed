/* cleave-train.h: supervised training (docs/ALGORITHMS.md, Training). */
#pragma once

#include "cleave-metrics.h"

G_BEGIN_DECLS

typedef struct {
  int epochs;                /* default 30 */
  int start_epoch;           /* resume: epochs already done (0) */
  int batch;                 /* 128 */
  float lr;                  /* 0.01 */
  float momentum;            /* 0.9 */
  float weight_decay;        /* 1e-4 */
  float gamma;               /* 0.1, applied at 30% and 60% of the epochs */
  guint64 seed;              /* 0 */
  CleaveAugment augment;     /* crop (pad 4) and flip (not for digits) */
  gboolean use_augment;
  const char *checkpoint;    /* when set, the best-validation model is saved here (atomically) as it improves */
} CleaveTrainOptions;

void cleave_train_options_init (CleaveTrainOptions *opt);
/* FALSE with CLEAVE_ERROR_INVALID_ARGUMENT naming the first bad option. */
gboolean cleave_train_options_validate (const CleaveTrainOptions *opt, GError **error);

typedef struct {
  int epoch;
  double train_loss, train_accuracy, val_loss, val_accuracy, seconds, images_per_s, lr;
} CleaveEpochRecord;

typedef struct {
  int best_epoch;            /* 1-based, 0 when none */
  double best_val_accuracy;
  double seconds;
  double images_per_s;       /* training throughput */
  GArray *history;           /* CleaveEpochRecord */
} CleaveTrainResult;

void cleave_train_result_clear (CleaveTrainResult *r);

/* Trains @model's graph in place with SGD; at the end (or on cancel) the
 * graph holds the best-validation weights. On cancel returns FALSE with
 * G_IO_ERROR_CANCELLED and the result/graph still describe the best epoch. */
gboolean cleave_train (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                       const int *train_idx, int n_train, const int *val_idx, int n_val,
                       const CleaveTrainOptions *opt, CleaveProgressFunc progress, gpointer user_data,
                       GCancellable *cancellable, CleaveTrainResult *result, GError **error);

G_END_DECLS
