/* cleave-backend-cpu.c: the host backend — OpenBLAS GEMMs and plain loops
 * spread over a small thread pool.
 *
 * Handles are 64-byte aligned host `float *`. Convolutions run one image per
 * chunk (im2col + sgemm) with OpenBLAS kept single-threaded: for the small
 * matrices of a CNN layer, splitting over images scales better than letting
 * OpenBLAS split each small GEMM, and it avoids two thread pools fighting
 * over the same cores. 3x3 stride-1 pad-1 convolutions with enough channels
 * run forward through Winograd F(4x4, 3x3) instead (cleave-winograd.c;
 * CleaveBackendConfig.conv_algo = im2col turns it off).
 *
 * Why not OpenMP: every OpenMP region ends in a barrier that waits for all
 * its threads, so on a busy machine (this one is shared) each op waits for
 * a descheduled helper to get a time slice — measured 5x slower than one
 * thread. Here the caller works through the chunks itself and only waits
 * for chunks a running helper has actually claimed, so a loaded machine
 * degrades to single-threaded speed, never below. */
#include "cleave-backend.h"
#include "cleave-ops.h"
#include "cleave-winograd-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>

/* Below this many elements, waking helpers costs more than it saves. */
#define PAR_GRAIN 16384

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

/* Float sums in eight independent lanes: a single running sum is a chain of
 * dependent adds the compiler may not reorder (no -ffast-math), which made
 * the batchnorm reductions several times slower than the memory allows. */
static inline float
sum_f (const float *x, gsize n)
{
  float acc[8] = { 0 };
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++)
      acc[k] += x[i + k];
  float s = 0.0f;
  for (; i < n; i++)
    s += x[i];
  for (int k = 0; k < 8; k++)
    s += acc[k];
  return s;
}

/* sum((x - m)^2) */
static inline float
sum_sq_dev (const float *x, gsize n, float m)
{
  float acc[8] = { 0 };
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++)
      {
        float d = x[i + k] - m;
        acc[k] += d * d;
      }
  float s = 0.0f;
  for (; i < n; i++)
    s += (x[i] - m) * (x[i] - m);
  for (int k = 0; k < 8; k++)
    s += acc[k];
  return s;
}

/* sum(a * (b - m)) */
static inline float
dot_dev (const float *a, const float *b, gsize n, float m)
{
  float acc[8] = { 0 };
  gsize i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; k++)
      acc[k] += a[i + k] * (b[i + k] - m);
  float s = 0.0f;
  for (; i < n; i++)
    s += a[i] * (b[i] - m);
  for (int k = 0; k < 8; k++)
    s += acc[k];
  return s;
}

/* ------------------------------------------------------------ the pool */

/* fn runs on items [lo, hi) as participant @worker (0 = the calling thread,
 * 1.. = helpers); per-participant scratch is indexed by it. Which worker
 * runs which chunk changes from run to run, so results must not depend on
 * it: a sum across chunks keeps one partial sum per chunk or per fixed
 * slice of items (never per worker) and adds them in order (see ConvJob). */
typedef void (*RangeFn) (gpointer data, gsize lo, gsize hi, int worker);

typedef struct {
  GMutex job_lock;      /* one job at a time; other callers run serially */
  GMutex wake_lock;
  GCond wake;
  int n_helpers;
  /* the current job, written under wake_lock */
  guint32 gen;
  RangeFn fn;
  gpointer data;
  gsize n, grain;
  guint32 n_chunks;
  /* (generation << 32) | next chunk index: a helper that wakes late sees a
   * different generation and cannot claim a chunk of a job it did not read */
  guint64 next;
  guint32 completed;
} Pool;

static Pool *pool;
static int pool_threads = 1;

static void
run_chunks (Pool *p, guint32 gen, RangeFn fn, gpointer data, gsize n, gsize grain, guint32 n_chunks,
            int worker)
{
  for (;;)
    {
      guint64 v = __atomic_load_n (&p->next, __ATOMIC_ACQUIRE);
      guint32 idx = (guint32) v;
      gsize lo, hi;

      if ((guint32) (v >> 32) != gen || idx >= n_chunks)
        return;
      if (!__atomic_compare_exchange_n (&p->next, &v, v + 1, FALSE, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        continue;
      lo = (gsize) idx * grain;
      hi = MIN (n, lo + grain);
      fn (data, lo, hi, worker);
      __atomic_add_fetch (&p->completed, 1, __ATOMIC_RELEASE);
    }
}

static gpointer
helper_main (gpointer arg)
{
  Pool *p = pool;
  int worker = GPOINTER_TO_INT (arg);
  guint32 seen = 0;

  for (;;)
    {
      RangeFn fn;
      gpointer data;
      gsize n, grain;
      guint32 n_chunks;

      g_mutex_lock (&p->wake_lock);
      while (p->gen == seen)
        g_cond_wait (&p->wake, &p->wake_lock);
      seen = p->gen;
      fn = p->fn;
      data = p->data;
      n = p->n;
      grain = p->grain;
      n_chunks = p->n_chunks;
      g_mutex_unlock (&p->wake_lock);
      run_chunks (p, seen, fn, data, n, grain, n_chunks, worker);
    }
  return NULL;
}

/* @t threads (0: one per processor), the caller included. */
static void
pool_init (int t)
{
  if (t <= 0)
    t = (int) g_get_num_processors ();
  t = CLAMP (t, 1, 64);
  pool_threads = t;
  if (t == 1)
    return;

  pool = g_new0 (Pool, 1);
  g_mutex_init (&pool->job_lock);
  g_mutex_init (&pool->wake_lock);
  g_cond_init (&pool->wake);
  pool->n_helpers = t - 1;
  for (int i = 1; i < t; i++)
    {
      g_autoptr (GError) error = NULL;
      GThread *th = g_thread_try_new ("cleave-cpu", helper_main, GINT_TO_POINTER (i), &error);
      if (th == NULL)
        {
          g_warning ("cpu backend: %s; running with %d threads", error->message, i);
          /* helpers already started keep their indices below i */
          pool->n_helpers = i - 1;
          pool_threads = i;
          break;
        }
      g_thread_unref (th);
    }
}

/* Participants a job can have: bounds per-worker scratch arrays. */
static inline int
n_workers (void)
{
  return pool_threads;
}

static void
parallel_for (gsize n, gsize grain, RangeFn fn, gpointer data)
{
  Pool *p = pool;
  guint32 n_chunks, gen;
  int spins = 0;

  if (n == 0)
    return;
  if (grain == 0)
    grain = 1;
  n_chunks = (guint32) MIN ((n + grain - 1) / grain, (gsize) G_MAXUINT32);
  grain = (n + n_chunks - 1) / n_chunks;
  /* Nested or concurrent jobs run on the caller alone (worker 0 scratch is
   * private to each call, so that is safe). */
  if (p == NULL || n_chunks == 1 || !g_mutex_trylock (&p->job_lock))
    {
      fn (data, 0, n, 0);
      return;
    }

  g_mutex_lock (&p->wake_lock);
  gen = ++p->gen;
  p->fn = fn;
  p->data = data;
  p->n = n;
  p->grain = grain;
  p->n_chunks = n_chunks;
  __atomic_store_n (&p->completed, 0, __ATOMIC_RELAXED);
  __atomic_store_n (&p->next, (guint64) gen << 32, __ATOMIC_RELEASE);
  g_cond_broadcast (&p->wake);
  g_mutex_unlock (&p->wake_lock);

  run_chunks (p, gen, fn, data, n, grain, n_chunks, 0);
  /* Only chunks a helper has claimed are outstanding, and that helper is
   * running them now: a short wait. */
  while (__atomic_load_n (&p->completed, __ATOMIC_ACQUIRE) != n_chunks)
    {
      if (++spins > 200)
        g_thread_yield ();
#if defined(__x86_64__) || defined(__i386__)
      else
        __builtin_ia32_pause ();
#endif
    }
  g_mutex_unlock (&p->job_lock);
}

/* Chunk size that gives each participant a few chunks to balance with. */
static inline gsize
grain_for (gsize n, gsize min_grain)
{
  gsize g = n / (gsize) (4 * n_workers ()) + 1;
  return MAX (g, min_grain);
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
cpu_copy_within (CleaveBackend *self, gpointer handle, gsize dst_offset, gsize src_offset, gsize n, GError **error)
{
  memcpy ((float *) handle + dst_offset, (const float *) handle + src_offset, n * sizeof (float));
  return TRUE;
}

static gboolean
cpu_download (CleaveBackend *self, gpointer src, gsize offset, float *dst, gsize n, GError **error)
{
  memcpy (dst, (const float *) src + offset, n * sizeof (float));
  return TRUE;
}

/* Arguments of the simple elementwise loops. */
typedef struct {
  const float *a, *b;
  float *y, *z, *w;
  float s0, s1, s2, s3, s4, s5;
  guint64 seed;
  gboolean flag;
} Ew;

static void
fill_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->s0;
}

static gboolean
cpu_fill (CleaveBackend *self, CleaveTensor *t, float value, GError **error)
{
  Ew e = { .y = fp (t), .s0 = value };
  gsize n = numel (t);
  if (value == 0.0f)
    memset (e.y, 0, n * sizeof (float));
  else
    parallel_for (n, grain_for (n, PAR_GRAIN), fill_range, &e);
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
  CleaveConvAlgo algo;   /* from the backend's configuration */
  gsize grad_chunk;      /* floats per Winograd weight-gradient chunk (0: default) */
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
  {
    const CleaveBackendConfig *cfg = &x->buf->backend->config;
    g->algo = cfg->conv_algo;
    g->grad_chunk = cfg->winograd_grad_chunk;
  }
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

/* Writes the column matrix of one image: row r = (c*K + kh)*K + kw holds
 * x[c, oh*s - pad + kh, ow*s - pad + kw] over (oh, ow), rows @ld apart. */
static void
im2col (const ConvGeom *g, const float *x, float *col, gsize ld)
{
  const int K = g->k, H = g->h, W = g->w, Ho = g->ho, Wo = g->wo, s = g->stride;

  if (g->direct)
    {
      for (int c = 0; c < g->cig; c++)
        memcpy (col + c * ld, x + (gsize) c * g->howo, g->howo * sizeof (float));
      return;
    }
  for (int c = 0; c < g->cig; c++)
    for (int kh = 0; kh < K; kh++)
      for (int kw = 0; kw < K; kw++)
        {
          float *row = col + (gsize) ((c * K + kh) * K + kw) * ld;
          const int off = kw - g->pad;
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
              /* only columns in [lo, hi) index inside the input row */
              const float *src = x + ((gsize) c * H + ih) * W;
              for (int ow = 0; ow < lo; ow++)
                dst[ow] = 0.0f;
              if (s == 1)
                memcpy (dst + lo, src + lo + off, (hi - lo) * sizeof (float));
              else
                for (int ow = lo; ow < hi; ow++)
                  dst[ow] = src[ow * s + off];
              for (int ow = hi; ow < Wo; ow++)
                dst[ow] = 0.0f;
            }
        }
}

/* Adds the column matrix back into the image: the adjoint of im2col. */
static void
col2im_add (const ConvGeom *g, const float *col, gsize ld, float *x)
{
  const int K = g->k, H = g->h, W = g->w, Ho = g->ho, Wo = g->wo, s = g->stride;

  for (int c = 0; c < g->cig; c++)
    for (int kh = 0; kh < K; kh++)
      for (int kw = 0; kw < K; kw++)
        {
          const float *row = col + (gsize) ((c * K + kh) * K + kw) * ld;
          const int off = kw - g->pad;
          int lo, hi;
          valid_cols (g, kw, &lo, &hi);
          for (int oh = 0; oh < Ho; oh++)
            {
              int ih = oh * s - g->pad + kh;
              if (ih < 0 || ih >= H)
                continue;
              const float *src = row + (gsize) oh * Wo;
              float *dst = x + ((gsize) c * H + ih) * W;
              if (s == 1)
                for (int ow = lo; ow < hi; ow++)
                  dst[ow + off] += src[ow];
              else
                for (int ow = lo; ow < hi; ow++)
                  dst[ow * s + off] += src[ow];
            }
        }
}

/* Images are handled in blocks: one GEMM per block and group whose column
 * count is block * Ho*Wo. Deep layers have tiny feature maps (7x7, 2x2),
 * where one image per GEMM would re-read the whole weight matrix for a few
 * columns; a block of images turns that into a real matrix product. */
typedef struct {
  ConvGeom g;
  int block;            /* images per chunk */
  const float *x, *w, *b, *dy;
  float *y, *dx, *dw;
  float **col;          /* per worker: [kk, block*howo] */
  float **tmp;          /* per worker: [cog, block*howo] */
  /* backward: the blocks are cut into n_slices runs of consecutive blocks
   * that depend only on the sizes and the thread count; slice s sums its
   * blocks' weight gradients, in block order, into dw_part[s] (slice 0 into
   * dw itself), and the slices are then added in slice order. So the sum
   * is the same whichever thread ran which slice. */
  int n_slices;
  float **dw_part;
  gsize wn;
  gboolean relu;        /* forward: max (0, ·) after the bias (conv2d_bn_forward) */
  gint failed;
} ConvJob;

static int
conv_block (const ConvGeom *g)
{
  /* aim for >= 512 GEMM columns, keep a chunk for each participant, and
   * bound the column buffer (~32 MB) */
  int b = 512 / g->howo;
  int per_worker = (g->n + n_workers () - 1) / n_workers ();
  gsize limit = (8u << 20) / ((gsize) g->kk * g->howo + 1);

  b = MIN (b, per_worker);
  b = (int) MIN ((gsize) b, limit);
  return MAX (b, 1);
}

static float *
worker_buf (float **slots, int worker, gsize n, gboolean zero, gint *failed)
{
  if (slots[worker] == NULL)
    {
      slots[worker] = scratch_alloc (n);
      if (slots[worker] == NULL)
        {
          g_atomic_int_set (failed, 1);
          return NULL;
        }
      if (zero)
        memset (slots[worker], 0, n * sizeof (float));
    }
  return slots[worker];
}

static void
conv_forward_range (gpointer d, gsize lo, gsize hi, int worker)
{
  ConvJob *j = d;
  const ConvGeom *g = &j->g;
  const gsize hw = g->howo, cols_max = (gsize) j->block * hw;
  float *col = NULL, *tmp = NULL;

  for (gsize blk = lo; blk < hi; blk++)
    {
      const gsize n0 = blk * j->block, nb = MIN ((gsize) j->block, (gsize) g->n - n0), cols = nb * hw;

      for (int gr = 0; gr < g->groups; gr++)
        {
          const float *wg = j->w + (gsize) gr * g->cog * g->kk;
          const float *cm;

          if (nb == 1 && g->direct)
            cm = j->x + (n0 * g->ci + (gsize) gr * g->cig) * hw;
          else
            {
              if (col == NULL
                  && (col = worker_buf (j->col, worker, (gsize) g->kk * cols_max, FALSE, &j->failed)) == NULL)
                return;
              for (gsize i = 0; i < nb; i++)
                im2col (g, j->x + ((n0 + i) * g->ci + (gsize) gr * g->cig) * g->h * g->w, col + i * hw, cols);
              cm = col;
            }

          if (nb == 1)
            {
              float *yg = j->y + (n0 * g->co + (gsize) gr * g->cog) * hw;
              float beta = 0.0f;
              if (j->b)
                {
                  for (int c = 0; c < g->cog; c++)
                    for (gsize i = 0; i < hw; i++)
                      yg[c * hw + i] = j->b[gr * g->cog + c];
                  beta = 1.0f;
                }
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans,
                           g->cog, (int) hw, g->kk, 1.0f, wg, g->kk, cm, (int) hw, beta, yg, (int) hw);
              if (j->relu)
                for (gsize i = 0; i < (gsize) g->cog * hw; i++)
                  yg[i] = yg[i] > 0.0f ? yg[i] : 0.0f;
              continue;
            }

          if (tmp == NULL
              && (tmp = worker_buf (j->tmp, worker, (gsize) g->cog * cols_max, FALSE, &j->failed)) == NULL)
            return;
          cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans,
                       g->cog, (int) cols, g->kk, 1.0f, wg, g->kk, cm, (int) cols, 0.0f, tmp, (int) cols);
          for (gsize i = 0; i < nb; i++)
            for (int c = 0; c < g->cog; c++)
              {
                const float *src = tmp + (gsize) c * cols + i * hw;
                float *dst = j->y + ((n0 + i) * g->co + (gsize) gr * g->cog + c) * hw;
                const float bv = j->b ? j->b[gr * g->cog + c] : 0.0f;
                if (j->relu)
                  for (gsize k = 0; k < hw; k++)
                    dst[k] = src[k] + bv > 0.0f ? src[k] + bv : 0.0f;
                else
                  for (gsize k = 0; k < hw; k++)
                    dst[k] = src[k] + bv;
              }
        }
    }
}

static void
free_n_slots (float **slots, int from, int n)
{
  for (int i = from; i < n; i++)
    free (slots[i]);
  g_free (slots);
}

static void
free_slots (float **slots, int from)
{
  free_n_slots (slots, from, n_workers ());
}

/* 3x3 stride-1 pad-1 convolutions go through Winograd F(4x4, 3x3): see
 * cleave-winograd.c for why and what it costs in accuracy. */
typedef struct {
  CleaveWinograd *wg;
  const float *x, *w;
  float *y;
  float **scratch;      /* per worker */
  gsize scratch_n;
  gint failed;
} WinoJob;

static void
wino_forward_range (gpointer d, gsize lo, gsize hi, int worker)
{
  WinoJob *j = d;
  float *s = worker_buf (j->scratch, worker, j->scratch_n, FALSE, &j->failed);

  if (s)
    cleave_winograd_forward_blocks (j->wg, j->x, j->y, lo, hi, s);
}

static void
wino_prepare_range (gpointer d, gsize lo, gsize hi, int worker)
{
  WinoJob *j = d;
  cleave_winograd_prepare_range (j->wg, j->w, lo, hi);
}

static gboolean
wino_forward (const ConvGeom *g, const float *x, const float *w, const float *b, float *y, gboolean relu,
              GError **error)
{
  WinoJob j = { .x = x, .w = w, .y = y };
  gsize n_blocks;

  j.wg = cleave_winograd_new (g->n, g->ci, g->h, g->w, g->co, g->groups, b);
  if (j.wg == NULL)
    return oom (error, "conv2d forward (winograd weights)", (gsize) 36 * g->co * g->cig);
  cleave_winograd_set_relu (j.wg, relu);
  /* once per call: the weights change between training steps */
  n_blocks = cleave_winograd_n_panels (j.wg);
  parallel_for (n_blocks, grain_for (n_blocks, 1), wino_prepare_range, &j);
  n_blocks = cleave_winograd_n_blocks (j.wg);
  j.scratch_n = cleave_winograd_scratch_floats (j.wg);
  j.scratch = g_new0 (float *, n_workers ());
  parallel_for (n_blocks, grain_for (n_blocks, 1), wino_forward_range, &j);
  free_slots (j.scratch, 0);
  cleave_winograd_free (j.wg);
  if (j.failed)
    return oom (error, "conv2d forward (winograd)", j.scratch_n);
  return TRUE;
}

/* A 1x1 feature map under a kernel centred by its padding (the last layers
 * of SimCNN on 28x28 inputs): only the centre tap meets the input, so the
 * convolution is one GEMM over the batch with the centre weights, where
 * im2col would build k*k rows of which all but one are padding. */
static gboolean
single_pixel (const ConvGeom *g)
{
  return g->h == 1 && g->w == 1 && g->ho == 1 && g->wo == 1 && g->groups == 1 && g->k % 2 == 1
         && g->pad == g->k / 2;
}

/* [co, ci] centre taps of w [co, ci, k, k] */
static float *
centre_taps (const ConvGeom *g, const float *w)
{
  const gsize kk = (gsize) g->k * g->k, mid = kk / 2;
  float *c = scratch_alloc ((gsize) g->co * g->ci);

  if (c)
    for (gsize i = 0; i < (gsize) g->co * g->ci; i++)
      c[i] = w[i * kk + mid];
  return c;
}

static gboolean
single_pixel_forward (const ConvGeom *g, const float *x, const float *w, const float *b, float *y, gboolean relu,
                      GError **error)
{
  float *wc = centre_taps (g, w);

  if (wc == NULL)
    return oom (error, "conv2d forward (centre taps)", (gsize) g->co * g->ci);
  for (int n = 0; n < g->n; n++)
    for (int o = 0; o < g->co; o++)
      y[(gsize) n * g->co + o] = b ? b[o] : 0.0f;
  /* y [n, co] += x [n, ci] wc^T */
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, g->n, g->co, g->ci, 1.0f, x, g->ci, wc, g->ci, 1.0f, y,
               g->co);
  if (relu)
    for (gsize i = 0; i < (gsize) g->n * g->co; i++)
      y[i] = y[i] > 0.0f ? y[i] : 0.0f;
  free (wc);
  return TRUE;
}

static gboolean
single_pixel_backward (const ConvGeom *g, const float *x, const float *w, const float *dy, float *dx, float *dw,
                       GError **error)
{
  const gsize kk = (gsize) g->k * g->k, nw = (gsize) g->co * g->ci;

  if (dx)
    {
      float *wc = centre_taps (g, w);
      if (wc == NULL)
        return oom (error, "conv2d backward (centre taps)", nw);
      /* dx [n, ci] = dy [n, co] wc */
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, g->n, g->ci, g->co, 1.0f, dy, g->co, wc, g->ci, 0.0f,
                   dx, g->ci);
      free (wc);
    }
  if (dw)
    {
      float *dc = scratch_alloc (nw);
      if (dc == NULL)
        return oom (error, "conv2d backward (centre taps)", nw);
      /* dwc [co, ci] = dy^T x; the other taps only ever saw padding */
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, g->co, g->ci, g->n, 1.0f, dy, g->co, x, g->ci, 0.0f,
                   dc, g->ci);
      memset (dw, 0, nw * kk * sizeof (float));
      for (gsize i = 0; i < nw; i++)
        dw[i * kk + kk / 2] = dc[i];
      free (dc);
    }
  return TRUE;
}

/* The forward convolution on host arrays (weights and bias may be folded
 * copies, see cpu_conv2d_bn_forward); @relu clamps the outputs at 0. */
static gboolean
conv_forward_host (const CleaveTensor *x, const CleaveTensor *w, const CleaveConvParams *p, const float *wv,
                   const float *bv, float *y, gboolean relu, GError **error)
{
  ConvJob j = { .x = fp (x), .w = wv, .b = bv, .y = y, .relu = relu };
  gsize n_blocks;

  conv_geom (x, w, p, &j.g);
  if (cleave_winograd_use (j.g.algo, j.g.ci, j.g.h, j.g.w, j.g.co, w->shape[2], w->shape[3],
                           j.g.stride, j.g.pad, j.g.groups))
    return wino_forward (&j.g, j.x, j.w, j.b, j.y, relu, error);
  if (single_pixel (&j.g) && j.g.algo != CLEAVE_CONV_ALGO_IM2COL)
    return single_pixel_forward (&j.g, j.x, j.w, j.b, j.y, relu, error);
  j.block = conv_block (&j.g);
  n_blocks = (j.g.n + j.block - 1) / j.block;
  j.col = g_new0 (float *, n_workers ());
  j.tmp = g_new0 (float *, n_workers ());
  parallel_for (n_blocks, 1, conv_forward_range, &j);
  free_slots (j.col, 0);
  free_slots (j.tmp, 0);
  if (j.failed)
    return oom (error, "conv2d forward", (gsize) j.g.kk * j.g.howo * j.block);
  return TRUE;
}

static gboolean
cpu_conv2d_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                    const CleaveTensor *b, CleaveTensor *y, const CleaveConvParams *p, GError **error)
{
  return conv_forward_host (x, w, p, fp (w), b ? fp (b) : NULL, fp (y), FALSE, error);
}

/* Inference: the batchnorm folded into a copy of the weights and bias, so
 * the output is written once instead of three times (conv, batchnorm,
 * relu), each a full pass over memory; measured on the benchmark CNN the
 * separate batchnorm and relu passes took about 17% of inference. The
 * folding costs one pass over the weights. */
static gboolean
cpu_conv2d_bn_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w, const CleaveTensor *b,
                       const CleaveTensor *gamma, const CleaveTensor *beta, const CleaveTensor *running_mean,
                       const CleaveTensor *running_var, float eps, CleaveTensor *y, const CleaveConvParams *p,
                       GError **error)
{
  const int co = w->shape[0];
  const gsize per = numel (w) / co;
  const float *wv = fp (w), *bv = b ? fp (b) : NULL, *ga = fp (gamma), *be = fp (beta);
  const float *mu = fp (running_mean), *var = fp (running_var);
  float *wf = scratch_alloc (numel (w)), *bf = scratch_alloc (co);
  gboolean ok;

  if (wf == NULL || bf == NULL)
    {
      free (wf);
      free (bf);
      return oom (error, "conv2d+batchnorm forward (folded weights)", numel (w) + co);
    }
  for (int c = 0; c < co; c++)
    {
      const float scale = ga[c] / sqrtf (var[c] + eps);
      for (gsize k = 0; k < per; k++)
        wf[c * per + k] = wv[c * per + k] * scale;
      bf[c] = ((bv ? bv[c] : 0.0f) - mu[c]) * scale + be[c];
    }
  ok = conv_forward_host (x, w, p, wf, bf, fp (y), p->relu, error);
  free (wf);
  free (bf);
  return ok;
}

/* Blocks [first, end) of the backward pass; their weight gradients are
 * added to @mydw (NULL: none) in block order. */
static void
conv_backward_blocks (ConvJob *j, gsize first, gsize end, float *mydw, int worker)
{
  const ConvGeom *g = &j->g;
  const gsize hw = g->howo, cols_max = (gsize) j->block * hw, in_sz = (gsize) g->ci * g->h * g->w;
  float *col, *dyb = NULL;

  if ((col = worker_buf (j->col, worker, (gsize) g->kk * cols_max, FALSE, &j->failed)) == NULL)
    return;

  for (gsize blk = first; blk < end; blk++)
    {
      const gsize n0 = blk * j->block, nb = MIN ((gsize) j->block, (gsize) g->n - n0), cols = nb * hw;

      if (j->dx)
        memset (j->dx + n0 * in_sz, 0, nb * in_sz * sizeof (float));
      for (int gr = 0; gr < g->groups; gr++)
        {
          const float *wg = j->w + (gsize) gr * g->cog * g->kk;
          const float *dyg;

          /* the block's output gradient as one [cog, nb*howo] matrix */
          if (nb == 1)
            dyg = j->dy + (n0 * g->co + (gsize) gr * g->cog) * hw;
          else
            {
              if (dyb == NULL
                  && (dyb = worker_buf (j->tmp, worker, (gsize) g->cog * cols_max, FALSE, &j->failed)) == NULL)
                return;
              for (gsize i = 0; i < nb; i++)
                for (int c = 0; c < g->cog; c++)
                  memcpy (dyb + (gsize) c * cols + i * hw,
                          j->dy + ((n0 + i) * g->co + (gsize) gr * g->cog + c) * hw, hw * sizeof (float));
              dyg = dyb;
            }

          if (mydw)
            {
              const float *cm;
              if (nb == 1 && g->direct)
                cm = j->x + (n0 * g->ci + (gsize) gr * g->cig) * hw;
              else
                {
                  for (gsize i = 0; i < nb; i++)
                    im2col (g, j->x + ((n0 + i) * g->ci + (gsize) gr * g->cig) * g->h * g->w,
                            col + i * hw, cols);
                  cm = col;
                }
              cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans,
                           g->cog, g->kk, (int) cols, 1.0f, dyg, (int) cols, cm, (int) cols,
                           1.0f, mydw + (gsize) gr * g->cog * g->kk, g->kk);
            }
          if (j->dx)
            {
              if (nb == 1 && g->direct)
                {
                  float *dxg = j->dx + (n0 * g->ci + (gsize) gr * g->cig) * hw;
                  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans,
                               g->cig, (int) hw, g->cog, 1.0f, wg, g->kk, dyg, (int) hw, 0.0f, dxg, (int) hw);
                  continue;
                }
              /* col is free again: reuse it for the column gradient */
              cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans,
                           g->kk, (int) cols, g->cog, 1.0f, wg, g->kk, dyg, (int) cols, 0.0f, col, (int) cols);
              for (gsize i = 0; i < nb; i++)
                {
                  float *dxg = j->dx + ((n0 + i) * g->ci + (gsize) gr * g->cig) * g->h * g->w;
                  if (g->direct)
                    for (int c = 0; c < g->cig; c++)
                      memcpy (dxg + (gsize) c * hw, col + (gsize) c * cols + i * hw, hw * sizeof (float));
                  else
                    col2im_add (g, col + i * hw, cols, dxg);
                }
            }
        }
    }
}

/* The blocks of slice @s: [*first, *end). */
static void
slice_blocks (const ConvJob *j, gsize s, gsize *first, gsize *end)
{
  const gsize n_blocks = ((gsize) j->g.n + j->block - 1) / j->block;
  *first = s * n_blocks / j->n_slices;
  *end = (s + 1) * n_blocks / j->n_slices;
}

static void
conv_backward_range (gpointer d, gsize lo, gsize hi, int worker)
{
  ConvJob *j = d;

  for (gsize s = lo; s < hi; s++)
    {
      float *mydw = NULL;
      gsize first, end;

      if (j->dw && (mydw = worker_buf (j->dw_part, (int) s, j->wn, TRUE, &j->failed)) == NULL)
        return;
      slice_blocks (j, s, &first, &end);
      conv_backward_blocks (j, first, end, mydw, worker);
    }
}

static void
conv_bias_grad_range (gpointer d, gsize lo, gsize hi, int worker)
{
  ConvJob *j = d;
  const ConvGeom *g = &j->g;
  float *db = j->y;     /* the bias gradient travels in the output slot */

  for (gsize c = lo; c < hi; c++)
    {
      double acc = 0.0;
      for (int n = 0; n < g->n; n++)
        acc += sum_f (j->dy + ((gsize) n * g->co + c) * g->howo, g->howo);
      db[c] = (float) acc;
    }
}

static void
dw_reduce_range (gpointer d, gsize lo, gsize hi, int worker)
{
  ConvJob *j = d;
  for (int t = 1; t < j->n_slices; t++)
    if (j->dw_part[t])
      for (gsize i = lo; i < hi; i++)
        j->dw[i] += j->dw_part[t][i];
}

/* The input gradient of a 3x3 stride-1 pad-1 convolution is itself one:
 * the output gradient convolved with the weights turned by 180 degrees and
 * with input and output channels swapped. So it runs through Winograd as
 * well; through im2col it is the larger of the two backward GEMMs plus a
 * col2im scatter. */
static gboolean
wino_backward_data_applies (const ConvGeom *g)
{
  return g->k == 3 && g->stride == 1 && g->pad == 1
         && cleave_winograd_use (g->algo, g->co, g->h, g->w, g->ci, 3, 3, 1, 1, g->groups);
}

static gboolean
wino_backward_data (const ConvGeom *g, const float *w, const float *dy, float *dx, GError **error)
{
  ConvGeom t = *g;
  float *wt = scratch_alloc ((gsize) g->co * g->cig * 9);
  gboolean ok;

  if (wt == NULL)
    return oom (error, "conv2d backward (turned weights)", (gsize) g->co * g->cig * 9);
  /* w [gr*cog + o][i][t] -> wt [gr*cig + i][o][8 - t] */
  for (int gr = 0; gr < g->groups; gr++)
    for (int o = 0; o < g->cog; o++)
      for (int i = 0; i < g->cig; i++)
        {
          const float *src = w + (((gsize) gr * g->cog + o) * g->cig + i) * 9;
          float *dst = wt + (((gsize) gr * g->cig + i) * g->cog + o) * 9;
          for (int k = 0; k < 9; k++)
            dst[8 - k] = src[k];
        }
  t.ci = g->co;
  t.co = g->ci;
  t.cig = g->cog;
  t.cog = g->cig;
  t.kk = t.cig * 9;
  ok = wino_forward (&t, dy, wt, NULL, dx, FALSE, error);
  free (wt);
  return ok;
}

typedef struct {
  CleaveWinogradGrad *gr;
  const float *x, *dy;
  float *dw;
  float **scratch;      /* per worker */
  gsize scratch_n, n_cols;
  gboolean accumulate;
  gint failed;
} WinoGradJob;

static void
wgrad_transform_range (gpointer d, gsize lo, gsize hi, int worker)
{
  WinoGradJob *j = d;
  float *s = worker_buf (j->scratch, worker, j->scratch_n, FALSE, &j->failed);

  if (s)
    cleave_winograd_grad_transform (j->gr, j->x, j->dy, lo, hi, s);
}

static void
wgrad_products_range (gpointer d, gsize lo, gsize hi, int worker)
{
  WinoGradJob *j = d;
  cleave_winograd_grad_products (j->gr, j->n_cols, j->accumulate, lo, hi);
}

static void
wgrad_finish_range (gpointer d, gsize lo, gsize hi, int worker)
{
  WinoGradJob *j = d;
  cleave_winograd_grad_finish (j->gr, j->dw, lo, hi);
}

/* The weight gradient of a 3x3 stride-1 pad-1 convolution through
 * Winograd (cleave-winograd.c): measured in CIFAR-10 training, im2col's
 * expanded copy of the input and its GEMM took a third of the step. */
static gboolean
wino_backward_weights (const ConvGeom *g, const float *x, const float *dy, float *dw, GError **error)
{
  WinoGradJob j = { .x = x, .dy = dy, .dw = dw };
  gsize n_chunks, n_products;

  j.gr = cleave_winograd_grad_new (g->n, g->ci, g->h, g->w, g->co, g->groups, g->grad_chunk);
  if (j.gr == NULL)
    return oom (error, "conv2d backward (winograd weight gradient)", (gsize) 36 * (g->ci + g->co) * 32);
  j.scratch_n = cleave_winograd_grad_scratch_floats (j.gr);
  j.scratch = g_new0 (float *, n_workers ());
  n_chunks = cleave_winograd_grad_n_chunks (j.gr);
  n_products = cleave_winograd_grad_n_products (j.gr);
  for (gsize k = 0; k < n_chunks && !j.failed; k++)
    {
      gsize blocks = cleave_winograd_grad_set_chunk (j.gr, k);
      parallel_for (blocks, grain_for (blocks, 1), wgrad_transform_range, &j);
      if (j.failed)
        break;
      j.n_cols = blocks * 32;
      j.accumulate = k > 0;
      parallel_for (n_products, grain_for (n_products, 1), wgrad_products_range, &j);
    }
  if (!j.failed)
    parallel_for (g->co, grain_for (g->co, 1), wgrad_finish_range, &j);
  free_slots (j.scratch, 0);
  cleave_winograd_grad_free (j.gr);
  if (j.failed)
    return oom (error, "conv2d backward (winograd weight gradient)", j.scratch_n);
  return TRUE;
}

static gboolean
cpu_conv2d_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                     const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db,
                     const CleaveConvParams *p, GError **error)
{
  ConvJob j = { .x = fp (x), .w = fp (w), .dy = fp (dy), .dx = dx ? fp (dx) : NULL,
                .dw = dw ? fp (dw) : NULL, .wn = numel (w) };
  gsize n_blocks;

  conv_geom (x, w, p, &j.g);
  if ((j.dx || j.dw) && single_pixel (&j.g) && j.g.algo != CLEAVE_CONV_ALGO_IM2COL)
    {
      if (!single_pixel_backward (&j.g, j.x, j.w, j.dy, j.dx, j.dw, error))
        return FALSE;
      j.dx = j.dw = NULL;
    }
  if (j.dx && wino_backward_data_applies (&j.g))
    {
      if (!wino_backward_data (&j.g, j.w, j.dy, j.dx, error))
        return FALSE;
      j.dx = NULL;      /* done; the columns below serve the weight gradient only */
    }
  if (j.dw && wino_backward_data_applies (&j.g))
    {
      if (!wino_backward_weights (&j.g, j.x, j.dy, j.dw, error))
        return FALSE;
      j.dw = NULL;
    }
  if (db)
    {
      ConvJob bj = j;
      bj.y = fp (db);
      parallel_for (j.g.co, grain_for (j.g.co, 1), conv_bias_grad_range, &bj);
    }
  if (!j.dx && !j.dw)
    return TRUE;

  /* With a weight gradient, one slice of blocks per participant, each
   * summing into its own buffer (ConvJob); without, one block per item. */
  j.block = conv_block (&j.g);
  n_blocks = (j.g.n + j.block - 1) / j.block;
  j.n_slices = j.dw ? (int) MIN (n_blocks, (gsize) n_workers ()) : (int) n_blocks;
  j.col = g_new0 (float *, n_workers ());
  j.tmp = g_new0 (float *, n_workers ());
  j.dw_part = g_new0 (float *, j.n_slices);
  if (j.dw)
    {
      memset (j.dw, 0, j.wn * sizeof (float));
      j.dw_part[0] = j.dw;
    }
  parallel_for (j.n_slices, 1, conv_backward_range, &j);
  if (j.dw && !j.failed)
    parallel_for (j.wn, grain_for (j.wn, PAR_GRAIN), dw_reduce_range, &j);
  free_slots (j.col, 0);
  free_slots (j.tmp, 0);
  free_n_slots (j.dw_part, 1, j.n_slices);
  if (j.failed)
    return oom (error, "conv2d backward", (gsize) j.g.kk * j.g.howo * j.block + j.wn);
  return TRUE;
}

/* ------------------------------------------------------------ batchnorm */

typedef struct {
  int N, C, HW;
  const float *x, *gamma, *beta, *dy, *mean_in, *invstd_in;
  float *y, *rm, *rv, *save_mean, *save_invstd, *dx, *dgamma, *dbeta;
  gboolean training;
  float momentum, eps;
} BnJob;

static void
bn_forward_range (gpointer d, gsize lo, gsize hi, int worker)
{
  BnJob *j = d;
  const gsize count = (gsize) j->N * j->HW;

  for (gsize c = lo; c < hi; c++)
    {
      float mean, invstd;

      if (j->training)
        {
          double sum = 0.0, sq = 0.0, var;
          for (int n = 0; n < j->N; n++)
            sum += sum_f (j->x + ((gsize) n * j->C + c) * j->HW, j->HW);
          mean = (float) (sum / count);
          /* Two passes: the variance of centred values keeps its precision
           * when the mean is large against the spread. */
          for (int n = 0; n < j->N; n++)
            sq += sum_sq_dev (j->x + ((gsize) n * j->C + c) * j->HW, j->HW, mean);
          var = sq / count;
          invstd = (float) (1.0 / sqrt (var + j->eps));
          if (j->save_mean)
            j->save_mean[c] = mean;
          if (j->save_invstd)
            j->save_invstd[c] = invstd;
          j->rm[c] = (1.0f - j->momentum) * j->rm[c] + j->momentum * mean;
          j->rv[c] = (1.0f - j->momentum) * j->rv[c]
                     + j->momentum * (float) (count > 1 ? sq / (count - 1) : var);
        }
      else
        {
          mean = j->rm[c];
          invstd = 1.0f / sqrtf (j->rv[c] + j->eps);
        }

      float scale = j->gamma[c] * invstd, shift = j->beta[c] - mean * scale;
      for (int n = 0; n < j->N; n++)
        {
          const float *row = j->x + ((gsize) n * j->C + c) * j->HW;
          float *out = j->y + ((gsize) n * j->C + c) * j->HW;
          for (int i = 0; i < j->HW; i++)
            out[i] = row[i] * scale + shift;
        }
    }
}

static gboolean
cpu_batchnorm_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                       const CleaveTensor *beta, CleaveTensor *running_mean, CleaveTensor *running_var,
                       CleaveTensor *y, CleaveTensor *save_mean, CleaveTensor *save_invstd,
                       gboolean training, float momentum, float eps, GError **error)
{
  BnJob j = { .x = fp (x), .gamma = fp (gamma), .beta = fp (beta), .rm = fp (running_mean),
              .rv = fp (running_var), .y = fp (y), .save_mean = save_mean ? fp (save_mean) : NULL,
              .save_invstd = save_invstd ? fp (save_invstd) : NULL, .training = training,
              .momentum = momentum, .eps = eps };

  nc_hw (x, &j.N, &j.C, &j.HW);
  parallel_for (j.C, numel (x) > PAR_GRAIN ? 1 : j.C, bn_forward_range, &j);
  return TRUE;
}

static void
bn_backward_range (gpointer d, gsize lo, gsize hi, int worker)
{
  BnJob *j = d;
  const gsize count = (gsize) j->N * j->HW;

  for (gsize c = lo; c < hi; c++)
    {
      const float mean = j->mean_in[c], invstd = j->invstd_in[c];
      double sdy = 0.0, sdyx = 0.0;

      /* eval mode with the affine parameters frozen (the splitters' search)
       * needs no sums: skip a pass over x and dy */
      for (int n = 0; n < j->N && (j->training || j->dgamma || j->dbeta); n++)
        {
          const float *xr = j->x + ((gsize) n * j->C + c) * j->HW;
          const float *dr = j->dy + ((gsize) n * j->C + c) * j->HW;
          sdy += sum_f (dr, j->HW);
          sdyx += dot_dev (dr, xr, j->HW, mean);
        }
      /* sum(dy * xhat) = invstd * sum(dy * (x - mean)) */
      float dbeta_c = (float) sdy, dgamma_c = (float) (sdyx * invstd);
      if (j->dgamma)
        j->dgamma[c] = dgamma_c;
      if (j->dbeta)
        j->dbeta[c] = dbeta_c;
      if (!j->dx)
        continue;

      float k = j->gamma[c] * invstd;
      if (j->training)
        {
          /* dx = gamma*invstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
          float mdy = dbeta_c / count, mdyx = dgamma_c / count;
          for (int n = 0; n < j->N; n++)
            {
              const float *xr = j->x + ((gsize) n * j->C + c) * j->HW;
              const float *dr = j->dy + ((gsize) n * j->C + c) * j->HW;
              float *out = j->dx + ((gsize) n * j->C + c) * j->HW;
              for (int i = 0; i < j->HW; i++)
                {
                  float xhat = (xr[i] - mean) * invstd;
                  out[i] = k * (dr[i] - mdy - xhat * mdyx);
                }
            }
        }
      else
        for (int n = 0; n < j->N; n++)
          {
            const float *dr = j->dy + ((gsize) n * j->C + c) * j->HW;
            float *out = j->dx + ((gsize) n * j->C + c) * j->HW;
            for (int i = 0; i < j->HW; i++)
              out[i] = k * dr[i];
          }
    }
}

static gboolean
cpu_batchnorm_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *gamma,
                        const CleaveTensor *save_mean, const CleaveTensor *save_invstd,
                        const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dgamma,
                        CleaveTensor *dbeta, gboolean training, GError **error)
{
  BnJob j = { .x = fp (x), .gamma = fp (gamma), .mean_in = fp (save_mean), .invstd_in = fp (save_invstd),
              .dy = fp (dy), .dx = dx ? fp (dx) : NULL, .dgamma = dgamma ? fp (dgamma) : NULL,
              .dbeta = dbeta ? fp (dbeta) : NULL, .training = training };

  nc_hw (x, &j.N, &j.C, &j.HW);
  parallel_for (j.C, numel (x) > PAR_GRAIN ? 1 : j.C, bn_backward_range, &j);
  return TRUE;
}

/* ---------------------------------------------------------- activations */

static void
relu_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->a[i] > 0.0f ? e->a[i] : 0.0f;
}

static void
relu_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->a[i] > 0.0f ? e->b[i] : 0.0f;
}

static void
sigmoid_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = 1.0f / (1.0f + expf (-e->a[i]));
}

static void
sigmoid_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->b[i] * e->a[i] * (1.0f - e->a[i]);
}

static void
run_ew (RangeFn fn, Ew *e, gsize n)
{
  parallel_for (n, grain_for (n, PAR_GRAIN), fn, e);
}

static gboolean
cpu_relu_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  Ew e = { .a = fp (x), .y = fp (y) };
  run_ew (relu_fwd_range, &e, numel (x));
  return TRUE;
}

static gboolean
cpu_relu_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  Ew e = { .a = fp (y), .b = fp (dy), .y = fp (dx) };
  run_ew (relu_bwd_range, &e, numel (y));
  return TRUE;
}

static gboolean
cpu_sigmoid_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  Ew e = { .a = fp (x), .y = fp (y) };
  run_ew (sigmoid_fwd_range, &e, numel (x));
  return TRUE;
}

static gboolean
cpu_sigmoid_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  Ew e = { .a = fp (y), .b = fp (dy), .y = fp (dx) };
  run_ew (sigmoid_bwd_range, &e, numel (y));
  return TRUE;
}

static void
clamp_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = fminf (fmaxf (e->s0 * e->a[i] + e->s1, e->s2), e->s3);
}

static void
clamp_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->a[i] > e->s2 && e->a[i] < e->s3 ? e->s0 * e->b[i] : 0.0f;
}

static gboolean
cpu_clamp_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, float alpha, float beta, float lo,
                   float hi, GError **error)
{
  Ew e = { .a = fp (x), .y = fp (y), .s0 = alpha, .s1 = beta, .s2 = lo, .s3 = hi };
  run_ew (clamp_fwd_range, &e, numel (x));
  return TRUE;
}

static gboolean
cpu_clamp_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx, float alpha,
                    float lo, float hi, GError **error)
{
  Ew e = { .a = fp (y), .b = fp (dy), .y = fp (dx), .s0 = alpha, .s2 = lo, .s3 = hi };
  run_ew (clamp_bwd_range, &e, numel (y));
  return TRUE;
}

typedef struct {
  int F;
  const float *x, *dy;
  float *y;
} SoftmaxJob;

static void
softmax_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const SoftmaxJob *j = d;
  for (gsize r = lo; r < hi; r++)
    {
      const float *x = j->x + r * j->F;
      float *y = j->y + r * j->F, mx = x[0];
      double s = 0;
      for (int k = 1; k < j->F; k++)
        mx = fmaxf (mx, x[k]);
      for (int k = 0; k < j->F; k++)
        s += y[k] = expf (x[k] - mx);
      for (int k = 0; k < j->F; k++)
        y[k] = (float) (y[k] / s);
    }
}

/* x holds the forward output y here */
static void
softmax_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const SoftmaxJob *j = d;
  for (gsize r = lo; r < hi; r++)
    {
      const float *y = j->x + r * j->F, *dy = j->dy + r * j->F;
      float *dx = j->y + r * j->F;
      double s = 0;
      for (int k = 0; k < j->F; k++)
        s += (double) dy[k] * y[k];
      for (int k = 0; k < j->F; k++)
        dx[k] = (float) (y[k] * (dy[k] - s));
    }
}

static gboolean
cpu_softmax_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  SoftmaxJob j = { x->shape[1], fp (x), NULL, fp (y) };
  parallel_for (x->shape[0], grain_for (x->shape[0], PAR_GRAIN / (gsize) j.F + 1), softmax_fwd_range, &j);
  return TRUE;
}

static gboolean
cpu_softmax_backward (CleaveBackend *self, const CleaveTensor *y, const CleaveTensor *dy, CleaveTensor *dx,
                      GError **error)
{
  SoftmaxJob j = { y->shape[1], fp (y), fp (dy), fp (dx) };
  parallel_for (y->shape[0], grain_for (y->shape[0], PAR_GRAIN / (gsize) j.F + 1), softmax_bwd_range, &j);
  return TRUE;
}

/* -------------------------------------------------------------- pooling */

typedef struct {
  int planes, h, w, ho, wo, k, s, pad;
  gboolean exclude_pad;
  const float *in, *din;
  float *out;
} PoolJob;

/* @in: the pool's input (or its gradient), @out: its output (or gradient). */
static void
pool_geom (const CleaveTensor *in, const CleaveTensor *out, const CleavePoolParams *p, PoolJob *g)
{
  g->planes = in->shape[0] * in->shape[1];
  g->h = in->shape[2];
  g->w = in->shape[3];
  g->k = p->kernel;
  g->s = p->stride;
  g->pad = p->pad;
  g->exclude_pad = p->exclude_pad;
  g->ho = out->shape[2];
  g->wo = out->shape[3];
}

static inline float
pool_inv_divisor (const PoolJob *g, int oh, int ow)
{
  return 1.0f / cleave_avgpool_divisor (oh, ow, g->h, g->w, g->k, g->s, g->pad, g->exclude_pad);
}

static inline gsize
pool_grain (const PoolJob *g)
{
  gsize per_plane = (gsize) g->h * g->w;
  return grain_for (g->planes, PAR_GRAIN / per_plane + 1);
}

/* Index (within the plane) of the first maximum of the window, -1 if the
 * window lies wholly in the padding. NaN wins, as in PyTorch. */
static inline int
window_argmax (const PoolJob *g, const float *plane, int oh, int ow)
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

/* max (a, b) that keeps a unless b is larger or NaN: folded over a window
 * in order, the first maximum wins and NaN propagates, as in PyTorch */
static inline float
max_first (float a, float b)
{
  return (b > a || b != b) ? b : a;
}

static void
maxpool_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;

  for (gsize pl = lo; pl < hi; pl++)
    {
      const float *plane = g->in + pl * g->h * g->w;
      float *out = g->out + pl * g->ho * g->wo;
      if (g->k == 2 && g->s == 2 && g->pad == 0 && g->ho == g->h / 2 && g->wo == g->w / 2)
        {
          /* The common case, without the bounds checks, branch-free so
           * that it vectorises (with them, the pooling measured 8% of the
           * GradSplitter search). */
          for (int oh = 0; oh < g->ho; oh++)
            {
              const float *restrict r0 = plane + (gsize) (2 * oh) * g->w, *restrict r1 = r0 + g->w;
              float *restrict o = out + (gsize) oh * g->wo;
              for (int ow = 0; ow < g->wo; ow++)
                o[ow] = max_first (max_first (r0[2 * ow], r0[2 * ow + 1]), max_first (r1[2 * ow], r1[2 * ow + 1]));
            }
          continue;
        }
      for (int oh = 0; oh < g->ho; oh++)
        for (int ow = 0; ow < g->wo; ow++)
          {
            int i = window_argmax (g, plane, oh, ow);
            out[oh * g->wo + ow] = i >= 0 ? plane[i] : -INFINITY;
          }
    }
}

static gboolean
cpu_maxpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  PoolJob g = { .in = fp (x), .out = fp (y) };
  pool_geom (x, y, p, &g);
  parallel_for (g.planes, pool_grain (&g), maxpool_fwd_range, &g);
  return TRUE;
}

static void
maxpool_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;

  for (gsize pl = lo; pl < hi; pl++)
    {
      const float *plane = g->in + pl * g->h * g->w;
      const float *dd = g->din + pl * g->ho * g->wo;
      float *out = g->out + pl * g->h * g->w;
      if (g->k == 2 && g->s == 2 && g->pad == 0 && g->ho == g->h / 2 && g->wo == g->w / 2)
        {
          /* Disjoint 2x2 windows: each writes its four gradients (the
           * first maximum takes dy, NaN first), so only an odd last row or
           * column needs clearing. */
          for (int oh = 0; oh < g->ho; oh++)
            {
              const float *r0 = plane + (gsize) (2 * oh) * g->w, *r1 = r0 + g->w;
              float *o0 = out + (gsize) (2 * oh) * g->w, *o1 = o0 + g->w;
              const float *dr = dd + (gsize) oh * g->wo;
              for (int ow = 0; ow < g->wo; ow++)
                {
                  float v[4] = { r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1] }, bv = v[0];
                  int best = 0;
                  for (int k = 1; k < 4; k++)
                    {
                      gboolean take = v[k] > bv || (v[k] != v[k] && bv == bv);
                      best = take ? k : best;
                      bv = take ? v[k] : bv;
                    }
                  o0[2 * ow] = best == 0 ? dr[ow] : 0.0f;
                  o0[2 * ow + 1] = best == 1 ? dr[ow] : 0.0f;
                  o1[2 * ow] = best == 2 ? dr[ow] : 0.0f;
                  o1[2 * ow + 1] = best == 3 ? dr[ow] : 0.0f;
                }
              if (g->w & 1)
                o0[g->w - 1] = o1[g->w - 1] = 0.0f;
            }
          if (g->h & 1)
            memset (out + (gsize) (g->h - 1) * g->w, 0, (gsize) g->w * sizeof (float));
          continue;
        }
      memset (out, 0, (gsize) g->h * g->w * sizeof (float));
      for (int oh = 0; oh < g->ho; oh++)
        for (int ow = 0; ow < g->wo; ow++)
          {
            int i = window_argmax (g, plane, oh, ow);
            if (i >= 0)
              out[i] += dd[oh * g->wo + ow];
          }
    }
}

static gboolean
cpu_maxpool_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *dy, CleaveTensor *dx,
                      const CleavePoolParams *p, GError **error)
{
  PoolJob g = { .in = fp (x), .din = fp (dy), .out = fp (dx) };
  pool_geom (x, dy, p, &g);
  parallel_for (g.planes, pool_grain (&g), maxpool_bwd_range, &g);
  return TRUE;
}

/* The divisor is k*k except where a window reaches past the padding
 * (ceil mode) or, with exclude_pad, into it. */
static void
avgpool_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;

  for (gsize pl = lo; pl < hi; pl++)
    {
      const float *plane = g->in + pl * g->h * g->w;
      float *out = g->out + pl * g->ho * g->wo;
      for (int oh = 0; oh < g->ho; oh++)
        for (int ow = 0; ow < g->wo; ow++)
          {
            float s = 0.0f;
            for (int kh = 0; kh < g->k; kh++)
              {
                int ih = oh * g->s - g->pad + kh;
                if (ih < 0 || ih >= g->h)
                  continue;
                for (int kw = 0; kw < g->k; kw++)
                  {
                    int iw = ow * g->s - g->pad + kw;
                    if (iw >= 0 && iw < g->w)
                      s += plane[ih * g->w + iw];
                  }
              }
            out[oh * g->wo + ow] = s * pool_inv_divisor (g, oh, ow);
          }
    }
}

static gboolean
cpu_avgpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, const CleavePoolParams *p, GError **error)
{
  PoolJob g = { .in = fp (x), .out = fp (y) };
  pool_geom (x, y, p, &g);
  parallel_for (g.planes, pool_grain (&g), avgpool_fwd_range, &g);
  return TRUE;
}

static void
avgpool_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;

  for (gsize pl = lo; pl < hi; pl++)
    {
      const float *dd = g->din + pl * g->ho * g->wo;
      float *out = g->out + pl * g->h * g->w;
      memset (out, 0, (gsize) g->h * g->w * sizeof (float));
      for (int oh = 0; oh < g->ho; oh++)
        for (int ow = 0; ow < g->wo; ow++)
          {
            float v = dd[oh * g->wo + ow] * pool_inv_divisor (g, oh, ow);
            for (int kh = 0; kh < g->k; kh++)
              {
                int ih = oh * g->s - g->pad + kh;
                if (ih < 0 || ih >= g->h)
                  continue;
                for (int kw = 0; kw < g->k; kw++)
                  {
                    int iw = ow * g->s - g->pad + kw;
                    if (iw >= 0 && iw < g->w)
                      out[ih * g->w + iw] += v;
                  }
              }
          }
    }
}

static gboolean
cpu_avgpool_backward (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, const CleavePoolParams *p, GError **error)
{
  PoolJob g = { .din = fp (dy), .out = fp (dx) };
  pool_geom (dx, dy, p, &g);
  parallel_for (g.planes, pool_grain (&g), avgpool_bwd_range, &g);
  return TRUE;
}

static void
gap_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;
  const int hw = g->h * g->w;
  for (gsize pl = lo; pl < hi; pl++)
    {
      g->out[pl] = sum_f (g->in + pl * hw, hw) / hw;
    }
}

static void
gap_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const PoolJob *g = d;
  const int hw = g->h * g->w;
  for (gsize pl = lo; pl < hi; pl++)
    {
      float v = g->din[pl] / hw;
      float *row = g->out + pl * hw;
      for (int i = 0; i < hw; i++)
        row[i] = v;
    }
}

static gboolean
cpu_global_avgpool_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, GError **error)
{
  PoolJob g = { .in = fp (x), .out = fp (y), .planes = x->shape[0] * x->shape[1], .h = x->shape[2],
                .w = x->shape[3] };
  parallel_for (g.planes, pool_grain (&g), gap_fwd_range, &g);
  return TRUE;
}

static gboolean
cpu_global_avgpool_backward (CleaveBackend *self, const CleaveTensor *dy, CleaveTensor *dx, GError **error)
{
  PoolJob g = { .din = fp (dy), .out = fp (dx), .planes = dx->shape[0] * dx->shape[1], .h = dx->shape[2],
                .w = dx->shape[3] };
  parallel_for (g.planes, pool_grain (&g), gap_bwd_range, &g);
  return TRUE;
}

/* --------------------------------------------------------------- linear */

typedef struct {
  int N, K, M;
  const float *x, *w, *b, *dy;
  float *y, *dx, *dw, *db;
} LinearJob;

/* Rows of the batch are split over participants; OpenBLAS runs single-threaded. */
static void
linear_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  LinearJob *j = d;
  float beta = 0.0f;
  if (j->b)
    {
      for (gsize n = lo; n < hi; n++)
        memcpy (j->y + n * j->M, j->b, j->M * sizeof (float));
      beta = 1.0f;
    }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) (hi - lo), j->M, j->K,
               1.0f, j->x + lo * j->K, j->K, j->w, j->K, beta, j->y + lo * j->M, j->M);
}

/* With a small batch (inference) the output features are split instead. */
static void
linear_fwd_cols_range (gpointer d, gsize lo, gsize hi, int worker)
{
  LinearJob *j = d;
  float beta = 0.0f;
  if (j->b)
    {
      for (int n = 0; n < j->N; n++)
        memcpy (j->y + (gsize) n * j->M + lo, j->b + lo, (hi - lo) * sizeof (float));
      beta = 1.0f;
    }
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, j->N, (int) (hi - lo), j->K,
               1.0f, j->x, j->K, j->w + lo * j->K, j->K, beta, j->y + lo, j->M);
}

static gboolean
cpu_linear_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                    const CleaveTensor *b, CleaveTensor *y, GError **error)
{
  LinearJob j = { .N = x->shape[0], .K = x->shape[1], .M = w->shape[0], .x = fp (x), .w = fp (w),
                  .b = b ? fp (b) : NULL, .y = fp (y) };
  gboolean big = (gsize) j.N * j.M * j.K > (1u << 18);

  if (!big)
    linear_fwd_range (&j, 0, j.N, 0);
  else if (j.N >= 8 * n_workers ())
    parallel_for (j.N, grain_for (j.N, 4), linear_fwd_range, &j);
  else
    parallel_for (j.M, grain_for (j.M, 16), linear_fwd_cols_range, &j);
  return TRUE;
}

/* dx[N,K] = dy[N,M] w[M,K], split over batch rows */
static void
linear_dx_range (gpointer d, gsize lo, gsize hi, int worker)
{
  LinearJob *j = d;
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) (hi - lo), j->K, j->M,
               1.0f, j->dy + lo * j->M, j->M, j->w, j->K, 0.0f, j->dx + lo * j->K, j->K);
}

/* dw[M,K] = dy^T[M,N] x[N,K] and db, split over output features */
static void
linear_dw_range (gpointer d, gsize lo, gsize hi, int worker)
{
  LinearJob *j = d;
  if (j->dw)
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) (hi - lo), j->K, j->N,
                 1.0f, j->dy + lo, j->M, j->x, j->K, 0.0f, j->dw + lo * j->K, j->K);
  if (j->db)
    {
      for (gsize m = lo; m < hi; m++)
        j->db[m] = 0.0f;
      for (int n = 0; n < j->N; n++)
        {
          const float *row = j->dy + (gsize) n * j->M;
          for (gsize m = lo; m < hi; m++)
            j->db[m] += row[m];
        }
    }
}

static gboolean
cpu_linear_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *w,
                     const CleaveTensor *dy, CleaveTensor *dx, CleaveTensor *dw, CleaveTensor *db, GError **error)
{
  LinearJob j = { .N = x->shape[0], .K = x->shape[1], .M = w->shape[0], .x = fp (x), .w = fp (w),
                  .dy = fp (dy), .dx = dx ? fp (dx) : NULL, .dw = dw ? fp (dw) : NULL, .db = db ? fp (db) : NULL };
  gboolean big = (gsize) j.N * j.M * j.K > (1u << 18);

  if (j.dx)
    parallel_for (j.N, big ? grain_for (j.N, 4) : (gsize) j.N, linear_dx_range, &j);
  if (j.dw || j.db)
    {
      parallel_for (j.M, big ? grain_for (j.M, 1) : (gsize) j.M, linear_dw_range, &j);
    }
  return TRUE;
}

/* ----------------------------------------------------------- elementwise */

static void
dropout_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    {
      float k = cleave_dropout_uniform (e->seed, i) >= e->s0 ? e->s1 : 0.0f;
      if (e->z)
        e->z[i] = k;
      e->y[i] = e->a[i] * k;
    }
}

static gboolean
cpu_dropout_forward (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, CleaveTensor *keep,
                     float p, guint64 seed, GError **error)
{
  Ew e = { .a = fp (x), .y = fp (y), .z = keep ? fp (keep) : NULL, .s0 = p,
           .s1 = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f, .seed = seed };
  gsize n = numel (x);
  parallel_for (n, grain_for (n, PAR_GRAIN / 4), dropout_range, &e);
  return TRUE;
}

static void
mul_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = e->a[i] * e->b[i];
}

static void
axpby_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  const float alpha = e->s0, beta = e->s1;
  for (gsize i = lo; i < hi; i++)
    e->y[i] = alpha * e->a[i] + beta * e->b[i];
}

static gboolean
cpu_mul (CleaveBackend *self, const CleaveTensor *a, const CleaveTensor *b, CleaveTensor *y, GError **error)
{
  Ew e = { .a = fp (a), .b = fp (b), .y = fp (y) };
  run_ew (mul_range, &e, numel (y));
  return TRUE;
}

static gboolean
cpu_axpby (CleaveBackend *self, float alpha, const CleaveTensor *a, float beta, const CleaveTensor *b,
           CleaveTensor *y, GError **error)
{
  Ew e = { .a = fp (a), .b = fp (b), .y = fp (y), .s0 = alpha, .s1 = beta };
  run_ew (axpby_range, &e, numel (y));
  return TRUE;
}

static gboolean
channel_copy (const CleaveTensor *small, CleaveTensor *big, int offset, gboolean into_big)
{
  int N, Cs, Cb, HW;
  float *S = fp (small), *Bg = fp (big);

  nc_hw (small, &N, &Cs, &HW);
  Cb = big->ndim > 1 ? big->shape[1] : 1;
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

typedef struct {
  int C, HW, groups;
  const float *x;
  float *y;
} ShuffleJob;

static void
shuffle_range (gpointer d, gsize lo, gsize hi, int worker)
{
  const ShuffleJob *j = d;
  const int per = j->C / j->groups;

  for (gsize nc = lo; nc < hi; nc++)
    {
      gsize n = nc / j->C;
      int c = (int) (nc % j->C), k = c / j->groups, g = c % j->groups;
      memcpy (j->y + nc * j->HW, j->x + (n * j->C + (gsize) g * per + k) * j->HW, (gsize) j->HW * sizeof (float));
    }
}

static gboolean
cpu_channel_shuffle (CleaveBackend *self, const CleaveTensor *x, CleaveTensor *y, int groups, GError **error)
{
  ShuffleJob j = { x->shape[1], x->shape[2] * x->shape[3], groups, fp (x), fp (y) };
  gsize planes = (gsize) x->shape[0] * x->shape[1];

  parallel_for (planes, grain_for (planes, PAR_GRAIN / (gsize) j.HW + 1), shuffle_range, &j);
  return TRUE;
}

typedef struct {
  int N, C, HW, G, B;
  int NX;                   /* rows of x: row n of the batch reads x's row n % NX */
  const float *x, *m, *dy;
  float *y, *dx, *dm;
  /* mask_chain_backward: relu on x, then per-channel gamma * invstd */
  gboolean relu;
  const float *gamma, *invstd;
} MaskJob;

static void
mask_fwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  MaskJob *j = d;
  for (gsize nc = lo; nc < hi; nc++)
    {
      gsize n = nc / j->C, c = nc % j->C;
      float mv = j->m[(n / j->B) * j->C + c];
      const float *xr = j->x + ((n % j->NX) * j->C + c) * j->HW;
      float *yr = j->y + nc * j->HW;
      for (int i = 0; i < j->HW; i++)
        yr[i] = xr[i] * mv;
    }
}

static gboolean
cpu_mask_forward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, CleaveTensor *y, GError **error)
{
  MaskJob j = { .x = fp (x), .m = fp (m), .y = fp (y), .G = m->shape[0], .NX = x->shape[0] };

  nc_hw (y, &j.N, &j.C, &j.HW);
  j.B = j.N / j.G;
  parallel_for ((gsize) j.N * j.C, grain_for ((gsize) j.N * j.C, PAR_GRAIN / j.HW + 1), mask_fwd_range, &j);
  return TRUE;
}

/* One (group, channel) pair per item, so dm needs no reduction across participants. */
static void
mask_bwd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  MaskJob *j = d;
  for (gsize gc = lo; gc < hi; gc++)
    {
      gsize g = gc / j->C, c = gc % j->C;
      const float mv = j->m[gc] * (j->gamma ? j->gamma[c] * j->invstd[c] : 1.0f);
      double acc = 0.0;
      for (gsize n = g * j->B; n < (g + 1) * j->B; n++)
        {
          const float *xr = j->x + ((n % j->NX) * j->C + c) * j->HW;
          const float *dr = j->dy + (n * j->C + c) * j->HW;
          if (j->dm)
            acc += dot_dev (dr, xr, j->HW, 0.0f);
          if (j->dx)
            {
              float *out = j->dx + (n * j->C + c) * j->HW;
              if (j->relu)
                for (int i = 0; i < j->HW; i++)
                  out[i] = xr[i] > 0.0f ? dr[i] * mv : 0.0f;
              else
                for (int i = 0; i < j->HW; i++)
                  out[i] = dr[i] * mv;
            }
        }
      if (j->dm)
        j->dm[gc] = (float) acc;
    }
}

/* The splitters' search backward through a frozen batchnorm → relu → mask
 * chain: one pass where mask, relu and batchnorm backward took three
 * (together ≈ 13% of the GradSplitter search). */
static gboolean
cpu_mask_chain_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                         gboolean relu, const CleaveTensor *gamma, const CleaveTensor *invstd, CleaveTensor *dx,
                         CleaveTensor *dm, GError **error)
{
  MaskJob j = { .x = fp (x), .m = fp (m), .dy = fp (dy), .dx = dx ? fp (dx) : NULL, .dm = dm ? fp (dm) : NULL,
                .G = m->shape[0], .relu = relu, .gamma = gamma ? fp (gamma) : NULL,
                .invstd = invstd ? fp (invstd) : NULL, .NX = x->shape[0] };
  gsize items;

  nc_hw (dy, &j.N, &j.C, &j.HW);
  j.B = j.N / j.G;
  items = (gsize) j.G * j.C;
  parallel_for (items, grain_for (items, PAR_GRAIN / ((gsize) j.B * j.HW) + 1), mask_bwd_range, &j);
  return TRUE;
}

static gboolean
cpu_mask_backward (CleaveBackend *self, const CleaveTensor *x, const CleaveTensor *m, const CleaveTensor *dy,
                   CleaveTensor *dx, CleaveTensor *dm, GError **error)
{
  return cpu_mask_chain_backward (self, x, m, dy, FALSE, NULL, NULL, dx, dm, error);
}

static gboolean
cpu_softmax_ce (CleaveBackend *self, const CleaveTensor *logits, const CleaveTensor *labels,
                CleaveTensor *loss, CleaveTensor *dlogits, GError **error)
{
  const int N = logits->shape[0], C = logits->shape[1];
  const float *L = fp (logits), *Y = fp (labels);
  float *D = dlogits ? fp (dlogits) : NULL;
  double total = 0.0;

  for (int n = 0; n < N; n++)
    {
      float lv = Y[n];
      if (!(lv >= 0.0f && lv < C) || lv != floorf (lv))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "softmax cross-entropy: label %g of sample %d is not a class index in 0..%d",
                       (double) lv, n, C - 1);
          return FALSE;
        }
    }

  /* N*C is small next to any layer before it: one thread, double sums */
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

static void
sgd_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  float *P = e->y, *BF = e->z;
  const float *G = e->a;
  const float lr = e->s0, momentum = e->s1, wd = e->s2;

  if (BF == NULL)
    {
      /* PyTorch keeps no momentum buffer without momentum. */
      for (gsize i = lo; i < hi; i++)
        P[i] -= lr * (G[i] + wd * P[i]);
      return;
    }
  for (gsize i = lo; i < hi; i++)
    {
      float g = G[i] + wd * P[i];
      float b = e->flag ? g : momentum * BF[i] + g;
      BF[i] = b;
      P[i] -= lr * b;
    }
}

static gboolean
cpu_sgd_step (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *buf,
              float lr, float momentum, float weight_decay, gboolean first_step, GError **error)
{
  Ew e = { .y = fp (param), .a = fp (grad), .z = (buf && momentum != 0.0f) ? fp (buf) : NULL,
           .s0 = lr, .s1 = momentum, .s2 = weight_decay, .flag = first_step };
  run_ew (sgd_range, &e, numel (param));
  return TRUE;
}

static void
adam_range (gpointer d, gsize lo, gsize hi, int worker)
{
  Ew *e = d;
  float *P = e->y, *M = e->z, *V = e->w;
  const float *G = e->a;
  const float step = e->s0, b1 = e->s1, b2 = e->s2, eps = e->s3, wd = e->s4;
  const float inv_sqrt_bc2 = e->s5;

  for (gsize i = lo; i < hi; i++)
    {
      float g = G[i] + wd * P[i];
      float mi = b1 * M[i] + (1.0f - b1) * g;
      float vi = b2 * V[i] + (1.0f - b2) * g * g;
      M[i] = mi;
      V[i] = vi;
      P[i] -= step * mi / (sqrtf (vi) * inv_sqrt_bc2 + eps);
    }
}

static gboolean
cpu_adam_step (CleaveBackend *self, CleaveTensor *param, const CleaveTensor *grad, CleaveTensor *m,
               CleaveTensor *v, float lr, float beta1, float beta2, float eps, float weight_decay,
               int t, GError **error)
{
  const double bc1 = 1.0 - pow (beta1, t), bc2 = 1.0 - pow (beta2, t);
  Ew e = { .y = fp (param), .a = fp (grad), .z = fp (m), .w = fp (v), .s0 = (float) (lr / bc1),
           .s1 = beta1, .s2 = beta2, .s3 = eps, .s4 = weight_decay,
           .s5 = (float) (1.0 / sqrt (bc2)) };
  run_ew (adam_range, &e, numel (param));
  return TRUE;
}

/* ----------------------------------------------------------------- setup */

static const CleaveBackendVTable cpu_vtable = {
  .destroy = cpu_destroy,
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_upload,
  .download = cpu_download,
  .copy_within = cpu_copy_within,
  .fill = cpu_fill,
  .copy = cpu_copy,
  .finish = NULL,
  .conv2d_forward = cpu_conv2d_forward,
  .conv2d_bn_forward = cpu_conv2d_bn_forward,
  .conv2d_backward = cpu_conv2d_backward,
  .batchnorm_forward = cpu_batchnorm_forward,
  .batchnorm_backward = cpu_batchnorm_backward,
  .relu_forward = cpu_relu_forward,
  .relu_backward = cpu_relu_backward,
  .sigmoid_forward = cpu_sigmoid_forward,
  .sigmoid_backward = cpu_sigmoid_backward,
  .clamp_forward = cpu_clamp_forward,
  .clamp_backward = cpu_clamp_backward,
  .channel_shuffle = cpu_channel_shuffle,
  .softmax_forward = cpu_softmax_forward,
  .softmax_backward = cpu_softmax_backward,
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
  .mask_chain_backward = cpu_mask_chain_backward,
  .softmax_ce = cpu_softmax_ce,
  .sgd_step = cpu_sgd_step,
  .adam_step = cpu_adam_step,
};

CleaveBackend *
cleave_backend_cpu_new_with_config (const CleaveBackendConfig *config)
{
  static gsize init_once = 0;
  CleaveBackend *b = g_new0 (CleaveBackend, 1);
  CleaveBackendConfig *cfg = &b->config;

  if (config)
    *cfg = *config;
  else
    cleave_backend_config_init (cfg);
  if (g_once_init_enter (&init_once))
    {
      /* Parallelism comes from the pool over images and rows; a
       * multi-threaded OpenBLAS inside it would oversubscribe the cores. */
      openblas_set_num_threads (1);
      pool_init (cfg->threads);
      g_once_init_leave (&init_once, 1);
    }

  cfg->threads = pool_threads;
  b->vtable = &cpu_vtable;
  b->kind = CLEAVE_BACKEND_KIND_CPU;
  b->name = g_strdup ("cpu");
  b->description = g_strdup_printf ("CPU (OpenBLAS, %d threads)", pool_threads);
  b->ref_count = 1;
  return b;
}

CleaveBackend *
cleave_backend_cpu_new (void)
{
  return cleave_backend_cpu_new_with_config (NULL);
}
