/* cleave-ops.c: shape and backend checks in front of the backend vtable.
 *
 * Backends trust their inputs, so every inconsistency a caller can produce
 * (a graph built from a bad file, a wrong batch) must be caught here and
 * reported with the shapes involved. */
#include "cleave-ops.h"

#include <stdarg.h>

static CleaveBackend *
backend_of (const CleaveTensor *t)
{
  return t->buf->backend;
}

static gboolean G_GNUC_PRINTF (2, 3)
fail (GError **error, const char *fmt, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, msg);
  g_free (msg);
  return FALSE;
}

/* Up to 8 shape strings per check, freed by the caller's scope. */
typedef struct {
  char *s[8];
  int n;
} Shapes;

static const char *
sh (Shapes *ss, const CleaveTensor *t)
{
  if (t == NULL)
    return "(none)";
  g_assert (ss->n < (int) G_N_ELEMENTS (ss->s));
  return ss->s[ss->n++] = cleave_tensor_shape_string (t);
}

static void
shapes_clear (Shapes *ss)
{
  for (int i = 0; i < ss->n; i++)
    g_free (ss->s[i]);
  ss->n = 0;
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Shapes, shapes_clear)

/* The @n tensors that follow live on one backend; NULLs (optional inputs
 * and outputs) are skipped. */
static gboolean
same_backend (const char *op, GError **error, int n, ...)
{
  va_list ap;
  CleaveBackend *first = NULL;
  gboolean ok = TRUE;

  va_start (ap, n);
  for (int i = 0; i < n; i++)
    {
      const CleaveTensor *t = va_arg (ap, const CleaveTensor *);
      if (t == NULL)
        continue;
      if (t->buf == NULL || t->buf->backend == NULL)
        {
          ok = fail (error, "%s: tensor %d has no storage", op, i);
          break;
        }
      if (first == NULL)
        first = backend_of (t);
      else if (backend_of (t) != first)
        {
          ok = fail (error, "%s: tensors live on different backends (%s and %s)",
                     op, first->name, backend_of (t)->name);
          break;
        }
    }
  va_end (ap);
  return ok;
}

static gboolean
need_ndim (const char *op, const char *what, const CleaveTensor *t, int ndim_a, int ndim_b, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (t->ndim == ndim_a || t->ndim == ndim_b)
    return TRUE;
  if (ndim_a == ndim_b)
    return fail (error, "%s: %s must be %d-d, got %s", op, what, ndim_a, sh (&ss, t));
  return fail (error, "%s: %s must be %d-d or %d-d, got %s", op, what, ndim_a, ndim_b, sh (&ss, t));
}

static gboolean
need_same (const char *op, const char *an, const CleaveTensor *a, const char *bn, const CleaveTensor *b,
           GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (b == NULL || cleave_tensor_same_shape (a, b))
    return TRUE;
  return fail (error, "%s: %s %s and %s %s differ in shape", op, an, sh (&ss, a), bn, sh (&ss, b));
}

/* A 1-d tensor of @n elements (per-channel parameters). */
static gboolean
need_vec (const char *op, const char *what, const CleaveTensor *t, int n, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (t == NULL || (t->ndim == 1 && t->shape[0] == n))
    return TRUE;
  return fail (error, "%s: %s is %s, expected [%d]", op, what, sh (&ss, t), n);
}

static int
channels (const CleaveTensor *t)
{
  return t->ndim > 1 ? t->shape[1] : 1;
}

/* --------------------------------------------------------------- conv2d */

static gboolean
check_conv (const char *op, const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
            const CleaveTensor *y, const CleaveConvParams *p, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  int groups, k, ho, wo;

  if (!need_ndim (op, "input", x, 4, 4, error) || !need_ndim (op, "weight", w, 4, 4, error))
    return FALSE;
  groups = p->groups > 0 ? p->groups : 1;
  k = w->shape[2];
  if (p->stride < 1 || p->pad < 0 || p->groups < 0)
    return fail (error, "%s: stride %d, pad %d, groups %d are invalid", op, p->stride, p->pad, p->groups);
  if (w->shape[3] != k)
    return fail (error, "%s: weight %s is not a square kernel", op, sh (&ss, w));
  if (x->shape[1] % groups != 0 || w->shape[0] % groups != 0)
    return fail (error, "%s: %d groups do not divide input %s and weight %s",
                 op, groups, sh (&ss, x), sh (&ss, w));
  if (w->shape[1] * groups != x->shape[1])
    return fail (error, "%s: weight %s expects %d input channels, input is %s",
                 op, sh (&ss, w), w->shape[1] * groups, sh (&ss, x));
  if (x->shape[2] + 2 * p->pad < k || x->shape[3] + 2 * p->pad < k)
    return fail (error, "%s: kernel %d is larger than the padded input %s (pad %d)",
                 op, k, sh (&ss, x), p->pad);
  if (!need_vec (op, "bias", b, w->shape[0], error))
    return FALSE;
  ho = cleave_out_size (x->shape[2], k, p->stride, p->pad);
  wo = cleave_out_size (x->shape[3], k, p->stride, p->pad);
  if (y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0]
      || y->shape[2] != ho || y->shape[3] != wo)
    return fail (error, "%s: output %s should be [%d, %d, %d, %d] for input %s, weight %s, stride %d, pad %d",
                 op, sh (&ss, y), x->shape[0], w->shape[0], ho, wo, sh (&ss, x), sh (&ss, w),
                 p->stride, p->pad);
  return TRUE;
}

gboolean
cleave_conv2d_forward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                       CleaveTensor *y, const CleaveConvParams *p, GError **error)
{
  if (!same_backend ("conv2d", error, 4, x, w, b, y) || !check_conv ("conv2d", x, w, b, y, p, error))
    return FALSE;
  return backend_of (x)->vtable->conv2d_forward (backend_of (x), x, w, b, y, p, error);
}

gboolean
cleave_conv2d_bn_supported (CleaveBackend *backend)
{
  return backend->vtable->conv2d_bn_forward != NULL;
}

gboolean
cleave_conv2d_bn_forward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                          const CleaveTensor *gamma, const CleaveTensor *beta, const CleaveTensor *running_mean,
                          const CleaveTensor *running_var, float eps, CleaveTensor *y, const CleaveConvParams *p,
                          GError **error)
{
  const char *op = "conv2d+batchnorm";
  int co;

  if (!same_backend (op, error, 8, x, w, b, gamma, beta, running_mean, running_var, y)
      || !check_conv (op, x, w, b, y, p, error))
    return FALSE;
  co = w->shape[0];
  if (!need_vec (op, "gamma", gamma, co, error) || !need_vec (op, "beta", beta, co, error)
      || !need_vec (op, "running mean", running_mean, co, error)
      || !need_vec (op, "running variance", running_var, co, error))
    return FALSE;
  if (gamma == NULL || beta == NULL || running_mean == NULL || running_var == NULL)
    return fail (error, "%s: gamma, beta and the running statistics are required", op);
  if (!(eps > 0.0f))
    return fail (error, "%s: eps %g must be positive", op, (double) eps);
  if (!cleave_conv2d_bn_supported (backend_of (x)))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: not available on the %s backend", op,
                   backend_of (x)->name);
      return FALSE;
    }
  return backend_of (x)->vtable->conv2d_bn_forward (backend_of (x), x, w, b, gamma, beta, running_mean,
                                                    running_var, eps, y, p, error);
}

gboolean
cleave_conv2d_backward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *dy,
                        CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db,
                        const CleaveConvParams *p, GError **error)
{
  const char *op = "conv2d backward";
  if (!same_backend (op, error, 6, x, w, dy, dx, dw, db) || !check_conv (op, x, w, db, dy, p, error)
      || !need_same (op, "input", x, "input gradient", dx, error)
      || !need_same (op, "weight", w, "weight gradient", dw, error))
    return FALSE;
  return backend_of (x)->vtable->conv2d_backward (backend_of (x), x, w, dy, dx, dw, db, p, error);
}

/* ------------------------------------------------------------ batchnorm */

gboolean
cleave_batchnorm_forward (const CleaveTensor *x, const CleaveTensor *gamma, const CleaveTensor *beta,
                          CleaveTensor *running_mean, CleaveTensor *running_var, CleaveTensor *y,
                          CleaveTensor *save_mean, CleaveTensor *save_invstd,
                          gboolean training, float momentum, float eps, GError **error)
{
  const char *op = "batchnorm";
  g_auto (Shapes) ss = { 0 };
  int c;

  if (!same_backend (op, error, 8, x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd)
      || !need_ndim (op, "input", x, 4, 2, error))
    return FALSE;
  c = channels (x);
  if (!need_vec (op, "gamma", gamma, c, error) || !need_vec (op, "beta", beta, c, error)
      || !need_vec (op, "running mean", running_mean, c, error)
      || !need_vec (op, "running variance", running_var, c, error)
      || !need_vec (op, "saved mean", save_mean, c, error)
      || !need_vec (op, "saved inverse std", save_invstd, c, error)
      || !need_same (op, "input", x, "output", y, error))
    return FALSE;
  if (!(eps > 0.0f))
    return fail (error, "%s: eps %g must be positive", op, (double) eps);
  if (training && cleave_tensor_numel (x) / c < 2)
    return fail (error, "%s: training needs more than one value per channel, input is %s",
                 op, sh (&ss, x));
  return backend_of (x)->vtable->batchnorm_forward (backend_of (x), x, gamma, beta, running_mean, running_var,
                                                    y, save_mean, save_invstd, training, momentum, eps, error);
}

gboolean
cleave_batchnorm_backward (const CleaveTensor *x, const CleaveTensor *gamma,
                           const CleaveTensor *save_mean, const CleaveTensor *save_invstd,
                           const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dgamma,
                           CleaveTensor *dbeta, gboolean training, GError **error)
{
  const char *op = "batchnorm backward";
  int c;

  if (!same_backend (op, error, 8, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta)
      || !need_ndim (op, "input", x, 4, 2, error))
    return FALSE;
  c = channels (x);
  if (!need_vec (op, "gamma", gamma, c, error) || !need_vec (op, "saved mean", save_mean, c, error)
      || !need_vec (op, "saved inverse std", save_invstd, c, error)
      || !need_vec (op, "gamma gradient", dgamma, c, error) || !need_vec (op, "beta gradient", dbeta, c, error)
      || !need_same (op, "input", x, "output gradient", dy, error)
      || !need_same (op, "input", x, "input gradient", dx, error))
    return FALSE;
  return backend_of (x)->vtable->batchnorm_backward (backend_of (x), x, gamma, save_mean, save_invstd,
                                                     dy, dx, dgamma, dbeta, training, error);
}

/* ---------------------------------------------------------- activations */

#define UNARY(name, field, an, bn)                                                  \
  gboolean                                                                          \
  cleave_##name (const CleaveTensor *a, CleaveTensor *b, GError **error)            \
  {                                                                                 \
    if (!same_backend (#name, error, 2, a, b) || !need_same (#name, an, a, bn, b, error)) \
      return FALSE;                                                                 \
    return backend_of (a)->vtable->field (backend_of (a), a, b, error);             \
  }

#define BINARY_GRAD(name, field)                                                    \
  gboolean                                                                          \
  cleave_##name (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error) \
  {                                                                                 \
    if (!same_backend (#name, error, 3, y, dy, dx)                                  \
        || !need_same (#name, "output", y, "output gradient", dy, error)            \
        || !need_same (#name, "output", y, "input gradient", dx, error))            \
      return FALSE;                                                                 \
    return backend_of (y)->vtable->field (backend_of (y), y, dy, dx, error);        \
  }

UNARY (relu_forward, relu_forward, "input", "output")
UNARY (sigmoid_forward, sigmoid_forward, "input", "output")
BINARY_GRAD (relu_backward, relu_backward)
BINARY_GRAD (sigmoid_backward, sigmoid_backward)

gboolean
cleave_clamp_forward (const CleaveTensor *x, CleaveTensor *y, float alpha, float beta, float lo, float hi,
                      GError **error)
{
  const char *op = "clamp";
  if (!same_backend (op, error, 2, x, y) || !need_same (op, "input", x, "output", y, error))
    return FALSE;
  if (!(lo <= hi))
    return fail (error, "%s: lower bound %g is above the upper bound %g", op, lo, hi);
  return backend_of (x)->vtable->clamp_forward (backend_of (x), x, y, alpha, beta, lo, hi, error);
}

gboolean
cleave_clamp_backward (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, float alpha, float lo,
                       float hi, GError **error)
{
  const char *op = "clamp backward";
  if (!same_backend (op, error, 3, y, dy, dx) || !need_same (op, "output", y, "output gradient", dy, error)
      || !need_same (op, "output", y, "input gradient", dx, error))
    return FALSE;
  return backend_of (y)->vtable->clamp_backward (backend_of (y), y, dy, dx, alpha, lo, hi, error);
}

gboolean
cleave_softmax_forward (const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  const char *op = "softmax";
  if (!same_backend (op, error, 2, x, y) || !need_ndim (op, "input", x, 2, 2, error)
      || !need_same (op, "input", x, "output", y, error))
    return FALSE;
  return backend_of (x)->vtable->softmax_forward (backend_of (x), x, y, error);
}

gboolean
cleave_softmax_backward (const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  const char *op = "softmax backward";
  if (!same_backend (op, error, 3, y, dy, dx) || !need_ndim (op, "output", y, 2, 2, error)
      || !need_same (op, "output", y, "output gradient", dy, error)
      || !need_same (op, "output", y, "input gradient", dx, error))
    return FALSE;
  return backend_of (y)->vtable->softmax_backward (backend_of (y), y, dy, dx, error);
}

gboolean
cleave_channel_shuffle (const CleaveTensor *x, CleaveTensor *y, int groups, GError **error)
{
  const char *op = "channel shuffle";
  g_auto (Shapes) ss = { 0 };
  if (!same_backend (op, error, 2, x, y) || !need_ndim (op, "input", x, 4, 4, error)
      || !need_same (op, "input", x, "output", y, error))
    return FALSE;
  if (groups < 1 || x->shape[1] % groups != 0)
    return fail (error, "%s: %d groups do not divide the channels of %s", op, groups, sh (&ss, x));
  return backend_of (x)->vtable->channel_shuffle (backend_of (x), x, y, groups, error);
}

/* -------------------------------------------------------------- pooling */

static gboolean
check_pool (const char *op, const CleaveTensor *x, const CleaveTensor *y, const CleavePoolParams *p,
            gboolean is_max, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  int ho, wo;

  if (!need_ndim (op, "input", x, 4, 4, error))
    return FALSE;
  if (p->kernel < 1 || p->stride < 1 || p->pad < 0)
    return fail (error, "%s: kernel %d, stride %d, pad %d are invalid", op, p->kernel, p->stride, p->pad);
  if (p->pad * 2 > p->kernel)
    return fail (error, "%s: pad %d must be at most half the kernel %d", op, p->pad, p->kernel);
  if (x->shape[2] + 2 * p->pad < p->kernel || x->shape[3] + 2 * p->pad < p->kernel)
    return fail (error, "%s: kernel %d is larger than the padded input %s (pad %d)",
                 op, p->kernel, sh (&ss, x), p->pad);
  ho = cleave_pool_out_size (x->shape[2], p->kernel, p->stride, p->pad, p->ceil_mode);
  wo = cleave_pool_out_size (x->shape[3], p->kernel, p->stride, p->pad, p->ceil_mode);
  if (y->ndim != 4 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1]
      || y->shape[2] != ho || y->shape[3] != wo)
    return fail (error, "%s: output %s should be [%d, %d, %d, %d] for input %s, kernel %d, stride %d, pad %d",
                 op, sh (&ss, y), x->shape[0], x->shape[1], ho, wo, sh (&ss, x),
                 p->kernel, p->stride, p->pad);
  return TRUE;
}

gboolean
cleave_maxpool_forward (const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  if (!same_backend ("maxpool", error, 2, x, y) || !check_pool ("maxpool", x, y, p, TRUE, error))
    return FALSE;
  return backend_of (x)->vtable->maxpool_forward (backend_of (x), x, y, p, error);
}

gboolean
cleave_maxpool_backward (const CleaveTensor *x, const CleaveTensor *dy, CleaveTensor *dx,
                         const CleavePoolParams *p, GError **error)
{
  const char *op = "maxpool backward";
  if (!same_backend (op, error, 3, x, dy, dx) || !check_pool (op, x, dy, p, TRUE, error)
      || !need_same (op, "input", x, "input gradient", dx, error))
    return FALSE;
  return backend_of (x)->vtable->maxpool_backward (backend_of (x), x, dy, dx, p, error);
}

gboolean
cleave_avgpool_forward (const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  if (!same_backend ("avgpool", error, 2, x, y) || !check_pool ("avgpool", x, y, p, FALSE, error))
    return FALSE;
  return backend_of (x)->vtable->avgpool_forward (backend_of (x), x, y, p, error);
}

gboolean
cleave_avgpool_backward (const CleaveTensor *dy, CleaveTensor *dx, const CleavePoolParams *p, GError **error)
{
  const char *op = "avgpool backward";
  if (!same_backend (op, error, 2, dy, dx) || !check_pool (op, dx, dy, p, FALSE, error))
    return FALSE;
  return backend_of (dx)->vtable->avgpool_backward (backend_of (dx), dy, dx, p, error);
}

static gboolean
check_global_pool (const char *op, const CleaveTensor *x, const CleaveTensor *y, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (!need_ndim (op, "input", x, 4, 4, error))
    return FALSE;
  if (y->ndim != 2 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1])
    return fail (error, "%s: output %s should be [%d, %d] for input %s",
                 op, sh (&ss, y), x->shape[0], x->shape[1], sh (&ss, x));
  return TRUE;
}

gboolean
cleave_global_avgpool_forward (const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  const char *op = "global avgpool";
  if (!same_backend (op, error, 2, x, y) || !check_global_pool (op, x, y, error))
    return FALSE;
  return backend_of (x)->vtable->global_avgpool_forward (backend_of (x), x, y, error);
}

gboolean
cleave_global_avgpool_backward (const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  const char *op = "global avgpool backward";
  if (!same_backend (op, error, 2, dy, dx) || !check_global_pool (op, dx, dy, error))
    return FALSE;
  return backend_of (dx)->vtable->global_avgpool_backward (backend_of (dx), dy, dx, error);
}

/* --------------------------------------------------------------- linear */

static gboolean
check_linear (const char *op, const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
              const CleaveTensor *y, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (!need_ndim (op, "input", x, 2, 2, error) || !need_ndim (op, "weight", w, 2, 2, error))
    return FALSE;
  if (w->shape[1] != x->shape[1])
    return fail (error, "%s: weight %s expects %d input features, input is %s",
                 op, sh (&ss, w), w->shape[1], sh (&ss, x));
  if (!need_vec (op, "bias", b, w->shape[0], error))
    return FALSE;
  if (y->ndim != 2 || y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0])
    return fail (error, "%s: output %s should be [%d, %d] for input %s, weight %s",
                 op, sh (&ss, y), x->shape[0], w->shape[0], sh (&ss, x), sh (&ss, w));
  return TRUE;
}

gboolean
cleave_linear_forward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                       CleaveTensor *y, GError **error)
{
  if (!same_backend ("linear", error, 4, x, w, b, y) || !check_linear ("linear", x, w, b, y, error))
    return FALSE;
  return backend_of (x)->vtable->linear_forward (backend_of (x), x, w, b, y, error);
}

gboolean
cleave_linear_backward (const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *dy,
                        CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db, GError **error)
{
  const char *op = "linear backward";
  if (!same_backend (op, error, 6, x, w, dy, dx, dw, db) || !check_linear (op, x, w, db, dy, error)
      || !need_same (op, "input", x, "input gradient", dx, error)
      || !need_same (op, "weight", w, "weight gradient", dw, error))
    return FALSE;
  return backend_of (x)->vtable->linear_backward (backend_of (x), x, w, dy, dx, dw, db, error);
}

/* ----------------------------------------------------------- elementwise */

gboolean
cleave_dropout_forward (const CleaveTensor *x, CleaveTensor *y, CleaveTensor *keep,
                        float p, guint64 seed, GError **error)
{
  const char *op = "dropout";
  if (!same_backend (op, error, 3, x, y, keep) || !need_same (op, "input", x, "output", y, error)
      || !need_same (op, "input", x, "keep mask", keep, error))
    return FALSE;
  if (!(p >= 0.0f && p < 1.0f))
    return fail (error, "%s: probability %g is outside [0, 1)", op, (double) p);
  return backend_of (x)->vtable->dropout_forward (backend_of (x), x, y, keep, p, seed, error);
}

/* Elementwise ops only need equal element counts: a [N, C*H*W] view of an
 * NCHW tensor is fine. */
static gboolean
need_numel (const char *op, const char *an, const CleaveTensor *a, const char *bn, const CleaveTensor *b,
            GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (cleave_tensor_numel (a) == cleave_tensor_numel (b))
    return TRUE;
  return fail (error, "%s: %s %s and %s %s differ in size", op, an, sh (&ss, a), bn, sh (&ss, b));
}

gboolean
cleave_mul (const CleaveTensor *a, const CleaveTensor *b, CleaveTensor *y, GError **error)
{
  if (!same_backend ("mul", error, 3, a, b, y) || !need_numel ("mul", "a", a, "b", b, error)
      || !need_numel ("mul", "a", a, "output", y, error))
    return FALSE;
  return backend_of (a)->vtable->mul (backend_of (a), a, b, y, error);
}

gboolean
cleave_axpby (float alpha, const CleaveTensor *a, float beta, const CleaveTensor *b,
              CleaveTensor *y, GError **error)
{
  if (!same_backend ("axpby", error, 3, a, b, y) || !need_numel ("axpby", "a", a, "b", b, error)
      || !need_numel ("axpby", "a", a, "output", y, error))
    return FALSE;
  return backend_of (a)->vtable->axpby (backend_of (a), alpha, a, beta, b, y, error);
}

static gboolean
check_channel_copy (const char *op, const CleaveTensor *part, const CleaveTensor *whole, int offset,
                    GError **error)
{
  g_auto (Shapes) ss = { 0 };
  gboolean ok = part->ndim == whole->ndim && (part->ndim == 2 || part->ndim == 4)
                && part->shape[0] == whole->shape[0];
  for (int i = 2; ok && i < part->ndim; i++)
    ok = part->shape[i] == whole->shape[i];
  if (!ok)
    return fail (error, "%s: %s and %s differ outside the channel axis", op, sh (&ss, part), sh (&ss, whole));
  if (offset < 0 || offset + part->shape[1] > whole->shape[1])
    return fail (error, "%s: channels %d..%d of %s do not fit in %s",
                 op, offset, offset + part->shape[1] - 1, sh (&ss, part), sh (&ss, whole));
  return TRUE;
}

gboolean
cleave_channel_copy_in (const CleaveTensor *src, CleaveTensor *dst, int offset, GError **error)
{
  const char *op = "channel copy in";
  if (!same_backend (op, error, 2, src, dst) || !check_channel_copy (op, src, dst, offset, error))
    return FALSE;
  return backend_of (src)->vtable->channel_copy_in (backend_of (src), src, dst, offset, error);
}

gboolean
cleave_channel_copy_out (const CleaveTensor *src, int offset, CleaveTensor *dst, GError **error)
{
  const char *op = "channel copy out";
  if (!same_backend (op, error, 2, src, dst) || !check_channel_copy (op, dst, src, offset, error))
    return FALSE;
  return backend_of (src)->vtable->channel_copy_out (backend_of (src), src, offset, dst, error);
}

static gboolean
check_mask (const char *op, const CleaveTensor *x, const CleaveTensor *m, GError **error)
{
  g_auto (Shapes) ss = { 0 };
  if (!need_ndim (op, "input", x, 4, 2, error) || !need_ndim (op, "mask", m, 2, 2, error))
    return FALSE;
  if (m->shape[1] != x->shape[1])
    return fail (error, "%s: mask %s has %d channels, input %s has %d",
                 op, sh (&ss, m), m->shape[1], sh (&ss, x), x->shape[1]);
  if (x->shape[0] % m->shape[0] != 0)
    return fail (error, "%s: batch of input %s is not a multiple of the %d mask groups of %s",
                 op, sh (&ss, x), m->shape[0], sh (&ss, m));
  return TRUE;
}

/* @x holds the first rows of @full's batch, which repeats them (its batch a
 * multiple of x's, the other dimensions the same): a mask input that the
 * splitters' shared layers computed once for all groups. */
static gboolean
need_repeating (const char *op, const char *xn, const CleaveTensor *x, const char *fn, const CleaveTensor *full,
                GError **error)
{
  g_auto (Shapes) ss = { 0 };
  gboolean ok = x->ndim == full->ndim && x->shape[0] > 0 && full->shape[0] % x->shape[0] == 0;
  for (int d = 1; ok && d < x->ndim; d++)
    ok = x->shape[d] == full->shape[d];
  return ok ? TRUE : fail (error, "%s: %s %s is neither the shape of %s %s nor its first rows", op, xn,
                           sh (&ss, x), fn, sh (&ss, full));
}

gboolean
cleave_mask_forward (const CleaveTensor *x, const CleaveTensor *m, CleaveTensor *y, GError **error)
{
  const char *op = "mask";
  if (!same_backend (op, error, 3, x, m, y) || !check_mask (op, y, m, error)
      || !need_repeating (op, "input", x, "output", y, error))
    return FALSE;
  return backend_of (x)->vtable->mask_forward (backend_of (x), x, m, y, error);
}

gboolean
cleave_mask_backward (const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                      CleaveTensor *dx, CleaveTensor *dm, GError **error)
{
  const char *op = "mask backward";
  if (!same_backend (op, error, 5, x, m, dy, dx, dm) || !check_mask (op, x, m, error)
      || !need_same (op, "input", x, "output gradient", dy, error)
      || !need_same (op, "input", x, "input gradient", dx, error)
      || !need_same (op, "mask", m, "mask gradient", dm, error))
    return FALSE;
  return backend_of (x)->vtable->mask_backward (backend_of (x), x, m, dy, dx, dm, error);
}

gboolean
cleave_mask_chain_backward_supported (CleaveBackend *backend)
{
  return backend->vtable->mask_chain_backward != NULL;
}

gboolean
cleave_mask_chain_backward (const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy, gboolean relu,
                            const CleaveTensor *gamma, const CleaveTensor *invstd, CleaveTensor *dx,
                            CleaveTensor *dm, GError **error)
{
  const char *op = "mask chain backward";
  if (!same_backend (op, error, 7, x, m, dy, gamma, invstd, dx, dm) || !check_mask (op, dy, m, error)
      || !need_repeating (op, "input", x, "output gradient", dy, error)
      || !need_same (op, "output gradient", dy, "input gradient", dx, error)
      || !need_same (op, "mask", m, "mask gradient", dm, error))
    return FALSE;
  if (dx == NULL && dm == NULL)
    return fail (error, "%s: neither the input gradient nor the mask gradient is asked for", op);
  if ((gamma == NULL) != (invstd == NULL))
    return fail (error, "%s: gamma and invstd come together", op);
  if (gamma && (!need_vec (op, "gamma", gamma, x->shape[1], error) || !need_vec (op, "invstd", invstd, x->shape[1], error)))
    return FALSE;
  if (!cleave_mask_chain_backward_supported (backend_of (x)))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: not available on the %s backend", op,
                   backend_of (x)->name);
      return FALSE;
    }
  return backend_of (x)->vtable->mask_chain_backward (backend_of (x), x, m, dy, relu, gamma, invstd, dx, dm, error);
}

gboolean
cleave_softmax_ce (const CleaveTensor *logits, const CleaveTensor *labels,
                   CleaveTensor *loss, CleaveTensor *dlogits, GError **error)
{
  const char *op = "softmax cross-entropy";
  g_auto (Shapes) ss = { 0 };
  if (!same_backend (op, error, 4, logits, labels, loss, dlogits)
      || !need_ndim (op, "logits", logits, 2, 2, error))
    return FALSE;
  if (cleave_tensor_numel (labels) != (gsize) logits->shape[0])
    return fail (error, "%s: labels %s do not give one label for each row of logits %s",
                 op, sh (&ss, labels), sh (&ss, logits));
  if (cleave_tensor_numel (loss) != 1)
    return fail (error, "%s: loss %s must hold one value", op, sh (&ss, loss));
  if (!need_same (op, "logits", logits, "logits gradient", dlogits, error))
    return FALSE;
  return backend_of (logits)->vtable->softmax_ce (backend_of (logits), logits, labels, loss, dlogits, error);
}

/* ------------------------------------------------------------ optimisers */

gboolean
cleave_sgd_step (CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *buf,
                 float lr, float momentum, float weight_decay, gboolean first_step, GError **error)
{
  const char *op = "sgd";
  if (!same_backend (op, error, 3, param, grad, buf)
      || !need_numel (op, "parameter", param, "gradient", grad, error)
      || (buf && !need_numel (op, "parameter", param, "momentum buffer", buf, error)))
    return FALSE;
  if (momentum != 0.0f && buf == NULL)
    return fail (error, "%s: momentum %g needs a momentum buffer", op, (double) momentum);
  return backend_of (param)->vtable->sgd_step (backend_of (param), param, grad, buf, lr, momentum,
                                               weight_decay, first_step, error);
}

gboolean
cleave_adam_step (CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *m, CleaveTensor *v,
                  float lr, float beta1, float beta2, float eps, float weight_decay, int t, GError **error)
{
  const char *op = "adam";
  if (!same_backend (op, error, 4, param, grad, m, v)
      || !need_numel (op, "parameter", param, "gradient", grad, error)
      || !need_numel (op, "parameter", param, "first moment", m, error)
      || !need_numel (op, "parameter", param, "second moment", v, error))
    return FALSE;
  if (t < 1)
    return fail (error, "%s: step %d must be at least 1", op, t);
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
    return fail (error, "%s: betas (%g, %g) must lie in [0, 1)", op, (double) beta1, (double) beta2);
  return backend_of (param)->vtable->adam_step (backend_of (param), param, grad, m, v, lr, beta1, beta2,
                                                eps, weight_decay, t, error);
}
