/* cleave-split-page.h: splitter method, options, dataset and device; the
 * split runs on a worker thread with a progress bar, ETA and live charts.
 * The resulting module set (the best so far when cancelled) goes to the
 * window's open module sets. */
#pragma once

#include <adwaita.h>
#include "cleave-model.h"
#include "cleave-split.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_SPLIT_PAGE (cleave_split_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveSplitPage, cleave_split_page, CLEAVE, SPLIT_PAGE, AdwBin)

void cleave_split_page_set_model    (CleaveSplitPage *self, CleaveModel *model);
void cleave_split_page_set_settings (CleaveSplitPage *self, GSettings *settings);

/* The chosen device spec: "auto", "cpu" or an "opencl:P:D" id. */
const char *cleave_split_page_get_device (CleaveSplitPage *self);

/* "grad" (GradSplitter) or "ga" (CNNSplitter). */
void cleave_split_page_set_method       (CleaveSplitPage *self, const char *method);
void cleave_split_page_set_dataset      (CleaveSplitPage *self, const char *spec);
/* Shows @opt in the option rows; fields without a row are kept as given. */
void cleave_split_page_set_grad_options (CleaveSplitPage *self, const CleaveGradSplitOptions *opt);
void cleave_split_page_set_ga_options   (CleaveSplitPage *self, const CleaveGaSplitOptions *opt);

/* Starts a split of the page's model (FALSE when none or one is running).
 * ::finished (gboolean ok, gboolean cancelled) follows on the main loop. */
gboolean cleave_split_page_start      (CleaveSplitPage *self);
void     cleave_split_page_cancel     (CleaveSplitPage *self);
gboolean cleave_split_page_is_running (CleaveSplitPage *self);
/* Chart points received so far in the current or last run. */
guint    cleave_split_page_n_points   (CleaveSplitPage *self);
/* The status line under the progress bar (what the last run did). */
const char *cleave_split_page_get_status (CleaveSplitPage *self);

G_END_DECLS
