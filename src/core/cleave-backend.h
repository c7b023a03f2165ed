/* cleave-backend.h: the small vtable every compute backend implements.
 *
 * Conventions for every op:
 *  - tensors are contiguous float32; activations are NCHW (4-d) or NF (2-d);
 *  - outputs are overwritten, never accumulated into, unless the op's comment
 *    says "accumulates";
 *  - a NULL optional output means "not needed" and must be skipped cheaply;
 *  - shapes are checked by the caller (cleave-ops.c) before the vtable is
 *    reached, so backends may assume them consistent;
 *  - every op returns FALSE with a GError on a driver failure.
 */
#pragma once

#include "cleave-tensor.h"
#include "cleave-error.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_BACKEND_KIND_CPU,
  CLEAVE_BACKEND_KIND_OPENCL,
} CleaveBackendKind;

typedef struct {
  int stride, pad, groups;
  gboolean relu;   /* conv2d_bn_forward only: max (0, ·) after the bias */
} CleaveConvParams;

typedef struct {
  int kernel, stride, pad;
  gboolean ceil_mode;    /* output size rounded up (cleave_pool_out_size) */
  gboolean exclude_pad;  /* avgpool: divisor counts only the cells inside the input */
} CleavePoolParams;

/* How convolutions run on the cpu backend. */
typedef enum {
  CLEAVE_CONV_ALGO_AUTO,     /* Winograd where it is applicable and pays off */
  CLEAVE_CONV_ALGO_IM2COL,
  CLEAVE_CONV_ALGO_WINOGRAD, /* Winograd for every 3x3 stride-1 pad-1 conv */
} CleaveConvAlgo;

/* Which GEMM kernel the OpenCL backend runs. */
typedef enum {
  CLEAVE_OPENCL_GEMM_AUTO,   /* strip on CPU devices, tiled elsewhere */
  CLEAVE_OPENCL_GEMM_TILED,
  CLEAVE_OPENCL_GEMM_STRIP,
} CleaveOpenclGemm;

/* Settings fixed when a backend is created. The core reads no environment
 * variables: front ends fill this (see cleave_backend_settings) and pass it
 * to cleave_device_open(). Zero-initialised means "all automatic". */
typedef struct {
  int threads;                 /* cpu: pool threads; 0 = one per processor. The pool is
                                * process-wide: the first cpu backend created sizes it. */
  CleaveConvAlgo conv_algo;    /* cpu */
  gsize winograd_grad_chunk;   /* cpu: floats per Winograd weight-gradient chunk; 0 = 8 Mi */
  CleaveOpenclGemm opencl_gemm;
  int opencl_split_k;          /* 0 automatic, 1 off, N > 1 that many K slices per GEMM */
} CleaveBackendConfig;

/**
 * cleave_backend_config_init:
 * @config: (out caller-allocates): set to the defaults (everything automatic)
 */
void cleave_backend_config_init (CleaveBackendConfig *config);

/* One named setting of CleaveBackendConfig, with the environment variable a
 * front end may read it from once at start (NULL: none). */
typedef struct {
  const char *name;     /* "conv-algo" */
  const char *env;      /* "CLEAVE_CONV_ALGO" */
  const char *help;     /* what the values mean */
} CleaveBackendSetting;

/**
 * cleave_backend_settings:
 * @n_settings: (out): the number of entries
 *
 * The settings, in the order a front end applies them (a later entry for the
 * same name wins: OMP_NUM_THREADS comes before CLEAVE_CPU_THREADS).
 *
 * Returns: (transfer none) (array length=n_settings): the table
 */
const CleaveBackendSetting *cleave_backend_settings (guint *n_settings);
/**
 * cleave_backend_config_set:
 * @config: the configuration to change
 * @name: a setting's name ("conv-algo")
 * @value: its value as text ("im2col")
 * @error: a #GError (%CLEAVE_ERROR_INVALID_ARGUMENT) naming the setting and the value
 *
 * An unknown name or a bad value is an error: nothing is silently replaced
 * by a default.
 *
 * Returns: %TRUE when the setting was changed
 */
gboolean cleave_backend_config_set (CleaveBackendConfig *config, const char *name, const char *value,
                                    GError **error);
/**
 * cleave_backend_config_from_environ:
 * @config: the configuration to change
 * @envp: (array zero-terminated=1) (nullable): an environment the front end passes explicitly, e.g.
 *   g_get_environ() once at start
 * @taken: (nullable): "VAR=value (name)" is appended for each variable applied
 * @error: a #GError naming the variable of a bad value
 *
 * Returns: %TRUE when every variable present was applied
 */
gboolean cleave_backend_config_from_environ (CleaveBackendConfig *config, char **envp, GString *taken,
                                             GError **error);
/**
 * cleave_backend_config_describe:
 * @config: a configuration
 *
 * Returns: (transfer full): the settings that differ from the defaults, "threads 2, conv-algo im2col",
 *   or "defaults"
 */
char *cleave_backend_config_describe (const CleaveBackendConfig *config);

typedef struct _CleaveBackendVTable CleaveBackendVTable;

struct _CleaveBackend {
  const CleaveBackendVTable *vtable;
  CleaveBackendKind kind;
  char *name;          /* "cpu", "opencl:0:1 (Portable Computing Language / cpu-haswell)" */
  char *description;
  CleaveBackendConfig config;  /* as created (the defaults filled in where they were automatic) */
  gpointer priv;
  gint ref_count;
};

struct _CleaveBackendVTable {
  void     (*destroy)  (CleaveBackend *self);
  gpointer (*alloc)    (CleaveBackend *self, gsize n_floats, GError **error);
  void     (*free)     (CleaveBackend *self, gpointer handle);
  gboolean (*upload)   (CleaveBackend *self, gpointer dst, gsize offset, const float *src, gsize n, GError **error);
  gboolean (*download) (CleaveBackend *self, gpointer src, gsize offset, float *dst, gsize n, GError **error);
  gboolean (*fill)     (CleaveBackend *self, CleaveTensor *t, float value, GError **error);
  gboolean (*copy)     (CleaveBackend *self, CleaveTensor *dst, const CleaveTensor *src, GError **error);
  /* Optional: n floats of one buffer from src_offset to dst_offset, the two
   * ranges disjoint, on the device (NULL: callers go through the host). */
  gboolean (*copy_within) (CleaveBackend *self, gpointer handle, gsize dst_offset, gsize src_offset, gsize n,
                           GError **error);
  /* Wait for queued work (OpenCL); may be NULL. */
  gboolean (*finish)   (CleaveBackend *self, GError **error);

  /* y[N,Co,Ho,Wo] = conv(x[N,Ci,H,W], w[Co,Ci/groups,K,K]) + b[Co] (b may be NULL) */
  gboolean (*conv2d_forward)  (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                               const CleaveTensor *b, CleaveTensor *y, const CleaveConvParams *p, GError **error);
  /* Optional (NULL where a backend lacks it): inference-only conv followed
   * by an eval-mode batchnorm (running statistics), [then relu when
   * p->relu], in one pass over the output: the batchnorm is folded into the
   * weights and bias (w·γ/√(var+ε), (b − mean)·γ/√(var+ε) + β). */
  gboolean (*conv2d_bn_forward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                                 const CleaveTensor *b, const CleaveTensor *gamma, const CleaveTensor *beta,
                                 const CleaveTensor *running_mean, const CleaveTensor *running_var, float eps,
                                 CleaveTensor *y, const CleaveConvParams *p, GError **error);
  /* dx, dw, db each optional (NULL = skip). dw and db are overwritten. */
  gboolean (*conv2d_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                               const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db,
                               const CleaveConvParams *p, GError **error);

  /* training: batch statistics, saved mean/invstd written, running stats updated
   *   (running = (1-momentum)*running + momentum*batch, running_var uses the unbiased variance);
   * eval: running statistics used, save_* untouched (may be NULL). */
  gboolean (*batchnorm_forward)  (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                                  const CleaveTensor *beta, CleaveTensor *running_mean, CleaveTensor *running_var,
                                  CleaveTensor *y, CleaveTensor *save_mean, CleaveTensor *save_invstd,
                                  gboolean training, float momentum, float eps, GError **error);
  /* training: gradient through batch statistics using save_mean/save_invstd;
   * eval: running stats are constants (save_* are then the running mean and 1/sqrt(var+eps)).
   * dx, dgamma, dbeta optional. */
  gboolean (*batchnorm_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                                  const CleaveTensor *save_mean, const CleaveTensor *save_invstd,
                                  const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dgamma,
                                  CleaveTensor *dbeta, gboolean training, GError **error);

  gboolean (*relu_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error);
  /* dx = dy * (y > 0); uses the forward output y. */
  gboolean (*relu_backward) (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error);

  gboolean (*sigmoid_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error);
  gboolean (*sigmoid_backward) (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error);

  /* y = min (max (alpha·x + beta, lo), hi) (Clip, ReLU6, HardSigmoid);
   * backward: dx = dy·alpha where lo < y < hi, else 0 (uses the forward output y). */
  gboolean (*clamp_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, float alpha, float beta,
                              float lo, float hi, GError **error);
  gboolean (*clamp_backward) (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx,
                              float alpha, float lo, float hi, GError **error);

  /* Row-wise softmax of x[N,F]; backward dx = y·(dy − Σ dy·y) from the output y. */
  gboolean (*softmax_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error);
  gboolean (*softmax_backward) (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx,
                                GError **error);

  /* x[N,C,H,W] viewed as [N,groups,C/groups,H,W], the two channel axes
   * transposed: y channel k·groups + j = x channel j·(C/groups) + k. The
   * inverse is the shuffle with C/groups groups. */
  gboolean (*channel_shuffle) (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, int groups, GError **error);

  /* Max pool (padding counts as -inf) and average pool (count_include_pad=True, like PyTorch's default,
   * unless p->exclude_pad); the divisor is cleave_avgpool_divisor(). Output sizes are the tensors'. */
  gboolean (*maxpool_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error);
  /* Gradient goes to the first maximum in the window (PyTorch's rule). */
  gboolean (*maxpool_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *dy, CleaveTensor *dx,
                                const CleavePoolParams *p, GError **error);
  gboolean (*avgpool_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error);
  gboolean (*avgpool_backward) (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, const CleavePoolParams *p, GError **error);
  /* y[N,C] (2-d) = mean over H,W of x[N,C,H,W] */
  gboolean (*global_avgpool_forward)  (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error);
  gboolean (*global_avgpool_backward) (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, GError **error);

  /* y[N,M] = x[N,K] w[M,K]^T + b[M] (b may be NULL) */
  gboolean (*linear_forward)  (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                               const CleaveTensor *b, CleaveTensor *y, GError **error);
  gboolean (*linear_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                               const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db, GError **error);

  /* Inverted dropout: keep[i] = hash(seed, i) >= p ? 1/(1-p) : 0 (the same
   * counter-based hash on every backend, see cleave_dropout_keep()); y = x*keep,
   * keep is written so that backward is y = dy*keep (use mul). */
  gboolean (*dropout_forward) (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, CleaveTensor *keep,
                               float p, guint64 seed, GError **error);

  /* Elementwise: y = a*b, y = alpha*a + beta*b (y may alias a or b). */
  gboolean (*mul) (CleaveBackend *self, const CleaveTensor *a, const CleaveTensor *b, CleaveTensor *y, GError **error);
  gboolean (*axpby) (CleaveBackend *self, float alpha, const CleaveTensor *a, float beta, const CleaveTensor *b,
                     CleaveTensor *y, GError **error);

  /* Channel concat / split: copy src[N,Cs,H,W] into dst[N,Cd,H,W] at channel offset (and back).
   * Also used for 2-d tensors (H=W=1). */
  gboolean (*channel_copy_in)  (CleaveBackend *self, const CleaveTensor *src, CleaveTensor *dst, int offset, GError **error);
  gboolean (*channel_copy_out) (CleaveBackend *self, const CleaveTensor *src, int offset, CleaveTensor *dst, GError **error);

  /* Grouped channel mask. y is [G*B, C, H, W] (or [G*B, C] 2-d), sample n uses
   * mask row n / B: y = x * m[n/B, c], m is [G, C]. In mask_forward and
   * mask_chain_backward x may hold only the first rows of the batch, which
   * then repeats them (row n reads x's row n % rows(x)).
   * backward: dx = dy * m (optional), dm[g,c] = sum_{n in group g, h, w} dy*x (optional). */
  gboolean (*mask_forward)  (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, CleaveTensor *y, GError **error);
  gboolean (*mask_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                             CleaveTensor *dx, CleaveTensor *dm, GError **error);
  /* Optional (NULL where a backend lacks it). mask_backward, then, when
   * relu, dx *= (x > 0) (x being the relu's output), then, when gamma,
   * dx *= gamma[c] * invstd[c]: the backward of a frozen batchnorm → relu
   * → mask chain (eval mode) in one pass. dx or dm may be NULL, not both. */
  gboolean (*mask_chain_backward) (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m,
                                   const CleaveTensor *dy, gboolean relu, const CleaveTensor *gamma,
                                   const CleaveTensor *invstd, CleaveTensor *dx, CleaveTensor *dm, GError **error);

  /* Softmax cross-entropy, mean over the batch. logits[N,C], labels[N] holds
   * class indices as floats. loss (1 element) and dlogits (optional) written;
   * dlogits = (softmax - onehot)/N. */
  gboolean (*softmax_ce) (CleaveBackend *self, const CleaveTensor *logits, const CleaveTensor *labels,
                          CleaveTensor *loss, CleaveTensor *dlogits, GError **error);

  /* SGD (PyTorch semantics): g = grad + wd*param; buf = momentum*buf + g (buf = g on first step, when
   * first_step is TRUE); param -= lr*buf. */
  gboolean (*sgd_step)  (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *buf,
                         float lr, float momentum, float weight_decay, gboolean first_step, GError **error);
  /* Adam (PyTorch semantics, L2 weight decay added to the gradient), step t >= 1. */
  gboolean (*adam_step) (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *m,
                         CleaveTensor *v, float lr, float beta1, float beta2, float eps, float weight_decay,
                         int t, GError **error);
};

/**
 * cleave_backend_cpu_new:
 *
 * Returns: (transfer full): a cpu backend with the default configuration
 */
CleaveBackend *cleave_backend_cpu_new (void);
/**
 * cleave_backend_cpu_new_with_config:
 * @config: (nullable): its configuration (%NULL: the defaults); the thread pool is process-wide and
 *   sized by the first cpu backend created
 *
 * Returns: (transfer full): a cpu backend
 */
CleaveBackend *cleave_backend_cpu_new_with_config (const CleaveBackendConfig *config);
CleaveBackend *cleave_backend_ref   (CleaveBackend *b);
void           cleave_backend_unref (CleaveBackend *b);
gboolean       cleave_backend_finish (CleaveBackend *b, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveBackend, cleave_backend_unref)

/* The counter-based hash behind dropout: uniform in [0,1) from (seed, index).
 * Backends must implement exactly this (splitmix64 of seed ^ index*golden, top 24 bits). */
static inline float
cleave_dropout_uniform (guint64 seed, guint64 index)
{
  guint64 z = seed + (index + 1) * G_GUINT64_CONSTANT (0x9E3779B97F4A7C15);
  z = (z ^ (z >> 30)) * G_GUINT64_CONSTANT (0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * G_GUINT64_CONSTANT (0x94D049BB133111EB);
  z = z ^ (z >> 31);
  return (float) (z >> 40) * (1.0f / 16777216.0f);
}

G_END_DECLS
