/* cleave-compose-results.h: how the Compose page shows an evaluation: a
 * headline ("61.9 % → 75.8 % (+13.9)"), one chart of paired before/after
 * F1 bars per class with signed deltas (patched classes starred), and the
 * confusion matrices side by side. */
#pragma once

#include "cleave-chart-view.h"
#include "cleave-compose-eval.h"

G_BEGIN_DECLS

/* "61.9 % → 75.8 % (+13.9)"; NAN @before gives "75.8 %". */
char *cleave_compose_headline (double before, double after);

/* Fills the three charts from @job; @patched[c] marks the classes a patch
 * replaced (may be NULL). Returns the headline. */
char *cleave_compose_results_show (const CleaveComposeEval *job, const gboolean *patched,
                                   CleaveChartView *compare, CleaveChartView *before_view,
                                   CleaveChartView *after_view);

G_END_DECLS
