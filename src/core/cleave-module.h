/* cleave-module.h: per-class modules and module sets (docs/ALGORITHMS.md, Words).
 *
 * A module is a binary scorer for one class: the source CNN with only some
 * kernels kept — physically extracted into a smaller graph — plus an optional
 * head. Its score for an image:
 *   with a head (GradSplitter): sigmoid(W2 relu(W1 relu(logits) + b1) + b2)
 *   without (CNNSplitter):      the extracted network's logit for its class.
 * A module set holds the modules cut from one source model. */
#pragma once

#include "cleave-split-log.h"
#include "cleave-model.h"
#include "cleave-net.h"
#include "cleave-metrics.h"

G_BEGIN_DECLS

#define CLEAVE_HEAD_HIDDEN 10

typedef struct {
  int class_index;            /* the class it recognises, in the source model */
  char *class_name;
  int n_sites;                /* = cleave_graph_n_mask_sites (source) */
  int *n_kept;                /* per site: kept kernels (>= 1) */
  int **kept;                 /* per site: sorted kept kernel indices */
  CleaveGraph *graph;         /* extracted sub-network: same input, N logits out */
  gboolean has_head;
  int n_logits;               /* N */
  float *head_w1;             /* [10, N] */
  float *head_b1;             /* [10] */
  float *head_w2;             /* [1, 10] */
  float head_b2;
  double krr;                 /* kept kernels / all kernels of the source */
  double val_precision, val_recall, val_f1, val_accuracy;  /* threshold 0.5 on the score (heads), argmax for logits */
  float score_min, score_max; /* range of its scores on its class's validation images (patching) */
} CleaveModule;

typedef struct {
  char *method;               /* "grad" or "ga" */
  char *source_path;
  char *source_sha256;
  char *dataset;
  int in_c, in_h, in_w;
  float mean[4], std[4];
  int n_classes;              /* of the source model */
  char **class_names;
  int total_kernels;          /* of the source model */
  double source_accuracy;     /* validation accuracy of the source model */
  double composed_accuracy;   /* validation accuracy of the composition of all modules */
  GPtrArray *modules;         /* CleaveModule*, usually one per class */
  CleaveSplitLog *log;        /* per-epoch / per-generation log, may be NULL */
  char *options_json;         /* the options the split ran with, may be NULL */
  /* The source's mask sites (filled by cleave_module_set_new, stored in the
   * file so kept indices can be validated without the source model). */
  int n_sites;
  int *site_channels;         /* kernels of each site's conv */
  int *site_tie;              /* first site of its tie group */
  char **site_names;          /* conv layer names, NULL-terminated */
} CleaveModuleSet;

void cleave_module_free (CleaveModule *m);
CleaveModuleSet *cleave_module_set_new (const CleaveModel *source, const char *method);
void cleave_module_set_free (CleaveModuleSet *set);

/* Builds a module from keep-flags: keep[s][k] for each mask site s of
 * @source, kernel k. Tied sites must agree (the first of each tie group is
 * used); a site with nothing kept keeps its single most important kernel
 * (@importance may be NULL: then kernel 0). The extracted graph slices conv
 * weights [kept_out][kept_in], biases, BatchNorm parameters and statistics,
 * and the first linear layer's input columns; concat offsets are respected. */
CleaveModule *cleave_module_extract (const CleaveGraph *source, int class_index, const char *class_name,
                                     const guint8 *const *keep, const float *const *importance, GError **error);
/* Whether modules can be extracted from @source once kernels are dropped
 * (a trial extraction with one kernel of every layer dropped), so that a
 * split can refuse before its search rather than after it; the error names
 * the layer (a grouped convolution, a channel shuffle). */
gboolean      cleave_module_check_extractable (const CleaveGraph *source, GError **error);

/* Scores of @module on a host batch (n images, normalised): out[n]. Builds
 * and caches nothing: @net must be a net of module->graph. */
gboolean cleave_module_scores (const CleaveModule *module, CleaveNet *net, const float *x, int n,
                               float *out, GError **error);
/* Applies the head to N logits (host arithmetic). */
float cleave_module_head (const CleaveModule *module, const float *logits);

/* Evaluates every module of @set on the listed images: fills each module's
 * val_* metrics and score range, and the set's composed_accuracy. When
 * @scores_out is not NULL it receives n × n_modules scores. */
gboolean cleave_module_set_evaluate (CleaveModuleSet *set, CleaveBackend *backend, const CleaveDataset *ds,
                                     const int *indices, int n, float **scores_out,
                                     GCancellable *cancellable, GError **error);

/* Files: safetensors; tensors "module.K.<param name>" (extracted weights),
 * "module.K.kept.S" (I32), "module.K.head.{w1,b1,w2,b2}"; __metadata__
 * "cleave.format" = "cleave-modules/1", "cleave.modules" = JSON with the set's
 * fields and per module: class, name, graph (architecture JSON), KRR,
 * metrics, score range. Atomic write; the reader validates everything. */
gboolean         cleave_module_set_save (const CleaveModuleSet *set, const char *path, GError **error);
CleaveModuleSet *cleave_module_set_load (const char *path, GError **error);
/* The same in memory, for files that embed a module set (@file names the
 * source in errors). */
CleaveModuleSet   *cleave_module_set_from_safetensors (const CleaveSafetensors *st, const char *file, GError **error);
CleaveSafetensors *cleave_module_set_to_safetensors   (const CleaveModuleSet *set, GError **error);

/* Jaccard overlap of two modules' kept-kernel sets (over all sites). */
double cleave_module_jaccard (const CleaveModule *a, const CleaveModule *b);
/* Parameters and FLOPs per image of a module (its extracted graph + head). */
guint64 cleave_module_params (const CleaveModule *m);
guint64 cleave_module_flops  (const CleaveModule *m);

/* Kept kernels of a module over all sites. */
int cleave_module_kept_total (const CleaveModule *m);
/* Adds a module to a set, checking that its sites match the set's source
 * (count and kernels per site); takes @module on success. */
gboolean cleave_module_set_add (CleaveModuleSet *set, CleaveModule *module, GError **error);
/* Mean KRR of the set's modules (NAN for an empty set). */
double cleave_module_set_mean_krr (const CleaveModuleSet *set);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveModuleSet, cleave_module_set_free)

G_END_DECLS
