/* cleave-arch.h: architecture presets (docs/ALGORITHMS.md, Architectures).
 *
 * Spec strings: "simcnn", "rescnn", "incecnn", "weak" (4 small conv layers),
 * "bench" (the benchmark CNN), with options after ':' separated by ',':
 * "w=0.125" width multiplier, e.g. "simcnn:w=0.25"; "ref=cnnsplitter" for
 * CNNSplitter's own SimCNN and ResCNN (no BatchNorm; SimCNN with 512 hidden
 * units), "ref=gradsplitter" (the default) for GradSplitter's, e.g.
 * "rescnn:w=0.5,ref=cnnsplitter". Parameter names follow the reference
 * implementations' PyTorch classes so their state_dicts load.
 * With 28×28 inputs SimCNN drops its last pool (docs/ALGORITHMS.md). */
#pragma once

#include "cleave-graph.h"

G_BEGIN_DECLS

CleaveGraph *cleave_arch_build (const char *spec, int in_c, int in_h, int in_w, int n_classes, GError **error);
/* NULL-terminated list of preset names. */
const char *const *cleave_arch_presets (void);

G_END_DECLS
