/* cleave-split-log.h: what a split did, epoch by epoch (GradSplitter) or
 * generation by generation (CNNSplitter), with the one JSON reader and
 * writer used by the module-set file, the report and the command line.
 * The JSON form is documented in docs/SPLIT-LOG.md. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "cleave-metrics.h"

G_BEGIN_DECLS

/* The joint refit of the chosen modules' heads (GradSplitter). */
typedef struct {
  int images, passes;
  double val_accuracy_before, val_accuracy_after;
  gboolean kept;
} CleaveHeadRefit;

typedef struct {
  int epoch;                  /* GradSplitter: 1-based epoch; CNNSplitter: generation, from 0 */
  CleavePhase phase;          /* CLEAVE_PHASE_HEADS, _MASKS or _GENERATION */
  double train_loss;          /* NAN: not measured (heads/masks epochs only) */
  double train_accuracy;      /* NAN: not measured */
  double val_accuracy;        /* composed accuracy on the validation images; NAN: not measured */
  double mean_krr;            /* mean kernel retention over the modules */
  int kept_kernels;           /* summed over the modules; -1: not recorded */
  double *module_krr;         /* n_modules values, or NULL */
  int n_modules;
  double seconds;             /* since the search started (CNNSplitter) or of this epoch */
  gint64 images;              /* training images through the search this epoch (0: not recorded) */
  double images_per_s;        /* 0: not recorded */
  double best_fitness;        /* CNNSplitter: mean best fitness; NAN otherwise */
  /* The epoch the GradSplitter chose: */
  gboolean selected;
  char *selection;            /* why, in words; NULL */
  int *module_epochs;         /* n_modules: the epoch each module was taken from; NULL */
  double modules_mean_krr;    /* of those modules; NAN */
  double modules_val_accuracy;/* their composed validation accuracy; NAN */
  int holdout_moves_undone;
  gboolean has_refit;
  CleaveHeadRefit refit;
} CleaveSplitLogEntry;

typedef struct {
  GPtrArray *entries;         /* CleaveSplitLogEntry*, in order */
} CleaveSplitLog;

/**
 * cleave_split_log_new:
 *
 * Returns: (transfer full): an empty log
 */
CleaveSplitLog      *cleave_split_log_new    (void);
/**
 * cleave_split_log_free:
 * @log: (nullable) (transfer full): a log
 */
void                 cleave_split_log_free   (CleaveSplitLog *log);
/**
 * cleave_split_log_copy:
 * @log: (nullable): a log
 *
 * Returns: (transfer full) (nullable): a deep copy
 */
CleaveSplitLog      *cleave_split_log_copy   (const CleaveSplitLog *log);
/**
 * cleave_split_log_append:
 * @log: a log
 * @epoch: the epoch or generation
 * @phase: %CLEAVE_PHASE_HEADS, %CLEAVE_PHASE_MASKS or %CLEAVE_PHASE_GENERATION
 *
 * Returns: (transfer none): a new entry at the end, every measurement NAN / not recorded
 */
CleaveSplitLogEntry *cleave_split_log_append (CleaveSplitLog *log, int epoch, CleavePhase phase);
/**
 * cleave_split_log_selected:
 * @log: (nullable): a log
 *
 * Returns: (transfer none) (nullable): the selected entry
 */
const CleaveSplitLogEntry *cleave_split_log_selected (const CleaveSplitLog *log);
/**
 * cleave_split_log_images:
 * @log: (nullable): a log
 *
 * Returns: training images through the search, summed
 */
gint64               cleave_split_log_images (const CleaveSplitLog *log);

/**
 * cleave_split_log_build:
 * @log: a log
 * @b: adds the JSON array (docs/SPLIT-LOG.md) at its position
 */
void                 cleave_split_log_build     (const CleaveSplitLog *log, JsonBuilder *b);
/**
 * cleave_split_log_to_json:
 * @log: a log
 *
 * Returns: (transfer full): the JSON array as text
 */
char                *cleave_split_log_to_json   (const CleaveSplitLog *log);
/**
 * cleave_split_log_from_node:
 * @node: (nullable): the JSON array
 * @error: a #GError (%CLEAVE_ERROR_INVALID_FILE) naming the entry and the field
 *
 * Returns: (transfer full) (nullable): the log, or %NULL on error
 */
CleaveSplitLog      *cleave_split_log_from_node (JsonNode *node, GError **error);
/**
 * cleave_split_log_from_json:
 * @text: the JSON array as text
 * @error: as for cleave_split_log_from_node()
 *
 * Returns: (transfer full) (nullable): the log
 */
CleaveSplitLog      *cleave_split_log_from_json (const char *text, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveSplitLog, cleave_split_log_free)

G_END_DECLS
