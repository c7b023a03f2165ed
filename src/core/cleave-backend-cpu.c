/* cleave-backend-cpu.c: the host backend — OpenBLAS GEMMs and OpenMP loops.
 *
 * Handles are 64-byte aligned host `float *`. Convolutions run one image per
 * OpenMP thread (im2col + sgemm) with OpenBLAS kept single-threaded: for the
 * small matrices of a CNN layer, splitting over images scales better than
 * letting OpenBLAS split each small GEMM, and it avoids two thread pools
 * fighting over the same cores. */
#include "cleave-backend.h"
#include "cleave-ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include <omp.h>

/* Below this many elements an OpenMP region costs more than it saves. */
#define PAR_MIN 32768

static inline float *
fp (const CleaveTensor *t)
{
  return (float *) t->buf->handle;
}

static inline gsize
numel (const CleaveTensor *t)
{
  return cleave_tensor_numel (t);
}

/* N, C, H*W of an NCHW tensor; a 2-d [N, F] tensor is N, F, 1. */
static void
nc_hw (const CleaveTensor *t, int *n, int *c, int *hw)
{
  *n = t->shape[0];
  *c = t->ndim > 1 ? t->shape[1] : 1;
  *hw = 1;
  for (int i = 2; i < t->ndim; i++)
    *hw *= t->shape[i];
}

static float *
scratch_alloc (gsize n_floats)
{
  void *p = NULL;
  if (n_floats == 0)
    n_floats = 1;
  if (posix_memalign (&p, 64, n_floats * sizeof (float)) != 0)
    return NULL;
  return p;
}

static gboolean
oom (GError **error, const char *what, gsize n_floats)
{
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY,
               "%s: cannot allocate %zu floats", what, n_floats);
  return FALSE;
}

/* ---------------------------------------------------------------- memory */

static void
cpu_destroy (CleaveBackend *self)
{
}

static gpointer
cpu_alloc (CleaveBackend *self, gsize n_floats, GError **error)
{
  float *p = scratch_alloc (n_floats);
  if (p == NULL)
    oom (error, "cpu", n_floats);
  return p;
}

static void
cpu_free (CleaveBackend *self, gpointer handle)
{
  free (handle);
}

static gboolean
cpu_upload (CleaveBackend *self, gpointer dst, gsize offset, const float *src, gsize n, GError **error)
{
  memcpy ((float *) dst + offset, src, n * sizeof (float));
  return TRUE;
}

static gboolean
cpu_download (CleaveBackend *self, gpointer src, gsize offset, float *dst, gsize n, GError **error)
{
  memcpy (dst, (const float *) src + offset, n * sizeof (float));
  return TRUE;
}

static gboolean
cpu_fill (CleaveBackend *self, CleaveTensor *t, float value, GError **error)
{
  float *p = fp (t);
  gsize n = numel (t);
  if (value == 0.0f)
    {
      memset (p, 0, n * sizeof (float));
      return TRUE;
    }
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    p[i] = value;
  return TRUE;
}

static gboolean
cpu_copy (CleaveBackend *self, CleaveTensor *dst, const CleaveTensor *src, GError **error)
{
  if (fp (dst) != fp (src))
    memmove (fp (dst), fp (src), numel (dst) * sizeof (float));
  return TRUE;
}

/* ---------------------------------------------------------- convolution */

typedef struct {
  int n, ci, h, w;       /* input */
  int co, ho, wo;        /* output */
  int k, stride, pad, groups;
  int cig, cog;          /* channels per group */
  int kk;                /* cig * k * k: rows of the column matrix */
  int howo;
  gboolean direct;       /* 1x1, stride 1, pad 0: the input already is the column matrix */
} ConvGeom;

static void
conv_geom (const CleaveTensor *x, const CleaveTensor *w, const CleaveConvParams *p, ConvGeom *g)
{
  g->n = x->shape[0];
  g->ci = x->shape[1];
  g->h = x->shape[2];
  g->w = x->shape[3];
  g->co = w->shape[0];
  g->k = w->shape[2];
  g->stride = p->stride;
  g->pad = p->pad;
  g->groups = p->groups > 0 ? p->groups : 1;
  g->ho = cleave_out_size (g->h, g->k, g->stride, g->pad);
  g->wo = cleave_out_size (g->w, g->k, g->stride, g->pad);
  g->cig = g->ci / g->groups;
  g->cog = g->co / g->groups;
  g->kk = g->cig * g->k * g->k;
  g->howo = g->ho * g->wo;
  g->direct = g->k == 1 && g->stride == 1 && g->pad == 0;
}

/* Output columns [lo, hi) whose input column ow*stride - pad + kw lies inside [0, W). */
static inline void
valid_cols (const ConvGeom *g, int kw, int *lo, int *hi)
{
  int off = kw - g->pad;
  int l = off < 0 ? (-off + g->stride - 1) / g->stride : 0;
  int h = (g->w - 1 - off) >= 0 ? (g->w - 1 - off) / g->stride + 1 : 0;
  if (h > g->wo)
    h = g->wo;
  if (l > h)
    l = h;
  *lo = l;
  *hi = h;
}

static void
im2col (const ConvGeom *g, const float *x, float *col)
{
  const int K = g->k, H = g->h, W = g->w, Ho = g->ho, Wo = g->wo, s = g->stride;

  for (int c = 0; c < g->cig; c++)
    for (int kh = 0; kh < K; kh++)
      for (int kw = 0; kw < K; kw++)
        {
          float *row = col + (gsize) ((c * K + kh) * K + kw) * g->howo;
          int lo, hi;
          valid_cols (g, kw, &lo, &hi);
          for (int oh = 0; oh < Ho; oh++)
            {
              int ih = oh * s - g->pad + kh;
              float *dst = row + (gsize) oh * Wo;
              if (ih < 0 || ih >= H)
                {
                  memset (dst, 0, Wo * sizeof (float));
                  continue;
                }
              const float *src = x + ((gsize) c * H + ih) * W + kw - g->pad;
              for (int ow = 0; ow < lo; ow++)
                dst[ow] = 0.0f;
              if (s == 1)
                memcpy (dst + lo, src + lo, (hi - lo) * sizeof (float));
              else
                for (int ow = lo; ow < hi; ow++)
                  dst[ow] = src[ow * s];
              for (int ow = hi; ow < Wo; ow++)
                dst[ow] = 0.0f;
            }
        }
}

/* Adds the column matrix back into the image: the adjoint of im2col. */
static void
col2im_add (const ConvGeom *g, const float *col, float *x)
{
  const int K = g->k, H = g->h, W = g->w, Ho = g->ho, Wo = g->wo, s = g->stride;

  for (int c = 0; c < g->cig; c++)
    for (int kh = 0; kh < K; kh++)
      for (int kw = 0; kw < K; kw++)
        {
          const float *row = col + (gsize) ((c * K + kh) * K + kw) * g->howo;
          int lo, hi;
          valid_cols (g, kw, &lo, &hi);
          for (int oh = 0; oh < Ho; oh++)
            {
              int ih = oh * s - g->pad + kh;
              if (ih < 0 || ih >= H)
                continue;
              const float *src = row + (gsize) oh * Wo;
              float *dst = x + ((gsize) c * H + ih) * W + kw - g->pad;
              if (s == 1)
                for (int ow = lo; ow < hi; ow++)
                  dst[ow] += src[ow];
              else
                for (int ow = lo; ow < hi; ow++)
                  dst[ow * s] += src[ow];
            }
        }
}

static int
n_threads_for (int work_items)
{
  int t = omp_get_max_threads ();
  if (t > work_items)
    t = work_items;
  return t < 1 ? 1 : t;
}

static gboolean
cpu_conv2d_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                    const CleaveTensor *b, CleaveTensor *y, const CleaveConvParams *p, GError **error)
{
  ConvGeom g;
  const float *X = fp (x), *Wt = fp (w), *B = b ? fp (b) : NULL;
  float *Y = fp (y);
  int nt;
  gboolean failed = FALSE;

  conv_geom (x, w, p, &g);
  nt = n_threads_for (g.n);

#pragma omp parallel num_threads (nt)
  {
    float *col = g.direct ? NULL : scratch_alloc ((gsize) g.kk * g.howo);

    if (!g.direct && col == NULL)
      {
#pragma omp atomic write
        failed = TRUE;
      }
    /* Every thread must meet the same worksharing loop, so all of them look
     * at the flag only after everyone has tried to allocate. */
#pragma omp barrier
    if (!failed)
      {
#pragma omp for schedule (static)
        for (int n = 0; n < g.n; n++)
          for (int gr = 0; gr < g.groups; gr++)
            {
              const float *xg = X + ((gsize) n * g.ci + (gsize) gr * g.cig) * g.h * g.w;
              float *yg = Y + ((gsize) n * g.co + (gsize) gr * g.cog) * g.howo;
              const float *wg = Wt + (gsize) gr * g.cog * g.kk;
              const float *cm = xg;
              float beta = 0.0f;

              if (!g.direct)
                {
                  im2col (&g, xg, col);
                  cm = col;
                }
              if (B)
                {
                  for (int c = 0; c < g.cog; c++)
                    {
                      float bv = B[gr * g.cog + c];
                      float *row = yg + (gsize) c * g.howo;
                      for (int i = 0; i < g.howo; i++)
                        row[i] = bv;
                    }
                  beta = 1.0f;
                }
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans,
                           g.cog, g.howo, g.kk, 1.0f, wg, g.kk, cm, g.howo, beta, yg, g.howo);
            }
      }
    free (col);
  }
  if (failed)
    return oom (error, "conv2d forward", (gsize) g.kk * g.howo);
  return TRUE;
}

static gboolean
cpu_conv2d_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                     const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db,
                     const CleaveConvParams *p, GError **error)
{
  ConvGeom g;
  const float *X = fp (x), *Wt = fp (w), *DY = fp (dy);
  float *DX = dx ? fp (dx) : NULL, *DW = dw ? fp (dw) : NULL;
  gsize wn = numel (w);
  int nt;
  float **dw_parts;
  gboolean failed = FALSE;

  conv_geom (x, w, p, &g);

  if (db)
    {
      float *DB = fp (db);
#pragma omp parallel for if ((gsize) g.n * g.co * g.howo > PAR_MIN)
      for (int c = 0; c < g.co; c++)
        {
          double acc = 0.0;
          for (int n = 0; n < g.n; n++)
            {
              const float *row = DY + ((gsize) n * g.co + c) * g.howo;
              float s = 0.0f;
              for (int i = 0; i < g.howo; i++)
                s += row[i];
              acc += s;
            }
          DB[c] = (float) acc;
        }
    }
  if (!DX && !DW)
    return TRUE;

  nt = n_threads_for (g.n);
  /* Each thread accumulates its own weight gradient (thread 0 straight into
   * dw); the partial sums are added up afterwards. */
  dw_parts = g_new0 (float *, nt);

#pragma omp parallel num_threads (nt)
  {
    int tid = omp_get_thread_num ();
    gboolean need_col = !g.direct;
    float *col = need_col ? scratch_alloc ((gsize) g.kk * g.howo) : NULL;
    float *mydw = NULL;

    if (DW)
      {
        mydw = tid == 0 ? DW : scratch_alloc (wn);
        if (mydw)
          memset (mydw, 0, wn * sizeof (float));
        dw_parts[tid] = mydw;
      }
    if ((need_col && col == NULL) || (DW && mydw == NULL))
      {
#pragma omp atomic write
        failed = TRUE;
      }
#pragma omp barrier
    if (!failed)
      {
#pragma omp for schedule (static)
        for (int n = 0; n < g.n; n++)
          {
            if (DX)
              memset (DX + (gsize) n * g.ci * g.h * g.w, 0, (gsize) g.ci * g.h * g.w * sizeof (float));
            for (int gr = 0; gr < g.groups; gr++)
              {
                const float *xg = X + ((gsize) n * g.ci + (gsize) gr * g.cig) * g.h * g.w;
                const float *dyg = DY + ((gsize) n * g.co + (gsize) gr * g.cog) * g.howo;
                const float *wg = Wt + (gsize) gr * g.cog * g.kk;

                if (mydw)
                  {
                    const float *cm = xg;
                    if (!g.direct)
                      {
                        im2col (&g, xg, col);
                        cm = col;
                      }
                    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans,
                                 g.cog, g.kk, g.howo, 1.0f, dyg, g.howo, cm, g.howo,
                                 1.0f, mydw + (gsize) gr * g.cog * g.kk, g.kk);
                  }
                if (DX)
                  {
                    float *dxg = DX + ((gsize) n * g.ci + (gsize) gr * g.cig) * g.h * g.w;
                    if (g.direct)
                      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans,
                                   g.cig, g.howo, g.cog, 1.0f, wg, g.kk, dyg, g.howo,
                                   0.0f, dxg, g.howo);
                    else
                      {
                        cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans,
                                     g.kk, g.howo, g.cog, 1.0f, wg, g.kk, dyg, g.howo,
                                     0.0f, col, g.howo);
                        col2im_add (&g, col, dxg);
                      }
                  }
              }
          }
      }
    free (col);
  }

  if (DW && !failed && nt > 1)
    {
#pragma omp parallel for simd if (wn > PAR_MIN)
      for (gsize i = 0; i < wn; i++)
        {
          float s = DW[i];
          for (int t = 1; t < nt; t++)
            s += dw_parts[t][i];
          DW[i] = s;
        }
    }
  for (int t = 1; t < nt; t++)
    free (dw_parts[t]);
  g_free (dw_parts);
  if (failed)
    return oom (error, "conv2d backward", (gsize) g.kk * g.howo + wn);
  return TRUE;
}

/* ------------------------------------------------------------ batchnorm */

static gboolean
cpu_batchnorm_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                       const CleaveTensor *beta, CleaveTensor *running_mean, CleaveTensor *running_var,
                       CleaveTensor *y, CleaveTensor *save_mean, CleaveTensor *save_invstd,
                       gboolean training, float momentum, float eps, GError **error)
{
  int N, C, HW;
  const float *X = fp (x), *G = fp (gamma), *Bt = fp (beta);
  float *Y = fp (y), *RM = fp (running_mean), *RV = fp (running_var);
  float *SM = save_mean ? fp (save_mean) : NULL, *SI = save_invstd ? fp (save_invstd) : NULL;
  gsize count;

  nc_hw (x, &N, &C, &HW);
  count = (gsize) N * HW;

#pragma omp parallel for schedule (dynamic) if (numel (x) > PAR_MIN)
  for (int c = 0; c < C; c++)
    {
      float mean, invstd;

      if (training)
        {
          double sum = 0.0, sq = 0.0, var;
          for (int n = 0; n < N; n++)
            {
              const float *row = X + ((gsize) n * C + c) * HW;
              float s = 0.0f;
              for (int i = 0; i < HW; i++)
                s += row[i];
              sum += s;
            }
          mean = (float) (sum / count);
          /* Two passes: the variance of centred values keeps its precision
           * when the mean is large against the spread. */
          for (int n = 0; n < N; n++)
            {
              const float *row = X + ((gsize) n * C + c) * HW;
              float s = 0.0f;
              for (int i = 0; i < HW; i++)
                {
                  float d = row[i] - mean;
                  s += d * d;
                }
              sq += s;
            }
          var = sq / count;
          invstd = (float) (1.0 / sqrt (var + eps));
          if (SM)
            SM[c] = mean;
          if (SI)
            SI[c] = invstd;
          RM[c] = (1.0f - momentum) * RM[c] + momentum * mean;
          RV[c] = (1.0f - momentum) * RV[c]
                  + momentum * (float) (count > 1 ? sq / (count - 1) : var);
        }
      else
        {
          mean = RM[c];
          invstd = 1.0f / sqrtf (RV[c] + eps);
        }

      float scale = G[c] * invstd, shift = Bt[c] - mean * scale;
      for (int n = 0; n < N; n++)
        {
          const float *row = X + ((gsize) n * C + c) * HW;
          float *out = Y + ((gsize) n * C + c) * HW;
          for (int i = 0; i < HW; i++)
            out[i] = row[i] * scale + shift;
        }
    }
  return TRUE;
}

static gboolean
cpu_batchnorm_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                        const CleaveTensor *save_mean, const CleaveTensor *save_invstd,
                        const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dgamma,
                        CleaveTensor *dbeta, gboolean training, GError **error)
{
  int N, C, HW;
  const float *X = fp (x), *G = fp (gamma), *SM = fp (save_mean), *SI = fp (save_invstd), *DY = fp (dy);
  float *DX = dx ? fp (dx) : NULL, *DG = dgamma ? fp (dgamma) : NULL, *DB = dbeta ? fp (dbeta) : NULL;
  gsize count;

  nc_hw (x, &N, &C, &HW);
  count = (gsize) N * HW;

#pragma omp parallel for schedule (dynamic) if (numel (x) > PAR_MIN)
  for (int c = 0; c < C; c++)
    {
      const float mean = SM[c], invstd = SI[c];
      double sdy = 0.0, sdyx = 0.0;

      for (int n = 0; n < N; n++)
        {
          const float *xr = X + ((gsize) n * C + c) * HW;
          const float *dr = DY + ((gsize) n * C + c) * HW;
          float a = 0.0f, bsum = 0.0f;
          for (int i = 0; i < HW; i++)
            {
              a += dr[i];
              bsum += dr[i] * (xr[i] - mean);
            }
          sdy += a;
          sdyx += bsum;
        }
      /* sum(dy * xhat) = invstd * sum(dy * (x - mean)) */
      float dbeta_c = (float) sdy, dgamma_c = (float) (sdyx * invstd);
      if (DG)
        DG[c] = dgamma_c;
      if (DB)
        DB[c] = dbeta_c;
      if (!DX)
        continue;

      float k = G[c] * invstd;
      if (training)
        {
          /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
          float mdy = dbeta_c / count, mdyx = dgamma_c / count;
          for (int n = 0; n < N; n++)
            {
              const float *xr = X + ((gsize) n * C + c) * HW;
              const float *dr = DY + ((gsize) n * C + c) * HW;
              float *out = DX + ((gsize) n * C + c) * HW;
              for (int i = 0; i < HW; i++)
                {
                  float xhat = (xr[i] - mean) * invstd;
                  out[i] = k * (dr[i] - mdy - xhat * mdyx);
                }
            }
        }
      else
        for (int n = 0; n < N; n++)
          {
            const float *dr = DY + ((gsize) n * C + c) * HW;
            float *out = DX + ((gsize) n * C + c) * HW;
            for (int i = 0; i < HW; i++)
              out[i] = k * dr[i];
          }
    }
  return TRUE;
}

/* ---------------------------------------------------------- activations */

static gboolean
cpu_relu_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  const float *X = fp (x);
  float *Y = fp (y);
  gsize n = numel (x);
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    Y[i] = X[i] > 0.0f ? X[i] : 0.0f;
  return TRUE;
}

static gboolean
cpu_relu_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  const float *Y = fp (y), *DY = fp (dy);
  float *DX = fp (dx);
  gsize n = numel (y);
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    DX[i] = Y[i] > 0.0f ? DY[i] : 0.0f;
  return TRUE;
}

static gboolean
cpu_sigmoid_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  const float *X = fp (x);
  float *Y = fp (y);
  gsize n = numel (x);
#pragma omp parallel for if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    Y[i] = 1.0f / (1.0f + expf (-X[i]));
  return TRUE;
}

static gboolean
cpu_sigmoid_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  const float *Y = fp (y), *DY = fp (dy);
  float *DX = fp (dx);
  gsize n = numel (y);
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    DX[i] = DY[i] * Y[i] * (1.0f - Y[i]);
  return TRUE;
}

/* -------------------------------------------------------------- pooling */

typedef struct {
  int planes, h, w, ho, wo, k, s, pad;
} PoolGeom;

static void
pool_geom (const CleaveTensor *in, const CleavePoolParams *p, PoolGeom *g)
{
  g->planes = in->shape[0] * in->shape[1];
  g->h = in->shape[2];
  g->w = in->shape[3];
  g->k = p->kernel;
  g->s = p->stride;
  g->pad = p->pad;
  g->ho = cleave_out_size (g->h, g->k, g->s, g->pad);
  g->wo = cleave_out_size (g->w, g->k, g->s, g->pad);
}

/* Index (within the plane) of the first maximum of the window, -1 if the
 * window lies wholly in the padding. NaN wins, as in PyTorch. */
static inline int
window_argmax (const PoolGeom *g, const float *plane, int oh, int ow)
{
  int h0 = oh * g->s - g->pad, w0 = ow * g->s - g->pad;
  int best = -1;
  float bv = -INFINITY;
  for (int kh = 0; kh < g->k; kh++)
    {
      int ih = h0 + kh;
      if (ih < 0 || ih >= g->h)
        continue;
      for (int kw = 0; kw < g->k; kw++)
        {
          int iw = w0 + kw;
          if (iw < 0 || iw >= g->w)
            continue;
          float v = plane[ih * g->w + iw];
          if (best < 0 || v > bv || isnan (v))
            {
              best = ih * g->w + iw;
              bv = v;
              if (isnan (v))
                return best;
            }
        }
    }
  return best;
}

static gboolean
cpu_maxpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  PoolGeom g;
  const float *X = fp (x);
  float *Y = fp (y);

  pool_geom (x, p, &g);
#pragma omp parallel for if (numel (x) > PAR_MIN)
  for (int pl = 0; pl < g.planes; pl++)
    {
      const float *plane = X + (gsize) pl * g.h * g.w;
      float *out = Y + (gsize) pl * g.ho * g.wo;
      if (g.k == 2 && g.s == 2 && g.pad == 0)
        {
          /* The common case, without the bounds checks. */
          for (int oh = 0; oh < g.ho; oh++)
            {
              const float *r0 = plane + (gsize) (2 * oh) * g.w, *r1 = r0 + g.w;
              for (int ow = 0; ow < g.wo; ow++)
                {
                  float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                  float m = a;
                  if (b > m || isnan (b)) m = b;
                  if (c > m || isnan (c)) m = c;
                  if (d > m || isnan (d)) m = d;
                  if (isnan (a)) m = a;
                  out[oh * g.wo + ow] = m;
                }
            }
          continue;
        }
      for (int oh = 0; oh < g.ho; oh++)
        for (int ow = 0; ow < g.wo; ow++)
          {
            int i = window_argmax (&g, plane, oh, ow);
            out[oh * g.wo + ow] = i >= 0 ? plane[i] : -INFINITY;
          }
    }
  return TRUE;
}

static gboolean
cpu_maxpool_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *dy, CleaveTensor *dx,
                      const CleavePoolParams *p, GError **error)
{
  PoolGeom g;
  const float *X = fp (x), *DY = fp (dy);
  float *DX = fp (dx);

  pool_geom (x, p, &g);
#pragma omp parallel for if (numel (x) > PAR_MIN)
  for (int pl = 0; pl < g.planes; pl++)
    {
      const float *plane = X + (gsize) pl * g.h * g.w;
      const float *d = DY + (gsize) pl * g.ho * g.wo;
      float *out = DX + (gsize) pl * g.h * g.w;
      memset (out, 0, (gsize) g.h * g.w * sizeof (float));
      for (int oh = 0; oh < g.ho; oh++)
        for (int ow = 0; ow < g.wo; ow++)
          {
            int i = window_argmax (&g, plane, oh, ow);
            if (i >= 0)
              out[i] += d[oh * g.wo + ow];
          }
    }
  return TRUE;
}

static gboolean
cpu_avgpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  PoolGeom g;
  const float *X = fp (x);
  float *Y = fp (y);

  pool_geom (x, p, &g);
  /* count_include_pad: with floor-sized outputs no window reaches past the
   * padding, so the divisor is always k*k. */
  const float inv = 1.0f / (g.k * g.k);
#pragma omp parallel for if (numel (x) > PAR_MIN)
  for (int pl = 0; pl < g.planes; pl++)
    {
      const float *plane = X + (gsize) pl * g.h * g.w;
      float *out = Y + (gsize) pl * g.ho * g.wo;
      for (int oh = 0; oh < g.ho; oh++)
        for (int ow = 0; ow < g.wo; ow++)
          {
            float s = 0.0f;
            for (int kh = 0; kh < g.k; kh++)
              {
                int ih = oh * g.s - g.pad + kh;
                if (ih < 0 || ih >= g.h)
                  continue;
                for (int kw = 0; kw < g.k; kw++)
                  {
                    int iw = ow * g.s - g.pad + kw;
                    if (iw >= 0 && iw < g.w)
                      s += plane[ih * g.w + iw];
                  }
              }
            out[oh * g.wo + ow] = s * inv;
          }
    }
  return TRUE;
}

static gboolean
cpu_avgpool_backward (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, const CleavePoolParams *p, GError **error)
{
  PoolGeom g;
  const float *DY = fp (dy);
  float *DX = fp (dx);

  pool_geom (dx, p, &g);
  const float inv = 1.0f / (g.k * g.k);
#pragma omp parallel for if (numel (dx) > PAR_MIN)
  for (int pl = 0; pl < g.planes; pl++)
    {
      const float *d = DY + (gsize) pl * g.ho * g.wo;
      float *out = DX + (gsize) pl * g.h * g.w;
      memset (out, 0, (gsize) g.h * g.w * sizeof (float));
      for (int oh = 0; oh < g.ho; oh++)
        for (int ow = 0; ow < g.wo; ow++)
          {
            float v = d[oh * g.wo + ow] * inv;
            for (int kh = 0; kh < g.k; kh++)
              {
                int ih = oh * g.s - g.pad + kh;
                if (ih < 0 || ih >= g.h)
                  continue;
                for (int kw = 0; kw < g.k; kw++)
                  {
                    int iw = ow * g.s - g.pad + kw;
                    if (iw >= 0 && iw < g.w)
                      out[ih * g.w + iw] += v;
                  }
              }
          }
    }
  return TRUE;
}

static gboolean
cpu_global_avgpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  int N, C, HW;
  const float *X = fp (x);
  float *Y = fp (y);

  nc_hw (x, &N, &C, &HW);
#pragma omp parallel for if (numel (x) > PAR_MIN)
  for (int pl = 0; pl < N * C; pl++)
    {
      const float *row = X + (gsize) pl * HW;
      float s = 0.0f;
      for (int i = 0; i < HW; i++)
        s += row[i];
      Y[pl] = s / HW;
    }
  return TRUE;
}

static gboolean
cpu_global_avgpool_backward (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  int N, C, HW;
  const float *DY = fp (dy);
  float *DX = fp (dx);

  nc_hw (dx, &N, &C, &HW);
#pragma omp parallel for if (numel (dx) > PAR_MIN)
  for (int pl = 0; pl < N * C; pl++)
    {
      float v = DY[pl] / HW;
      float *row = DX + (gsize) pl * HW;
      for (int i = 0; i < HW; i++)
        row[i] = v;
    }
  return TRUE;
}

/* --------------------------------------------------------------- linear */

/* Splits [0, total) into nearly equal chunks, one per thread. */
static inline void
chunk (int total, int parts, int idx, int *lo, int *hi)
{
  int base = total / parts, rem = total % parts;
  *lo = idx * base + MIN (idx, rem);
  *hi = *lo + base + (idx < rem ? 1 : 0);
}

static gboolean
cpu_linear_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                    const CleaveTensor *b, CleaveTensor *y, GError **error)
{
  const int N = x->shape[0], K = x->shape[1], M = w->shape[0];
  const float *X = fp (x), *Wt = fp (w), *B = b ? fp (b) : NULL;
  float *Y = fp (y);
  int nt = ((gsize) N * M * K > 1u << 18) ? n_threads_for (N) : 1;

  /* Rows of the batch are split over threads; OpenBLAS runs single-threaded. */
#pragma omp parallel num_threads (nt)
  {
    int lo, hi;
    chunk (N, omp_get_num_threads (), omp_get_thread_num (), &lo, &hi);
    if (hi > lo)
      {
        float beta = 0.0f;
        if (B)
          {
            for (int n = lo; n < hi; n++)
              memcpy (Y + (gsize) n * M, B, M * sizeof (float));
            beta = 1.0f;
          }
        cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, M, K,
                     1.0f, X + (gsize) lo * K, K, Wt, K, beta, Y + (gsize) lo * M, M);
      }
  }
  return TRUE;
}

static gboolean
cpu_linear_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                     const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db, GError **error)
{
  const int N = x->shape[0], K = x->shape[1], M = w->shape[0];
  const float *X = fp (x), *Wt = fp (w), *DY = fp (dy);
  int nt = ((gsize) N * M * K > 1u << 18) ? omp_get_max_threads () : 1;

#pragma omp parallel num_threads (nt)
  {
    int parts = omp_get_num_threads (), tid = omp_get_thread_num (), lo, hi;

    if (dx)
      {
        /* dx[N,K] = dy[N,M] w[M,K], split over batch rows */
        chunk (N, parts, tid, &lo, &hi);
        if (hi > lo)
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, hi - lo, K, M,
                       1.0f, DY + (gsize) lo * M, M, Wt, K, 0.0f, fp (dx) + (gsize) lo * K, K);
      }
    if (dw)
      {
        /* dw[M,K] = dy^T[M,N] x[N,K], split over output features */
        chunk (M, parts, tid, &lo, &hi);
        if (hi > lo)
          cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, K, N,
                       1.0f, DY + lo, M, X, K, 0.0f, fp (dw) + (gsize) lo * K, K);
      }
    if (db)
      {
        float *DB = fp (db);
        chunk (M, parts, tid, &lo, &hi);
        for (int m = lo; m < hi; m++)
          DB[m] = 0.0f;
        for (int n = 0; n < N; n++)
          {
            const float *row = DY + (gsize) n * M;
            for (int m = lo; m < hi; m++)
              DB[m] += row[m];
          }
      }
  }
  return TRUE;
}

/* ----------------------------------------------------------- elementwise */

static gboolean
cpu_dropout_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, CleaveTensor *keep,
                     float p, guint64 seed, GError **error)
{
  const float *X = fp (x);
  float *Y = fp (y), *KP = keep ? fp (keep) : NULL;
  gsize n = numel (x);
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;

#pragma omp parallel for if (n > PAR_MIN / 4)
  for (gsize i = 0; i < n; i++)
    {
      float k = cleave_dropout_uniform (seed, i) >= p ? scale : 0.0f;
      if (KP)
        KP[i] = k;
      Y[i] = X[i] * k;
    }
  return TRUE;
}

static gboolean
cpu_mul (CleaveBackend *self, const CleaveTensor *a, const CleaveTensor *b, CleaveTensor *y, GError **error)
{
  const float *A = fp (a), *B = fp (b);
  float *Y = fp (y);
  gsize n = numel (y);
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    Y[i] = A[i] * B[i];
  return TRUE;
}

static gboolean
cpu_axpby (CleaveBackend *self, float alpha, const CleaveTensor *a, float beta, const CleaveTensor *b,
           CleaveTensor *y, GError **error)
{
  const float *A = fp (a), *B = fp (b);
  float *Y = fp (y);
  gsize n = numel (y);
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    Y[i] = alpha * A[i] + beta * B[i];
  return TRUE;
}

static gboolean
channel_copy (const CleaveTensor *small, CleaveTensor *big, int offset, gboolean into_big)
{
  int N, Cs, Cb, HW;
  float *S = fp (small), *Bg = fp (big);

  nc_hw (small, &N, &Cs, &HW);
  Cb = big->ndim > 1 ? big->shape[1] : 1;
#pragma omp parallel for if (numel (small) > PAR_MIN)
  for (int n = 0; n < N; n++)
    {
      float *s = S + (gsize) n * Cs * HW;
      float *bp = Bg + ((gsize) n * Cb + offset) * HW;
      if (into_big)
        memcpy (bp, s, (gsize) Cs * HW * sizeof (float));
      else
        memcpy (s, bp, (gsize) Cs * HW * sizeof (float));
    }
  return TRUE;
}

static gboolean
cpu_channel_copy_in (CleaveBackend *self, const CleaveTensor *src, CleaveTensor *dst, int offset, GError **error)
{
  return channel_copy (src, dst, offset, TRUE);
}

static gboolean
cpu_channel_copy_out (CleaveBackend *self, const CleaveTensor *src, int offset, CleaveTensor *dst, GError **error)
{
  return channel_copy (dst, (CleaveTensor *) src, offset, FALSE);
}

static gboolean
cpu_mask_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, CleaveTensor *y, GError **error)
{
  int N, C, HW, G = m->shape[0], B;
  const float *X = fp (x), *M = fp (m);
  float *Y = fp (y);

  nc_hw (x, &N, &C, &HW);
  B = N / G;
#pragma omp parallel for collapse (2) if (numel (x) > PAR_MIN)
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++)
      {
        float mv = M[(gsize) (n / B) * C + c];
        const float *xr = X + ((gsize) n * C + c) * HW;
        float *yr = Y + ((gsize) n * C + c) * HW;
        for (int i = 0; i < HW; i++)
          yr[i] = xr[i] * mv;
      }
  return TRUE;
}

static gboolean
cpu_mask_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                   CleaveTensor *dx, CleaveTensor *dm, GError **error)
{
  int N, C, HW, G = m->shape[0], B;
  const float *X = fp (x), *M = fp (m), *DY = fp (dy);
  float *DX = dx ? fp (dx) : NULL, *DM = dm ? fp (dm) : NULL;

  nc_hw (x, &N, &C, &HW);
  B = N / G;
#pragma omp parallel for collapse (2) if (numel (x) > PAR_MIN)
  for (int g = 0; g < G; g++)
    for (int c = 0; c < C; c++)
      {
        float mv = M[(gsize) g * C + c];
        double acc = 0.0;
        for (int n = g * B; n < (g + 1) * B; n++)
          {
            const float *xr = X + ((gsize) n * C + c) * HW;
            const float *dr = DY + ((gsize) n * C + c) * HW;
            if (DM)
              {
                float s = 0.0f;
                for (int i = 0; i < HW; i++)
                  s += dr[i] * xr[i];
                acc += s;
              }
            if (DX)
              {
                float *out = DX + ((gsize) n * C + c) * HW;
                for (int i = 0; i < HW; i++)
                  out[i] = dr[i] * mv;
              }
          }
        if (DM)
          DM[(gsize) g * C + c] = (float) acc;
      }
  return TRUE;
}

static gboolean
cpu_softmax_ce (CleaveBackend *self, const CleaveTensor *logits, const CleaveTensor *labels,
                CleaveTensor *loss, CleaveTensor *dlogits, GError **error)
{
  const int N = logits->shape[0], C = logits->shape[1];
  const float *L = fp (logits), *Y = fp (labels);
  float *D = dlogits ? fp (dlogits) : NULL;
  double total = 0.0;
  int bad = -1;

  for (int n = 0; n < N; n++)
    {
      float lv = Y[n];
      if (!(lv >= 0.0f && lv < C) || lv != floorf (lv))
        {
          bad = n;
          break;
        }
    }
  if (bad >= 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "softmax cross-entropy: label %g of sample %d is not a class index in 0..%d",
                   (double) Y[bad], bad, C - 1);
      return FALSE;
    }

#pragma omp parallel for reduction (+:total) if ((gsize) N * C > PAR_MIN)
  for (int n = 0; n < N; n++)
    {
      const float *row = L + (gsize) n * C;
      int label = (int) Y[n];
      float mx = row[0];
      double sum = 0.0, lse;
      for (int c = 1; c < C; c++)
        mx = row[c] > mx ? row[c] : mx;
      for (int c = 0; c < C; c++)
        sum += exp ((double) row[c] - mx);
      lse = mx + log (sum);
      total += lse - row[label];
      if (D)
        {
          float *drow = D + (gsize) n * C;
          for (int c = 0; c < C; c++)
            drow[c] = (float) ((exp ((double) row[c] - lse) - (c == label ? 1.0 : 0.0)) / N);
        }
    }
  fp (loss)[0] = (float) (total / N);
  return TRUE;
}

/* ------------------------------------------------------------ optimisers */

static gboolean
cpu_sgd_step (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *buf,
              float lr, float momentum, float weight_decay, gboolean first_step, GError **error)
{
  float *P = fp (param), *BF = buf ? fp (buf) : NULL;
  const float *G = fp (grad);
  gsize n = numel (param);

  if (momentum == 0.0f || BF == NULL)
    {
      /* PyTorch keeps no momentum buffer without momentum. */
#pragma omp parallel for simd if (n > PAR_MIN)
      for (gsize i = 0; i < n; i++)
        P[i] -= lr * (G[i] + weight_decay * P[i]);
      return TRUE;
    }
#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    {
      float g = G[i] + weight_decay * P[i];
      float b = first_step ? g : momentum * BF[i] + g;
      BF[i] = b;
      P[i] -= lr * b;
    }
  return TRUE;
}

static gboolean
cpu_adam_step (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *m,
               CleaveTensor *v, float lr, float beta1, float beta2, float eps, float weight_decay,
               int t, GError **error)
{
  float *P = fp (param), *Mm = fp (m), *V = fp (v);
  const float *G = fp (grad);
  gsize n = numel (param);
  const double bc1 = 1.0 - pow (beta1, t), bc2 = 1.0 - pow (beta2, t);
  const float step = (float) (lr / bc1), inv_sqrt_bc2 = (float) (1.0 / sqrt (bc2));

#pragma omp parallel for simd if (n > PAR_MIN)
  for (gsize i = 0; i < n; i++)
    {
      float g = G[i] + weight_decay * P[i];
      float mi = beta1 * Mm[i] + (1.0f - beta1) * g;
      float vi = beta2 * V[i] + (1.0f - beta2) * g * g;
      Mm[i] = mi;
      V[i] = vi;
      P[i] -= step * mi / (sqrtf (vi) * inv_sqrt_bc2 + eps);
    }
  return TRUE;
}

/* ----------------------------------------------------------------- setup */

static const CleaveBackendVTable cpu_vtable = {
  .destroy = cpu_destroy,
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_upload,
  .download = cpu_download,
  .fill = cpu_fill,
  .copy = cpu_copy,
  .finish = NULL,
  .conv2d_forward = cpu_conv2d_forward,
  .conv2d_backward = cpu_conv2d_backward,
  .batchnorm_forward = cpu_batchnorm_forward,
  .batchnorm_backward = cpu_batchnorm_backward,
  .relu_forward = cpu_relu_forward,
  .relu_backward = cpu_relu_backward,
  .sigmoid_forward = cpu_sigmoid_forward,
  .sigmoid_backward = cpu_sigmoid_backward,
  .maxpool_forward = cpu_maxpool_forward,
  .maxpool_backward = cpu_maxpool_backward,
  .avgpool_forward = cpu_avgpool_forward,
  .avgpool_backward = cpu_avgpool_backward,
  .global_avgpool_forward = cpu_global_avgpool_forward,
  .global_avgpool_backward = cpu_global_avgpool_backward,
  .linear_forward = cpu_linear_forward,
  .linear_backward = cpu_linear_backward,
  .dropout_forward = cpu_dropout_forward,
  .mul = cpu_mul,
  .axpby = cpu_axpby,
  .channel_copy_in = cpu_channel_copy_in,
  .channel_copy_out = cpu_channel_copy_out,
  .mask_forward = cpu_mask_forward,
  .mask_backward = cpu_mask_backward,
  .softmax_ce = cpu_softmax_ce,
  .sgd_step = cpu_sgd_step,
  .adam_step = cpu_adam_step,
};

CleaveBackend *
cleave_backend_cpu_new (void)
{
  static gsize blas_once = 0;
  CleaveBackend *b;

  /* Parallelism comes from OpenMP over images and rows; a multi-threaded
   * OpenBLAS inside those regions would oversubscribe the cores. */
  if (g_once_init_enter (&blas_once))
    {
      openblas_set_num_threads (1);
      g_once_init_leave (&blas_once, 1);
    }

  b = g_new0 (CleaveBackend, 1);
  b->vtable = &cpu_vtable;
  b->kind = CLEAVE_BACKEND_KIND_CPU;
  b->name = g_strdup ("cpu");
  b->description = g_strdup_printf ("CPU (OpenBLAS, %d OpenMP threads)", omp_get_max_threads ());
  b->ref_count = 1;
  return b;
}
