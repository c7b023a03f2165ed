/* cleave-gradsplitter-private.h: the GradSplitter search state, one step at a
 * time. cleave_grad_split() drives it; tests call it directly to compare one
 * step against the PyTorch re-implementation (tests/reference/gradsplitter_step.py).
 *
 * Layouts (N = number of modules = classes of the source model):
 *   θ of a tie group:  [N, channels]  (one per tie group, reached through any of its sites)
 *   head w1:           [N, 10, N]     b1: [N, 10]     w2: [N, 10]     b2: [N]
 * The mask of module g is m = [θ > 0], except that a layer with no positive θ
 * keeps its single highest-θ kernel. */
#pragma once

#include "cleave-split.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_GRAD_PHASE_HEADS,   /* heads train, masks frozen: no backward through the network */
  CLEAVE_GRAD_PHASE_JOINT,   /* masks and heads train */
} CleaveGradPhase;

typedef struct _CleaveGradSearch CleaveGradSearch;

/* Copies @source (frozen: no weight gradients, BN on running statistics) and
 * sets up N = outputs of @source modules with θ = @theta_init everywhere and
 * heads initialised like PyTorch's nn.Linear (seeded). */
CleaveGradSearch *cleave_grad_search_new  (const CleaveGraph *source, CleaveBackend *backend, float theta_init,
                                           guint64 seed, GError **error);
void              cleave_grad_search_free (CleaveGradSearch *s);

int    cleave_grad_search_n_modules (CleaveGradSearch *s);
/* θ and its last gradient (after clipping) for @site's tie group. Writable;
 * call cleave_grad_search_sync_masks() after editing θ. */
float *cleave_grad_search_theta      (CleaveGradSearch *s, int site);
float *cleave_grad_search_theta_grad (CleaveGradSearch *s, int site);
/* Head parameters (writable) and their last gradients. */
void   cleave_grad_search_heads      (CleaveGradSearch *s, float **w1, float **b1, float **w2, float **b2);
void   cleave_grad_search_head_grads (CleaveGradSearch *s, float **w1, float **b1, float **w2, float **b2);
gboolean cleave_grad_search_sync_masks (CleaveGradSearch *s, GError **error);

/* Options of the search (CleaveGradSplitOptions.row_adam, .logit_loss). */
void     cleave_grad_search_set_row_adam   (CleaveGradSearch *s, gboolean on);
void     cleave_grad_search_set_logit_loss (CleaveGradSearch *s, gboolean on);
/* Starts a phase with a fresh Adam (moments and step count reset). */
gboolean cleave_grad_search_begin_phase (CleaveGradSearch *s, CleaveGradPhase phase, float lr_mask, float lr_head,
                                         GError **error);
/* One optimisation step on a batch of @b images (normalised NCHW, labels as
 * floats). Loss = CE over the N module scores + @alpha × mean(mask) (the
 * latter only in a joint phase). @loss and @correct (composed argmax hits)
 * may be NULL. */
gboolean cleave_grad_search_step (CleaveGradSearch *s, const float *x, const float *labels, int b, float alpha,
                                  double *loss, int *correct, GError **error);
/* Module scores of @b images with the current masks and heads: out[b × N]. */
gboolean cleave_grad_search_scores (CleaveGradSearch *s, const float *x, int b, float *out, GError **error);

/* Kept kernels of all modules together (tied sites counted at each site). */
gint64 cleave_grad_search_kept (CleaveGradSearch *s);

G_END_DECLS
