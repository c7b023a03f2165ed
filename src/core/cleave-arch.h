/* cleave-arch.h: architecture presets (docs/ALGORITHMS.md, Architectures).
 *
 * Spec strings: "simcnn", "rescnn", "incecnn", "weak" (4 small conv layers),
 * "bench" (the benchmark CNN), with options after ':' separated by ',':
 * "w=0.125" width multiplier, e.g. "simcnn:w=0.25". Parameter names follow
 * the reference implementations' PyTorch classes so their state_dicts load.
 * With 28×28 inputs SimCNN drops its last pool (docs/ALGORITHMS.md). */
#pragma once

#include "cleave-graph.h"

G_BEGIN_DECLS

CleaveGraph *cleave_arch_build (const char *spec, int in_c, int in_h, int in_w, int n_classes, GError **error);
/* NULL-terminated list of preset names. */
const char *const *cleave_arch_presets (void);

G_END_DECLS
