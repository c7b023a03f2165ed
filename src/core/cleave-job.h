/* cleave-job.h: the jobs the command line and the app run — split and
 * evaluate — from a request that names everything they need: the model, the
 * dataset, the device, the validation fraction and the method's options.
 *
 * A job loads its data, opens its device, runs, reports progress
 * (CleaveProgress, typed phases) and checks a GCancellable. Cancellation
 * follows the core's one convention: the call returns FALSE with
 * G_IO_ERROR_CANCELLED, and the result object says what was kept.
 *
 * Requests hold borrowed pointers: what they point to must outlive the call.
 * Jobs run synchronously on the calling thread (the app calls them from a
 * worker thread). */
#pragma once

#include "cleave-split.h"
#include "cleave-compose.h"
#include "cleave-device.h"
#include "cleave-train.h"

G_BEGIN_DECLS

/* The validation share of a training split, for training and splitting
 * alike (the same seed and fraction give the same images). */
#define CLEAVE_VAL_FRACTION_DEFAULT 0.2

/* A dataset, or a mix of several: each part is "DATASET" or "DATASET:0,3"
 * (only those classes, relabelled in that order); parts are concatenated,
 * so the classes follow the parts' order. */
typedef struct {
  const char *const *parts;      /* NULL-terminated, at least one */
  const char *const *data_dirs;  /* where named datasets are looked up; NULL: cleave_dataset_default_dirs() */
  int max_images;                /* evaluate: a seeded stratified sample of at most this many; 0 = all */
} CleaveDatasetSpec;

typedef struct {
  const char *device;                 /* as cleave_device_open(); NULL or "auto": the default rule */
  const CleaveBackendConfig *config;  /* NULL: defaults */
} CleaveDeviceSpec;

/**
 * cleave_parse_path_list:
 * @arg: "PATH" or "PATH:0,3" (a dataset part, or a module set with some of its modules)
 * @path: (out) (transfer full): the path
 * @list: (out) (transfer full) (nullable) (array length=n): the indices after the last colon; %NULL
 *   without a list (or when the part after the last colon holds a '/')
 * @n: (out): their number (0 without a list)
 * @error: a #GError naming @arg when the list is malformed
 *
 * Returns: %TRUE when @arg was read
 */
gboolean cleave_parse_path_list (const char *arg, char **path, int **list, int *n, GError **error);
/**
 * cleave_parse_index_list:
 * @text: "0,3,5", "0-4" or a mix of both
 * @n_out: (out): the number of indices
 * @error: a #GError naming @text when it is malformed
 *
 * Returns: (transfer full) (nullable) (array length=n_out): the indices, or %NULL on error
 */
int *cleave_parse_index_list (const char *text, int *n_out, GError **error);

/**
 * cleave_job_load_dataset:
 * @spec: the dataset or mix
 * @split: which split
 * @class_names: (out) (optional) (transfer full) (array zero-terminated=1): the class names, with
 *   "DATASET:" in front when several parts are mixed
 * @cancellable: (nullable): a #GCancellable
 * @error: a #GError naming the dataset
 *
 * Returns: (transfer full) (nullable): the images, or %NULL on error
 */
CleaveDataset *cleave_job_load_dataset (const CleaveDatasetSpec *spec, CleaveSplit split, char ***class_names,
                                        GCancellable *cancellable, GError **error);
/**
 * cleave_dataset_spec_label:
 * @spec: a dataset spec
 *
 * Returns: (transfer full): the spec as one label: "fashion-mnist", "fashion-mnist:0,3 + mnist:7"
 */
char *cleave_dataset_spec_label (const CleaveDatasetSpec *spec);
/**
 * cleave_job_open_device:
 * @spec: the device and its backend configuration
 * @error: a #GError (%CLEAVE_ERROR_NO_DEVICE) listing the devices when none matches
 *
 * Returns: (transfer full) (nullable): the backend
 */
CleaveBackend *cleave_job_open_device (const CleaveDeviceSpec *spec, GError **error);

/* ---- split ---------------------------------------------------------------- */

typedef enum {
  CLEAVE_SPLIT_METHOD_GRAD,   /* GradSplitter */
  CLEAVE_SPLIT_METHOD_GA,     /* CNNSplitter */
} CleaveSplitMethod;

typedef struct {
  CleaveModel *model;             /* borrowed, not modified */
  CleaveDatasetSpec dataset;      /* one part, with the model's classes */
  CleaveDeviceSpec device;
  double val_fraction;            /* of the training split (CLEAVE_VAL_FRACTION_DEFAULT) */
  guint64 seed;                   /* of the validation split and the search */
  CleaveSplitMethod method;
  CleaveGradSplitOptions grad;    /* used when method is GRAD (its seed is @seed) */
  CleaveGaSplitOptions ga;        /* used when method is GA (its seed is @seed) */
  gboolean test;                  /* then evaluate the source model and the modules on the test split */
} CleaveSplitRequest;

/* Defaults everywhere; model and dataset left to fill in. */
void cleave_split_request_init (CleaveSplitRequest *request);

typedef struct {
  CleaveSplitResult split;        /* the modules (source_path and dataset filled in); cancelled, cancelled_at */
  /* Filled in before the search starts, so a progress callback may read them: */
  int n_train, n_val;             /* images of the training and validation parts */
  char *device_name;
  /* After the search: */
  double seconds;                 /* the search alone */
  double source_test;             /* test accuracy of the source model; NAN unless tested */
  double composed_test;           /* … and of the composed modules */
  double *test_f1;                /* per module, its F1 on the test split; NULL unless tested */
} CleaveSplitJobResult;

void cleave_split_job_result_clear (CleaveSplitJobResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CleaveSplitJobResult, cleave_split_job_result_clear)

/**
 * cleave_job_split:
 * @request: what to split, on what, how
 * @progress: (nullable) (scope call): called on the calling thread as the job runs
 * @user_data: for @progress
 * @cancellable: (nullable): a #GCancellable
 * @result: (out caller-allocates): zeroed; receives the modules and the numbers (clear it with
 *   cleave_split_job_result_clear() in every case)
 * @error: a #GError; %G_IO_ERROR_CANCELLED on cancel, with the modules kept in @result
 *
 * Loads the training split (and the test split when @request->test), splits
 * off the validation images, opens the device and runs the method. The
 * module set keeps its validation numbers; the test numbers are in @result.
 * A cancelled run skips the test evaluation.
 *
 * Returns: %TRUE when the split ran to the end
 */
gboolean cleave_job_split (const CleaveSplitRequest *request, CleaveProgressFunc progress, gpointer user_data,
                           GCancellable *cancellable, CleaveSplitJobResult *result, GError **error);

/* ---- train ---------------------------------------------------------------- */

typedef struct {
  const char *arch;               /* architecture preset ("simcnn:w=0.125"), used when arch_json and resume are NULL */
  const char *arch_json;          /* or an architecture in JSON (docs/ARCHITECTURE-JSON.md) */
  const CleaveModel *resume;      /* or continue training a copy of this model (from its checkpoint epoch, if any) */
  CleaveDatasetSpec dataset;
  const int *classes;             /* keep only these classes, relabelled 0..n-1; NULL: all */
  int n_classes;
  CleaveDeviceSpec device;
  double val_fraction;            /* CLEAVE_VAL_FRACTION_DEFAULT */
  guint64 seed;                   /* of the validation split, the initial weights and the shuffling */
  int max_train;                  /* at most this many training images; 0 = all */
  double dirichlet;               /* > 0: a class-skewed training subset, Dirichlet(dirichlet) proportions */
  int min_per_class;              /* with dirichlet: at least this many images per class */
  CleaveTrainOptions train;       /* epochs, batch, lr, use_augment, checkpoint; the seed is @seed and the
                                   * augmentation (flip, padding) follows the data */
} CleaveTrainRequest;

void cleave_train_request_init (CleaveTrainRequest *request);

typedef struct {
  CleaveModel *model;             /* the trained model (its best validation epoch), "training" provenance set */
  CleaveTrainResult train;        /* history, best epoch; on cancel what was kept */
  CleaveMetrics *test;            /* on the test split; NULL when cancelled */
  gboolean cancelled;
  /* Filled in before training starts (a progress callback may read them): */
  int n_train, n_val;
  int start_epoch;                /* epochs already done (resume) */
  char *device_name;
} CleaveTrainJobResult;

void cleave_train_job_result_clear (CleaveTrainJobResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CleaveTrainJobResult, cleave_train_job_result_clear)

/**
 * cleave_job_train:
 * @request: what to train, on what, how
 * @progress: (nullable) (scope call): called on the calling thread as the job runs
 * @user_data: for @progress
 * @cancellable: (nullable): a #GCancellable
 * @result: (out caller-allocates): zeroed; clear it with cleave_train_job_result_clear()
 * @error: a #GError; %G_IO_ERROR_CANCELLED on cancel
 *
 * Loads the training and test splits, splits off the validation images,
 * builds the model (or copies the one to resume), trains, evaluates on the
 * test split and records the provenance. On cancel, result->cancelled is set
 * and result->model holds the best epoch so far (result->train.best_epoch;
 * the checkpoint file has it too).
 *
 * Returns: %TRUE when training and the test evaluation ran to the end
 */
gboolean cleave_job_train (const CleaveTrainRequest *request, CleaveProgressFunc progress, gpointer user_data,
                           GCancellable *cancellable, CleaveTrainJobResult *result, GError **error);

/* ---- evaluate ------------------------------------------------------------- */

typedef struct {
  CleaveScorer *const *scorers;   /* borrowed: models, compositions or patched models, evaluated in turn */
  int n_scorers;
  CleaveDatasetSpec dataset;      /* with the scorers' classes */
  CleaveSplit split;              /* CLEAVE_SPLIT_TEST by default */
  CleaveDeviceSpec device;
} CleaveEvaluateRequest;

void cleave_evaluate_request_init (CleaveEvaluateRequest *request);

typedef struct {
  CleaveMetrics **metrics;        /* one per scorer; with the loss for a plain model on one whole dataset */
  double *seconds;                /* one per scorer */
  char **class_names;             /* the dataset's */
  int n_images;
  char *device_name;
} CleaveEvaluateResult;

void cleave_evaluate_result_clear (CleaveEvaluateResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CleaveEvaluateResult, cleave_evaluate_result_clear)

/**
 * cleave_job_evaluate:
 * @request: the scorers and the data
 * @progress: (nullable) (scope call): called on the calling thread; the fractions cover all scorers
 * @user_data: for @progress
 * @cancellable: (nullable): a #GCancellable
 * @result: (out caller-allocates): zeroed; clear it with cleave_evaluate_result_clear()
 * @error: a #GError
 *
 * Loads the dataset once and evaluates each scorer on it.
 *
 * Returns: %TRUE when every scorer was evaluated
 */
gboolean cleave_job_evaluate (const CleaveEvaluateRequest *request, CleaveProgressFunc progress, gpointer user_data,
                              GCancellable *cancellable, CleaveEvaluateResult *result, GError **error);

/* ---- compose and patch: before and after ----------------------------------- */

typedef struct {
  CleaveScorer *scorer;           /* borrowed: a composition or a patched model */
  CleaveDatasetSpec dataset;      /* test images of the task's classes: a composed class is found by its name,
                                   * else by its module's class index; a patched model uses the weak model's */
  CleaveDeviceSpec device;
} CleaveReuseRequest;

typedef struct {
  CleaveMetrics *after;           /* the composed or patched model on the task's images */
  int n_classes;                  /* of the task */
  char **class_names;
  double *before_prf;             /* n_classes × (precision, recall, F1) before: each composed class's source
                                   * model on it, or the weak model; NAN where unknown */
  int n_sources;                  /* composition: its module sets; patch: 1 (the weak model) */
  char **source_names;            /* their model files' base names */
  double *source_accuracy;        /* their accuracy on the task's images; NAN when the model is not available */
} CleaveReuseResult;

void cleave_reuse_result_clear (CleaveReuseResult *result);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (CleaveReuseResult, cleave_reuse_result_clear)

/**
 * cleave_job_reuse:
 * @request: the composition or patched model and the data
 * @progress: (nullable) (scope call): called on the calling thread
 * @user_data: for @progress
 * @cancellable: (nullable): a #GCancellable
 * @result: (out caller-allocates): zeroed; clear it with cleave_reuse_result_clear()
 * @error: a #GError
 *
 * Evaluates a composition against its source models, or a patched model
 * against its weak model, on the request's test split.
 *
 * Returns: %TRUE when both sides were evaluated
 */
gboolean cleave_job_reuse (const CleaveReuseRequest *request, CleaveProgressFunc progress, gpointer user_data,
                           GCancellable *cancellable, CleaveReuseResult *result, GError **error);

G_END_DECLS
