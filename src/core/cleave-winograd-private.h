/* cleave-winograd-private.h: Winograd F(4x4, 3x3) forward convolution for
 * the cpu backend (3x3, stride 1, pad 1). The backend owns the threads: it
 * asks for the number of tile blocks and the scratch size per participant,
 * then runs block ranges on its pool. */
#pragma once

#include <glib.h>
#include "cleave-backend.h"

G_BEGIN_DECLS

typedef struct _CleaveWinograd CleaveWinograd;

/* Whether the Winograd path should run this convolution (input
 * [n, ci, h, w], weights [co, ci/groups, kh, kw]). */
gboolean        cleave_winograd_use             (CleaveConvAlgo algo, int ci, int h, int w, int co, int kh,
                                                 int kw, int stride, int pad, int groups);

/* bias may be NULL. Returns NULL only when out of memory. The weights must
 * then be transformed with cleave_winograd_prepare_range over all panels
 * [0, cleave_winograd_n_panels) before running blocks. */
CleaveWinograd *cleave_winograd_new             (int n, int ci, int h, int w, int co, int groups,
                                                 const float *bias);
/* Panels: groups of (up to) 8 output channels within a group. */
gsize           cleave_winograd_n_panels        (const CleaveWinograd *wg);
/* Transforms the weights [co, ci/groups, 3, 3] of panels [lo, hi). */
void            cleave_winograd_prepare_range   (CleaveWinograd *wg, const float *weight, gsize lo, gsize hi);
void            cleave_winograd_free            (CleaveWinograd *wg);
/* Apply max (0, ·) to the outputs (after the bias). */
void            cleave_winograd_set_relu        (CleaveWinograd *wg, gboolean relu);
gsize           cleave_winograd_n_blocks        (const CleaveWinograd *wg);
/* floats of 64-byte aligned scratch one participant needs */
gsize           cleave_winograd_scratch_floats  (const CleaveWinograd *wg);
/* Writes the output of tile blocks [lo, hi): y[n, co, h, w]. */
void            cleave_winograd_forward_blocks  (const CleaveWinograd *wg, const float *x, float *y,
                                                 gsize lo, gsize hi, float *scratch);

/* Weight gradient of a 3x3 stride-1 pad-1 convolution (input x
 * [n, ci, h, w], output gradient dy [n, co, h, w]). The backend runs, for
 * each chunk k of tile blocks: cleave_winograd_grad_set_chunk (k) (returns
 * its block count B), cleave_winograd_grad_transform over blocks [0, B)
 * (scratch per participant), cleave_winograd_grad_products over
 * [0, n_products) with n_cols = B * 32 and accumulate = k > 0; then
 * cleave_winograd_grad_finish over output channels [0, co) writes
 * dw [co, ci/groups, 3, 3]. @chunk_floats bounds the transformed input and
 * output gradient of one chunk (0: 8 Mi floats, 32 MiB). NULL only when out
 * of memory. */
typedef struct _CleaveWinogradGrad CleaveWinogradGrad;
CleaveWinogradGrad *cleave_winograd_grad_new        (int n, int ci, int h, int w, int co, int groups,
                                                     gsize chunk_floats);
void            cleave_winograd_grad_free           (CleaveWinogradGrad *gr);
gsize           cleave_winograd_grad_n_chunks       (const CleaveWinogradGrad *gr);
gsize           cleave_winograd_grad_set_chunk      (CleaveWinogradGrad *gr, gsize chunk);
gsize           cleave_winograd_grad_scratch_floats (const CleaveWinogradGrad *gr);
gsize           cleave_winograd_grad_n_products     (const CleaveWinogradGrad *gr);
void            cleave_winograd_grad_transform      (CleaveWinogradGrad *gr, const float *x, const float *dy,
                                                     gsize lo, gsize hi, float *scratch);
void            cleave_winograd_grad_products       (CleaveWinogradGrad *gr, gsize n_cols, gboolean accumulate,
                                                     gsize lo, gsize hi);
void            cleave_winograd_grad_finish         (const CleaveWinogradGrad *gr, float *dw, gsize lo, gsize hi);

G_END_DECLS
