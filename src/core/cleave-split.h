/* cleave-split.h: the two decomposition methods (METHOD.md). Both produce a
 * CleaveModuleSet; both run synchronously on the calling thread, report
 * progress, check @cancellable at least once per batch, and on cancel return
 * the best result so far with *cancelled set to TRUE (not an error). */
#pragma once

#include "cleave-module.h"

G_BEGIN_DECLS

typedef struct {
  /* schedule (reference: 5 head epochs, 20 rounds of 5 mask+head and 2 head epochs) */
  int head_epochs;        /* warm-up epochs training heads only */
  int rounds;
  int mask_epochs;        /* per round: masks + heads */
  int head_only_epochs;   /* per round: heads only */
  int batch;              /* 64 */
  int train_images;       /* training images drawn per epoch (0 = all) */
  int val_images;         /* validation images used for selection (0 = all) */
  float alpha;            /* KRR weight while masks train (0.1) */
  float lr_head;          /* Adam lr for head-only phases */
  float lr_mask;          /* Adam lr for θ */
  float lr_head_joint;    /* Adam lr for heads during mask phases */
  float theta_init;       /* initial θ (1.0 in the reference) */
  double max_loss;        /* accuracy loss bound for selection, in points (1.0) */
  guint64 seed;
} CleaveGradSplitOptions;

void cleave_grad_split_options_init (CleaveGradSplitOptions *opt);

CleaveModuleSet *cleave_grad_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                                    const int *train_idx, int n_train, const int *val_idx, int n_val,
                                    const CleaveGradSplitOptions *opt, CleaveProgressFunc progress,
                                    gpointer user_data, GCancellable *cancellable, gboolean *cancelled,
                                    GError **error);

typedef enum {
  CLEAVE_GA_FITNESS_REFERENCE,   /* composed accuracy and module dissimilarity */
  CLEAVE_GA_FITNESS_KRR,         /* accuracy against kept kernels */
} CleaveGaFitness;

typedef struct {
  int population, generations, parents, elites;
  double mutation;
  CleaveGaFitness fitness;
  double sensitivity_threshold;  /* accuracy drop (points) above which a layer counts as sensitive */
  double krr_weight;             /* KRR-aware fitness: acc - w × KRR */
  int val_images;                /* validation images for candidate evaluation (0 = all) */
  guint64 seed;
} CleaveGaSplitOptions;

void cleave_ga_split_options_init (CleaveGaSplitOptions *opt);

CleaveModuleSet *cleave_ga_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                                  const int *val_idx, int n_val, const CleaveGaSplitOptions *opt,
                                  CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
                                  gboolean *cancelled, GError **error);

G_END_DECLS
