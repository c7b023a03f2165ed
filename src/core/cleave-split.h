/* cleave-split.h: the two decomposition methods (docs/ALGORITHMS.md). Both produce a
 * CleaveModuleSet; both run synchronously on the calling thread, report
 * progress and check @cancellable at least once per batch.
 *
 * Cancellation follows the core's one convention (as cleave_train): the call
 * returns FALSE with G_IO_ERROR_CANCELLED, and the result object says what
 * was kept (the best modules so far, and the epoch or generation the run was
 * in when cancelled). */
#pragma once

#include "cleave-module.h"

G_BEGIN_DECLS

typedef struct {
  CleaveModuleSet *set;   /* the modules: complete on success; on cancel the best so far (NULL when none yet) */
  gboolean cancelled;     /* the run was cancelled (the call returned G_IO_ERROR_CANCELLED) */
  int cancelled_at;       /* then: the epoch (GradSplitter) or generation (CNNSplitter) reached, 0 = before the first */
} CleaveSplitResult;

/* Frees the set and zeroes @result. */
void cleave_split_result_clear (CleaveSplitResult *result);

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
  float alpha_growth;     /* α is multiplied by this at each round (1: constant, the reference) */
  float lr_head;          /* Adam lr for head-only phases */
  float lr_mask;          /* Adam lr for θ */
  float lr_head_joint;    /* Adam lr for heads during mask phases */
  float theta_init;       /* initial θ (1.0 in the reference) */
  double max_loss;        /* accuracy loss bound for selection, in points (1.0) */
  gboolean row_adam;      /* θ optimiser: Adam with a per-(module, layer) second moment (FALSE: per-entry, the reference) */
  gboolean logit_loss;    /* CE over the heads' pre-sigmoid outputs instead of the scores (FALSE: the reference) */
  int head_passes;        /* passes over each head-only epoch's images (pass 1 computes the logits, the rest reuse them) */
  gboolean per_module;    /* after the uniform choice, let each module come from its own epoch (TRUE) */
  int refit_images;       /* final joint refit of the chosen modules' heads: training images (0 = none) */
  int refit_passes;       /* … and passes over their cached logits (Adam at lr_head) */
  gboolean holdout;       /* per-module choice made on half the validation images, checked on the other half (TRUE) */
  guint64 seed;
} CleaveGradSplitOptions;

void cleave_grad_split_options_init (CleaveGradSplitOptions *opt);

/* @result must be zeroed (or cleared); see the cancellation convention above. */
gboolean cleave_grad_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                            const int *train_idx, int n_train, const int *val_idx, int n_val,
                            const CleaveGradSplitOptions *opt, CleaveProgressFunc progress,
                            gpointer user_data, GCancellable *cancellable, CleaveSplitResult *result,
                            GError **error);

typedef enum {
  CLEAVE_GA_FITNESS_REFERENCE,   /* composed accuracy + diff_weight × mean (1 − Jaccard) with the other modules */
  CLEAVE_GA_FITNESS_KRR,         /* composed accuracy − krr_weight × KRR */
} CleaveGaFitness;

typedef struct {
  int population, generations, parents, elites;
  double mutation;
  CleaveGaFitness fitness;
  double sensitivity_threshold;  /* accuracy drop (points) above which a layer counts as sensitive */
  double krr_weight;             /* KRR-aware fitness: acc - w × KRR */
  int val_images;                /* validation images for candidate evaluation (0 = all) */
  guint64 seed;
  /* additions (cleave-cnnsplitter.c documents the defaults) */
  double diff_weight;            /* reference fitness: acc + w × dissimilarity */
  double min_confidence;         /* importance: images classified with softmax >= this (0.9) */
  int importance_images;         /* validation images for kernel importance (0 = all) */
  int sensitivity_images;        /* validation images for the sensitivity analysis (0 = val_images) */
  int eval_groups;               /* candidates evaluated together in one forward (grouped masks) */
  int eval_batch;                /* images per forward, all groups together */
} CleaveGaSplitOptions;

void cleave_ga_split_options_init (CleaveGaSplitOptions *opt);

gboolean cleave_ga_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                          const int *val_idx, int n_val, const CleaveGaSplitOptions *opt,
                          CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
                          CleaveSplitResult *result, GError **error);

/* The shared ending of both splitters: turns the internal (set, cancelled)
 * pair into the result convention, @last_epoch being the epoch or
 * generation last reported. Used by cleave_grad_split and cleave_ga_split. */
gboolean cleave_split_finish (CleaveModuleSet *set, gboolean cancelled, int last_epoch, CleaveSplitResult *result,
                              GError **error);

/* Building blocks of cleave_ga_split, public for tests and reports. Keep
 * flags and importances are flat over all kernels of the graph: site s
 * occupies [offset(s), offset(s) + channels) in mask-site order. */

/* Mean absolute post-ReLU activation of every kernel (at its mask site), per
 * class over the listed images of that class that the model classifies as
 * that class with softmax confidence >= @min_confidence; a class with fewer
 * than @min_images such images falls back to all its images (fallback[c] is
 * set TRUE, @fallback may be NULL). Returns n_classes × total_kernels floats. */
float *cleave_ga_kernel_importance (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                                    const int *indices, int n, double min_confidence, int min_images,
                                    gboolean *fallback, double *accuracy, GCancellable *cancellable,
                                    GError **error);

/* One class's grouped encoding: per layer (tie group) the kernels sorted by
 * importance are cut into groups (10 below 256 kernels, else 100, at most one
 * per kernel); one gene per group, group 0 holding the most important kernels. */
typedef struct _CleaveGaEncoding CleaveGaEncoding;

CleaveGaEncoding *cleave_ga_encoding_new     (const CleaveGraph *graph, const float *importance);
void              cleave_ga_encoding_free    (CleaveGaEncoding *enc);
int               cleave_ga_encoding_n_genes  (const CleaveGaEncoding *enc);
int               cleave_ga_encoding_n_layers (const CleaveGaEncoding *enc);
/* Genes [*first, *first + *count) belong to @layer; its sites are those whose tie is root. */
void              cleave_ga_encoding_layer    (const CleaveGaEncoding *enc, int layer, int *first, int *count, int *root);
/* keep: total_kernels flags; tied sites get identical flags. */
void              cleave_ga_encoding_decode   (const CleaveGaEncoding *enc, const guint8 *genes, guint8 *keep);
/* Turns on the most important group of every layer with no gene on; returns how many layers it fixed. */
int               cleave_ga_encoding_repair   (const CleaveGaEncoding *enc, guint8 *genes);

/* Single-point crossover: child = a[0, point) + b[point, n). */
void cleave_ga_crossover (const guint8 *a, const guint8 *b, int n, int point, guint8 *child);
/* Flips each gene with probability @rate; returns the number of flips. */
int  cleave_ga_mutate    (guint8 *genes, int n, double rate, GRand *rng);

G_END_DECLS
