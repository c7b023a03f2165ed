/* cleave-compose.h: reusing modules (docs/ALGORITHMS.md, Reuse).
 *
 * - A composition is a list of modules, one per class of a new task, taken
 *   from one or several module sets (any source models and datasets whose
 *   input shapes agree); it predicts the argmax of the module scores.
 * - A patched model is a weak model whose softmax column for each target
 *   class is replaced by a strong module's score, min–max normalised with
 *   the range stored in the module; it predicts the argmax.
 * - A scorer opens any of these (or a plain model) behind one API, so `eval`,
 *   `info` and the GUI treat them alike.
 *
 * Score calibration: a module with a head gives a sigmoid score in [0, 1],
 * a head-less one its source model's raw logit. Raw scores of modules from
 * different sources, or of both kinds, are not on one scale; min–max
 * normalisation with each module's stored range (its scores on its own
 * class's validation images) maps "typical score on my class" to [0, 1] for
 * every module. CLEAVE_CALIBRATION_AUTO uses raw scores when every module has
 * a head and all come from one module set, and min–max otherwise (a module
 * without a stored range then keeps its raw score).
 *
 * Shared execution: a module's activation at a conv layer depends on which
 * kernels it kept in every earlier layer, so the union of two modules' kept
 * kernels cannot be run once and split afterwards exactly — after the first
 * differing layer each module needs its own arithmetic. What is exact: all
 * modules share the first conv layer (it reads the image), and modules whose
 * kept sets agree up to a layer share everything before it. The executor
 * runs modules with identical kept kernels at every layer once (their heads
 * differ); cleave_composition_flops() reports the FLOPs of running modules
 * one by one, of that executor, and the exact lower bound of layer-prefix
 * sharing. */
#pragma once

#include "cleave-module.h"
#include "cleave-metrics.h"

G_BEGIN_DECLS

#define CLEAVE_COMPOSITION_FORMAT "cleave-composition/1"
#define CLEAVE_PATCHED_FORMAT     "cleave-patched/1"

typedef enum {
  CLEAVE_CALIBRATION_AUTO,
  CLEAVE_CALIBRATION_RAW,
  CLEAVE_CALIBRATION_MINMAX,
} CleaveCalibration;

const char *cleave_calibration_to_string (CleaveCalibration c);
/* -1 when unknown */
int         cleave_calibration_from_string (const char *s);

typedef struct {
  int source;                 /* index into sources */
  int module;                 /* index into that source's modules */
  char *class_name;           /* the class in the new task */
} CleaveComposedClass;

typedef struct {
  GPtrArray *sources;         /* CleaveModuleSet*: copies holding only the modules used */
  GArray *classes;            /* CleaveComposedClass, one per class of the new task */
  CleaveCalibration calibration;
  gboolean shared;            /* run modules with identical kept kernels once (exact) */
  int in_c, in_h, in_w;
  GHashTable *origin;         /* original set pointer → source index while building */
} CleaveComposition;

CleaveComposition *cleave_composition_new  (void);
void               cleave_composition_free (CleaveComposition *c);
/* Appends a class served by @set's module @module_index (a copy is kept).
 * @class_name NULL: the module's own class name. Fails when input shapes disagree. */
gboolean cleave_composition_add (CleaveComposition *c, const CleaveModuleSet *set, int module_index,
                                 const char *class_name, GError **error);
int                cleave_composition_n_classes (const CleaveComposition *c);
const CleaveModule *cleave_composition_module   (const CleaveComposition *c, int k);
/* Whether min–max calibration is in effect (AUTO resolved). */
gboolean cleave_composition_uses_minmax (const CleaveComposition *c);
/* Applies the composition's calibration to class k's raw module score. */
float    cleave_composition_calibrate   (const CleaveComposition *c, int k, float raw);

/* Best-of-many: for each class of the task (0..n_classes-1 of the sets'
 * source models, which must agree in class count and input shape), the
 * module with the best validation F1 among @sets. */
CleaveComposition *cleave_composition_best_of (CleaveModuleSet **sets, int n_sets, int **chosen_set, GError **error);

typedef struct {
  guint64 one_by_one;         /* sum of the modules' FLOPs */
  guint64 executed;           /* what the executor runs (identical modules once) */
  guint64 prefix_shared;      /* exact lower bound: layer-prefix sharing */
} CleaveComposeFlops;

void cleave_composition_flops (const CleaveComposition *c, CleaveComposeFlops *out);

/* Scores n images of @ds (all when @indices is NULL and n = ds->n) into
 * out[n × n_classes], calibrated. Each source normalises with its own mean/std. */
gboolean cleave_composition_scores (CleaveComposition *c, CleaveBackend *backend, const CleaveDataset *ds,
                                    const int *indices, int n, float *out, GCancellable *cancellable,
                                    GError **error);

gboolean           cleave_composition_save (const CleaveComposition *c, const char *path, GError **error);
CleaveComposition *cleave_composition_load (const char *path, GError **error);

/* ---- patched models ---- */

typedef struct {
  CleaveModel *weak;
  CleaveComposition *modules; /* one entry per patch; class_name = the weak model's class name */
  int *target;                /* per patch: the weak model's class it replaces */
} CleavePatched;

CleavePatched *cleave_patched_new  (CleaveModel *weak /* taken */);
void           cleave_patched_free (CleavePatched *p);
/* Patches @target_class with @set's module for that class (found by class
 * index); fails when the module has no stored score range or shapes differ. */
gboolean cleave_patched_add (CleavePatched *p, const CleaveModuleSet *set, int module_index, int target_class,
                             GError **error);
/* The patch arithmetic on one image: @softmax (weak model's probabilities,
 * n_classes) is overwritten at each target by (score − min) / (max − min). */
void     cleave_patched_combine (const CleavePatched *p, float *softmax, const float *module_scores);
gboolean cleave_patched_scores (CleavePatched *p, CleaveBackend *backend, const CleaveDataset *ds,
                                const int *indices, int n, float *out, GCancellable *cancellable, GError **error);
gboolean       cleave_patched_save (const CleavePatched *p, const char *path, GError **error);
CleavePatched *cleave_patched_load (const char *path, GError **error);

/* ---- scorer: model, composition or patched model behind one API ---- */

typedef enum {
  CLEAVE_SCORER_MODEL,
  CLEAVE_SCORER_COMPOSITION,
  CLEAVE_SCORER_PATCHED,
} CleaveScorerKind;

typedef struct _CleaveScorer CleaveScorer;

/* Opens a Cleave model, an ONNX model (*.onnx), a composition or a patched
 * model, by the file's "cleave.format". */
CleaveScorer *cleave_scorer_load            (const char *path, GError **error);
CleaveScorer *cleave_scorer_new_model       (CleaveModel *model /* taken */);
CleaveScorer *cleave_scorer_new_composition (CleaveComposition *c /* taken */);
CleaveScorer *cleave_scorer_new_patched     (CleavePatched *p /* taken */);
void          cleave_scorer_free            (CleaveScorer *s);

CleaveScorerKind     cleave_scorer_kind        (const CleaveScorer *s);
const char          *cleave_scorer_kind_name   (const CleaveScorer *s);   /* "model", "composition", "patched" */
int                  cleave_scorer_n_classes   (const CleaveScorer *s);
const char *const   *cleave_scorer_class_names (const CleaveScorer *s);
void                 cleave_scorer_input_shape (const CleaveScorer *s, int *c, int *h, int *w);
guint64              cleave_scorer_flops       (const CleaveScorer *s);
CleaveModel         *cleave_scorer_model       (CleaveScorer *s);   /* NULL unless a model */
CleaveComposition   *cleave_scorer_composition (CleaveScorer *s);   /* NULL unless a composition */
CleavePatched       *cleave_scorer_patched     (CleaveScorer *s);   /* NULL unless patched */

/* out[n × n_classes]: logits (model), calibrated scores (composition),
 * patched probabilities (patched). */
gboolean cleave_scorer_scores (CleaveScorer *s, CleaveBackend *backend, const CleaveDataset *ds,
                               const int *indices, int n, float *out, GCancellable *cancellable, GError **error);
/* Argmax metrics over the listed images (all when @indices is NULL); the
 * dataset's classes must be the scorer's classes. @scores_out as above. */
CleaveMetrics *cleave_scorer_evaluate (CleaveScorer *s, CleaveBackend *backend, const CleaveDataset *ds,
                                       const int *indices, int n, float **scores_out,
                                       CleaveProgressFunc progress, gpointer user_data,
                                       GCancellable *cancellable, GError **error);

/* ---- ONNX export (opset 13) ---- */

/* One output per module ("score_K", [N,1]). */
gboolean cleave_export_module_set_onnx  (const CleaveModuleSet *set, const char *path, GError **error);
/* Outputs "scores" [N,K] (calibrated) and "class" (ArgMax, INT64 [N]). */
gboolean cleave_export_composition_onnx (const CleaveComposition *c, const char *path, GError **error);
/* Outputs "scores" [N,C] (patched probabilities) and "class". */
gboolean cleave_export_patched_onnx     (const CleavePatched *p, const char *path, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveComposition, cleave_composition_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleavePatched, cleave_patched_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveScorer, cleave_scorer_free)

G_END_DECLS
