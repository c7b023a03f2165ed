/* cleave-report.h: reports on module sets — JSON plus PNG/SVG charts drawn
 * with cleave-chart — shared by `cleave-cli split --report` and
 * `cleave-cli modules --report` (the metrics of docs/ALGORITHMS.md). */
#pragma once

#include "cleave-module.h"

G_BEGIN_DECLS

/* The report as JSON text: the set's source, method, options and log; the
 * source and composed accuracy (validation split) and their loss; per module
 * class, KRR, kept kernels, parameters, FLOPs, accuracy, precision, recall,
 * F1 and score range; KRR per layer and module; the Jaccard overlap matrix;
 * the composition's kernels, parameters and FLOPs. */
char *cleave_report_module_set_json (const CleaveModuleSet *set);

/* Creates @dir if needed and writes report.json and the charts, each as
 * .png and .svg: masks-LAYER (modules × kernels of each conv layer),
 * modules (KRR, accuracy and F1 per module), layer-krr (layers × modules),
 * jaccard (module overlap) and, when the set's log has per-epoch or
 * per-generation entries, accuracy-per-epoch and krr-per-epoch. The files
 * are written into DIR.partial and moved into @dir only when all are there:
 * a failure (a full disk) leaves no new file in @dir and no DIR.partial. */
gboolean cleave_report_write_module_set (const CleaveModuleSet *set, const char *dir, GError **error);

G_END_DECLS
