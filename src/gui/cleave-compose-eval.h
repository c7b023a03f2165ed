/* cleave-compose-eval.h: the Compose page's evaluations on a worker
 * thread: a composition against its source models, a patched model against
 * its weak model, or one model alone (the weak model, as soon as it is
 * opened, for its per-class scores). All on the test split of a dataset. */
#pragma once

#include <gio/gio.h>
#include "cleave-compose.h"
#include "cleave-metrics.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_COMPOSE_EVAL_COMPOSITION,
  CLEAVE_COMPOSE_EVAL_PATCHED,
  CLEAVE_COMPOSE_EVAL_MODEL,
} CleaveComposeEvalKind;

typedef struct {
  CleaveComposeEvalKind kind;
  /* inputs, owned; the one of @kind is set (PATCHED: @patched and @weak) */
  CleaveComposition *composition;
  CleavePatched *patched;
  CleaveModel *weak;
  char *dataset;
  char *device;                     /* "auto" or a device id */
  /* results */
  char **class_names;               /* of the result, n_classes */
  int n_classes;
  CleaveMetrics *after;             /* the composition, patched model or model */
  CleaveMetrics *before;            /* PATCHED: the weak model */
  double *before_prf;               /* COMPOSITION, PATCHED: n_classes × 3, NAN where unknown */
  char *before_text;                /* COMPOSITION: the source models' accuracies */
} CleaveComposeEval;

CleaveComposeEval *cleave_compose_eval_new  (CleaveComposeEvalKind kind, const char *dataset, const char *device);
void               cleave_compose_eval_free (CleaveComposeEval *job);

/* Runs @job (taken) on a worker thread. */
void               cleave_compose_eval_run_async (CleaveComposeEval *job, gpointer source_object,
                                                  GCancellable *cancellable, GAsyncReadyCallback callback,
                                                  gpointer user_data);
/* The finished job, owned by @result; NULL with @error. (transfer none) */
CleaveComposeEval *cleave_compose_eval_finish    (GAsyncResult *result, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveComposeEval, cleave_compose_eval_free)

G_END_DECLS
