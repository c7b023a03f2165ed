/* cleave-metrics.h: classification metrics and model evaluation. */
#pragma once

#include "cleave-model.h"
#include "cleave-net.h"
#include "cleave-backend.h"
#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct {
  int n_classes;
  int total;
  int correct;
  double accuracy;           /* correct / total */
  double loss;               /* mean cross-entropy, NAN when not computed */
  guint *confusion;          /* n_classes × n_classes, [true][pred] */
  double *precision, *recall, *f1;   /* per class */
  double macro_f1;
  int nonfinite;             /* images whose outputs held a NaN or an infinity */
} CleaveMetrics;

CleaveMetrics *cleave_metrics_new   (int n_classes);
void           cleave_metrics_free  (CleaveMetrics *m);
void           cleave_metrics_add   (CleaveMetrics *m, int truth, int predicted);
/* Adds an image by its @n outputs (prediction: the largest), counting
 * outputs that are not finite in m->nonfinite; returns the prediction. */
int            cleave_metrics_add_outputs (CleaveMetrics *m, int truth, const float *outputs, int n);
/* Computes accuracy, precision, recall, F1 from the confusion matrix. */
void           cleave_metrics_finish (CleaveMetrics *m);
/* JSON object text: accuracy, per-class P/R/F1, confusion. */
char          *cleave_metrics_to_json (const CleaveMetrics *m, const char *const *class_names);

/* What a long job is doing. */
typedef enum {
  CLEAVE_PHASE_LOAD,         /* reading the dataset, opening the device */
  CLEAVE_PHASE_TRAIN,        /* training epochs */
  CLEAVE_PHASE_VALIDATE,     /* training: the validation pass of an epoch */
  CLEAVE_PHASE_EVALUATE,     /* a pass over a dataset */
  CLEAVE_PHASE_HEADS,        /* GradSplitter: epochs training the heads only */
  CLEAVE_PHASE_MASKS,        /* GradSplitter: epochs training masks and heads */
  CLEAVE_PHASE_REFIT,        /* GradSplitter: the final joint refit of the heads */
  CLEAVE_PHASE_IMPORTANCE,   /* CNNSplitter: kernel importance */
  CLEAVE_PHASE_SENSITIVITY,  /* CNNSplitter: layer sensitivity */
  CLEAVE_PHASE_GENERATION,   /* CNNSplitter: the genetic search */
  CLEAVE_PHASE_TEST,         /* after a split: the test-split evaluation */
} CleavePhase;

/* "train", "heads", "generation"…: a fixed English word for logs and the
 * command line (the app shows its own, translated, labels). */
const char *cleave_phase_name (CleavePhase phase);

/* Progress reported by long jobs (train, evaluate, split). Called from the
 * worker thread; GUI callers marshal to the main loop themselves. */
typedef struct {
  double fraction;           /* 0..1 over the whole job */
  CleavePhase phase;
  int epoch, epochs;         /* or generation, generations */
  double loss, accuracy;     /* running values of the current phase, NAN if none */
  double val_accuracy;       /* last validation accuracy, NAN if none */
  double krr;                /* mean kernel retention (splitters), NAN if none */
  double images_per_s;
  gboolean epoch_done;       /* TRUE once per finished epoch/generation (a chart point) */
  double fitness;            /* GA: mean best fitness of the generation; 0 or NAN otherwise */
} CleaveProgress;

typedef void (*CleaveProgressFunc) (const CleaveProgress *progress, gpointer user_data);

/* Runs the model over @ds (or the listed @indices when not NULL) in eval mode
 * and returns metrics. @logits_out, when not NULL, receives a newly allocated
 * n × n_outputs array of raw outputs. Checks @cancellable once per batch. */
CleaveMetrics *cleave_evaluate (CleaveModel *model, CleaveNet *net, const CleaveDataset *ds,
                                const int *indices, int n, int batch, float **logits_out,
                                CleaveProgressFunc progress, gpointer user_data,
                                GCancellable *cancellable, GError **error);

/* Convenience: builds a net on @backend for the call. */
CleaveMetrics *cleave_model_evaluate (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                                      CleaveProgressFunc progress, gpointer user_data,
                                      GCancellable *cancellable, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveMetrics, cleave_metrics_free)

G_END_DECLS
