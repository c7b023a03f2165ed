/* cleave-ops.h: checked entry points to the backend ops.
 *
 * Each function checks that all tensors live on one backend and that shapes
 * agree (returning CLEAVE_ERROR_INVALID_ARGUMENT with the shapes in the
 * message otherwise), then calls the backend's vtable. Semantics are those
 * documented in cleave-backend.h. */
#pragma once

#include "cleave-backend.h"

G_BEGIN_DECLS

gboolean cleave_conv2d_forward  (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                                 CleaveTensor *y, const CleaveConvParams *p, GError **error);
/* Inference only: conv2d, then eval-mode batchnorm with running statistics,
 * then relu when p->relu, in one pass (the batchnorm folded into the
 * weights). Fails with CLEAVE_ERROR_UNSUPPORTED where the backend lacks it
 * (cleave_conv2d_bn_supported). */
gboolean cleave_conv2d_bn_forward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                                   const CleaveTensor *gamma, const CleaveTensor *beta,
                                   const CleaveTensor *running_mean, const CleaveTensor *running_var, float eps,
                                   CleaveTensor *y, const CleaveConvParams *p, GError **error);
gboolean cleave_conv2d_bn_supported (CleaveBackend *backend);
gboolean cleave_conv2d_backward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *dy,
                                 CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db,
                                 const CleaveConvParams *p, GError **error);
gboolean cleave_batchnorm_forward  (const CleaveTensor *x, const CleaveTensor *gamma, const CleaveTensor *beta,
                                    CleaveTensor *running_mean, CleaveTensor *running_var, CleaveTensor *y,
                                    CleaveTensor *save_mean, CleaveTensor *save_invstd,
                                    gboolean training, float momentum, float eps, GError **error);
gboolean cleave_batchnorm_backward (const CleaveTensor *x, const CleaveTensor *gamma,
                                    const CleaveTensor *save_mean, const CleaveTensor *save_invstd,
                                    const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dgamma,
                                    CleaveTensor *dbeta, gboolean training, GError **error);
gboolean cleave_relu_forward     (const CleaveTensor *x, CleaveTensor *y, GError **error);
gboolean cleave_relu_backward    (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error);
gboolean cleave_sigmoid_forward  (const CleaveTensor *x, CleaveTensor *y, GError **error);
gboolean cleave_sigmoid_backward (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error);
/* y = min (max (alpha·x + beta, lo), hi); backward from the output y. */
gboolean cleave_clamp_forward    (const CleaveTensor *x, CleaveTensor *y, float alpha, float beta, float lo, float hi,
                                  GError **error);
gboolean cleave_clamp_backward   (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, float alpha,
                                  float lo, float hi, GError **error);
/* Row-wise softmax of [N,F]; backward from the output. */
gboolean cleave_softmax_forward  (const CleaveTensor *x, CleaveTensor *y, GError **error);
gboolean cleave_softmax_backward (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error);
/* ShuffleNet's channel shuffle (see the backend's channel_shuffle). */
gboolean cleave_channel_shuffle  (const CleaveTensor *x, CleaveTensor *y, int groups, GError **error);
gboolean cleave_maxpool_forward  (const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error);
gboolean cleave_maxpool_backward (const CleaveTensor *x, const CleaveTensor *dy, CleaveTensor *dx,
                                  const CleavePoolParams *p, GError **error);
gboolean cleave_avgpool_forward  (const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error);
gboolean cleave_avgpool_backward (const CleaveTensor *dy, CleaveTensor *dx, const CleavePoolParams *p, GError **error);
gboolean cleave_global_avgpool_forward  (const CleaveTensor *x, CleaveTensor *y, GError **error);
gboolean cleave_global_avgpool_backward (const CleaveTensor *dy, CleaveTensor *dx, GError **error);
gboolean cleave_linear_forward  (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                                 CleaveTensor *y, GError **error);
gboolean cleave_linear_backward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *dy,
                                 CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db, GError **error);
gboolean cleave_dropout_forward (const CleaveTensor *x, CleaveTensor *y, CleaveTensor *keep,
                                 float p, guint64 seed, GError **error);
gboolean cleave_mul   (const CleaveTensor *a, const CleaveTensor *b, CleaveTensor *y, GError **error);
gboolean cleave_axpby (float alpha, const CleaveTensor *a, float beta, const CleaveTensor *b,
                       CleaveTensor *y, GError **error);
gboolean cleave_channel_copy_in  (const CleaveTensor *src, CleaveTensor *dst, int offset, GError **error);
gboolean cleave_channel_copy_out (const CleaveTensor *src, int offset, CleaveTensor *dst, GError **error);
/* Masks: y [G·B, C, …] = x · m [G, C] by group; x may be y's shape or its
 * first rows, repeated over the batch (as may the chain backward's x). */
gboolean cleave_mask_forward  (const CleaveTensor *x, const CleaveTensor *m, CleaveTensor *y, GError **error);
gboolean cleave_mask_backward (const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                               CleaveTensor *dx, CleaveTensor *dm, GError **error);
/* The backward of an eval-mode batchnorm [→ relu] → mask chain in one pass
 * (see the backend's mask_chain_backward); gamma and invstd ([C]) may both
 * be NULL (no batchnorm). Fails with CLEAVE_ERROR_UNSUPPORTED where the
 * backend lacks it (cleave_mask_chain_backward_supported). */
gboolean cleave_mask_chain_backward (const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                                     gboolean relu, const CleaveTensor *gamma, const CleaveTensor *invstd,
                                     CleaveTensor *dx, CleaveTensor *dm, GError **error);
gboolean cleave_mask_chain_backward_supported (CleaveBackend *backend);
gboolean cleave_softmax_ce (const CleaveTensor *logits, const CleaveTensor *labels,
                            CleaveTensor *loss, CleaveTensor *dlogits, GError **error);
gboolean cleave_sgd_step  (CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *buf,
                           float lr, float momentum, float weight_decay, gboolean first_step, GError **error);
gboolean cleave_adam_step (CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *m, CleaveTensor *v,
                           float lr, float beta1, float beta2, float eps, float weight_decay, int t, GError **error);

/* Output size of a conv/pool along one axis: (in + 2*pad - kernel) / stride + 1 (floor). */
static inline int
cleave_out_size (int in, int kernel, int stride, int pad)
{
  return (in + 2 * pad - kernel) / stride + 1;
}

/* Output size of a pool along one axis; with @ceil_mode rounded up, as
 * PyTorch does, except that the last window must start inside the input or
 * its left padding. */
static inline int
cleave_pool_out_size (int in, int kernel, int stride, int pad, gboolean ceil_mode)
{
  int out;

  if (!ceil_mode)
    return cleave_out_size (in, kernel, stride, pad);
  out = (in + 2 * pad - kernel + stride - 1) / stride + 1;
  if ((out - 1) * stride >= in + pad)
    out--;
  return out;
}

/* The divisor of an average pool's window at output (oh, ow): the padded
 * window clipped to the padded input (count_include_pad), or to the input
 * itself (@exclude_pad), as in PyTorch. */
static inline int
cleave_avgpool_divisor (int oh, int ow, int h, int w, int kernel, int stride, int pad, gboolean exclude_pad)
{
  int h0 = oh * stride - pad, w0 = ow * stride - pad;
  int h1 = MIN (h0 + kernel, h + pad), w1 = MIN (w0 + kernel, w + pad);

  if (exclude_pad)
    {
      h0 = MAX (h0, 0);
      w0 = MAX (w0, 0);
      h1 = MIN (h1, h);
      w1 = MIN (w1, w);
    }
  return MAX ((h1 - h0) * (w1 - w0), 1);
}

G_END_DECLS
