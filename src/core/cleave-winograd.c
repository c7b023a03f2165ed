/* cleave-winograd.c: Winograd F(4x4, 3x3) forward convolution for the cpu
 * backend.
 *
 * Why: the 3x3 stride-1 pad-1 convolutions are ~95% of the FLOPs of a small
 * CNN, and im2col + sgemm already runs them at ~90% of the FMA peak, so the
 * only way to be faster is to do fewer multiplies. F(4x4, 3x3) computes a
 * 4x4 output tile from a 6x6 input tile with 36 multiplies per (cin, cout)
 * pair instead of 144: the elementwise stage becomes 36 GEMMs
 * [cout x cin] x [cin x tiles], one per position of the 6x6 transformed
 * tile (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks").
 *
 * Layout: tiles are processed in blocks of BT (one vector lane per tile),
 * so the input transform V[36][cin][BT] of a block stays in L2 and the GEMM
 * output of 8 output channels M[36][8][BT] stays in L1; transforming the
 * whole batch first would be memory-bound. The transforms are vector code
 * across the tiles of the block; gathering the 6x6 patches and scattering
 * the 4x4 results are scalar copies. The GEMM is a register-blocked 8 x 32
 * kernel reading the transformed weights U[36][cout/8][cin][8] as packed by
 * cleave_winograd_prepare_range (once per call: the weights change during
 * training).
 * The kernel is written with GCC vector extensions and compiled twice: for
 * AVX-512 (chosen at run time) and for the build's baseline ISA.
 *
 * Numerics: the transforms use the interpolation points 0, ±1, ±2, inf; the
 * output transform multiplies by up to 8 and the weight transform divides
 * by up to 24, so rounding errors grow compared with a direct sum. Against
 * a double-precision direct convolution, with inputs and weights in
 * [-1, 1], the max error relative to the largest output was 0.3e-6 .. 5.4e-6
 * (1 .. 128 input channels; 4.3e-6 for 32 -> 32 on 28x28), against
 * 0.1e-6 .. 0.6e-6 for im2col; tests/test-winograd.c asserts 2e-5. The
 * PyTorch golden tests (1e-5 bounds) pass with CLEAVE_CONV_ALGO=winograd.
 * Speed of the forward pass (single core, batch 128, under load): 32->32 28x28 2.0x, 32->64
 * 14x14 2.1x, 64->64 14x14 2.2x faster than im2col + OpenBLAS sgemm.
 *
 * CLEAVE_CONV_ALGO=im2col turns it off, =winograd forces it for every
 * 3x3 stride-1 pad-1 convolution (any channel count), unset or =auto uses
 * it where it pays off (>= 8 channels in and out per group, feature maps
 * big enough that the padded 4x4 tiles do not waste the saving). The input
 * gradient of such a convolution is one too (cleave-backend-cpu.c) and goes
 * the same way. Why 8 channels: the split search of the demo model
 * (8-channel first layers), 1 thread, user time: threshold 16: 39.2 s,
 * 8: 35.1 s, 1: 35.3 s. */
#include "config.h"

#include "cleave-winograd-private.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#define HAVE_X86 1
#endif

#define BT 32           /* tiles per block: one lane each */
#define MR 8            /* output channels per GEMM panel */
#define NP 36           /* positions of a transformed 6x6 tile */
#define NV (BT / 16)    /* 16-float vectors per row of a block */

typedef float v16 __attribute__ ((vector_size (64), may_alias));
typedef int vi16 __attribute__ ((vector_size (64), may_alias));

/* not "(v16) {} + s": without -ffast-math that is a real add (0 + -0 = +0) */
#define SPLAT(s) ({ float s_ = (s); (v16) { s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_ }; })
#define LD(p) (*(const v16 *) (p))
#define ST(p, v) (*(v16 *) (p) = (v))

struct _CleaveWinograd {
  int n, ci, h, w, co, groups;
  int cig, cog, nob;    /* channels per group; panels of MR output channels */
  int th, tw;           /* output tiles per image */
  gsize n_tiles, n_blocks;
  float *u;             /* [groups][NP][nob][cig][MR] */
  float *bias;          /* [co] or NULL */
  gboolean relu;        /* max (0, ·) after the bias */
  gboolean avx512;
};

/* Multiplies per image relative to a direct convolution; small maps pad
 * their last tile row/column with up to 3 wasted outputs. */
static gboolean
worth_it (int h, int w)
{
  gsize direct = (gsize) 9 * h * w;
  gsize wino = (gsize) NP * ((h + 3) / 4) * ((w + 3) / 4);
  return 2 * wino <= direct;
}

gboolean
cleave_winograd_use (CleaveConvAlgo algo, int ci, int h, int w, int co, int kh, int kw, int stride, int pad,
                     int groups)
{
  int g = groups > 0 ? groups : 1;

  if (algo == CLEAVE_CONV_ALGO_IM2COL || kh != 3 || kw != 3 || stride != 1 || pad != 1)
    return FALSE;
  if (algo == CLEAVE_CONV_ALGO_WINOGRAD)
    return TRUE;
  /* Few channels: the GEMMs are too thin for the transforms to pay off. */
  return ci / g >= 8 && co / g >= 8 && worth_it (h, w);
}

typedef double v8d __attribute__ ((vector_size (64)));
typedef float v8f __attribute__ ((vector_size (32), may_alias));

gsize
cleave_winograd_n_panels (const CleaveWinograd *wg)
{
  return (gsize) wg->groups * wg->nob;
}

/* U = G k G^T for the MR output channels of each panel at once, one vector
 * lane per channel: the MR values of one (position, input channel) are
 * contiguous in U, so each result is one store. One channel at a time,
 * with 36 scattered stores each, took 10% of the time in CIFAR-10
 * training, where every step transforms the weights twice (forward and the
 * input gradient). In double, so that U is correctly rounded once. */
void
cleave_winograd_prepare_range (CleaveWinograd *wg, const float *weight, gsize lo, gsize hi)
{
  static const double G[6][3] = {
    { 1.0 / 4, 0, 0 },
    { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
    { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
    { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
    { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
    { 0, 0, 1 },
  };
  const int cig = wg->cig, cog = wg->cog, nob = wg->nob;
  const gsize pstride = (gsize) nob * cig * MR;

  for (gsize panel = lo; panel < hi; panel++)
    {
      const int g = (int) (panel / nob), b = (int) (panel % nob);
      const int o0 = b * MR, lanes = MIN (MR, cog - o0);
      float *u = wg->u + ((gsize) g * NP * nob + b) * cig * MR;

      for (int c = 0; c < cig; c++)
        {
          v8d k[9], t[6][3];

          for (int q = 0; q < 9; q++)
            for (int l = 0; l < MR; l++)
              k[q][l] = l < lanes ? weight[(((gsize) g * cog + o0 + l) * cig + c) * 9 + q] : 0.0;
          for (int i = 0; i < 6; i++)
            for (int q = 0; q < 3; q++)
              t[i][q] = G[i][0] * k[q] + G[i][1] * k[3 + q] + G[i][2] * k[6 + q];
          for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++)
              *(v8f *) (u + (i * 6 + j) * pstride + (gsize) c * MR)
                = __builtin_convertvector (t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2], v8f);
        }
    }
}

/* Sizes, panels and tiles of a convolution (shared by the forward pass
 * and the weight gradient). */
static void
set_geometry (CleaveWinograd *wg, int n, int ci, int h, int w, int co, int groups)
{
  wg->n = n;
  wg->ci = ci;
  wg->h = h;
  wg->w = w;
  wg->co = co;
  wg->groups = groups > 0 ? groups : 1;
  wg->cig = ci / wg->groups;
  wg->cog = co / wg->groups;
  wg->nob = (wg->cog + MR - 1) / MR;
  wg->th = (h + 3) / 4;
  wg->tw = (w + 3) / 4;
  wg->n_tiles = (gsize) n * wg->th * wg->tw;
  wg->n_blocks = (wg->n_tiles + BT - 1) / BT;
#ifdef HAVE_X86
  wg->avx512 = __builtin_cpu_supports ("avx512f");
#endif
}

CleaveWinograd *
cleave_winograd_new (int n, int ci, int h, int w, int co, int groups, const float *bias)
{
  CleaveWinograd *wg = g_new0 (CleaveWinograd, 1);
  gsize un;
  void *p = NULL;

  set_geometry (wg, n, ci, h, w, co, groups);

  un = (gsize) wg->groups * NP * wg->nob * MR * wg->cig;
  if (posix_memalign (&p, 64, MAX (un, 1) * sizeof (float)) != 0)
    {
      g_free (wg);
      return NULL;
    }
  /* no clearing: cleave_winograd_prepare_range writes every lane, the
   * padded channels of a last partial panel as zeros */
  wg->u = p;
  if (bias)
    wg->bias = g_memdup2 (bias, (gsize) co * sizeof (float));
  return wg;
}

void
cleave_winograd_set_relu (CleaveWinograd *wg, gboolean relu)
{
  wg->relu = relu;
}

void
cleave_winograd_free (CleaveWinograd *wg)
{
  if (wg == NULL)
    return;
  free (wg->u);
  g_free (wg->bias);
  g_free (wg);
}

gsize
cleave_winograd_n_blocks (const CleaveWinograd *wg)
{
  return wg->n_blocks;
}

gsize
cleave_winograd_scratch_floats (const CleaveWinograd *wg)
{
  /* D, O, V, M */
  return (gsize) NP * BT + 16 * BT + (gsize) NP * wg->cig * BT + (gsize) NP * MR * BT;
}

/* 1-d input transform B^T d of F(4, 3). */
#define BT6(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5) \
  do { \
    v16 s_a = (d4) - (d2), s_b = (d3) - (d1); \
    r0 = 4.0f * (d0) - 5.0f * (d2) + (d4); \
    r1 = ((d3) + (d4)) - 4.0f * ((d1) + (d2)); \
    r2 = ((d4) - (d3)) + 4.0f * ((d1) - (d2)); \
    r3 = s_a + 2.0f * s_b; \
    r4 = s_a - 2.0f * s_b; \
    r5 = 4.0f * (d1) - 5.0f * (d3) + (d5); \
  } while (0)

/* 1-d output transform A^T m of F(4, 3). */
#define AT4(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3) \
  do { \
    v16 s12 = (m1) + (m2), d12 = (m1) - (m2), s34 = (m3) + (m4), d34 = (m3) - (m4); \
    o0 = (m0) + s12 + s34; \
    o1 = d12 + 2.0f * d34; \
    o2 = s12 + 4.0f * s34; \
    o3 = d12 + 8.0f * d34 + (m5); \
  } while (0)

/* D[36][BT] (one 6x6 patch per lane) -> V[p * vstride + lane] */
static inline __attribute__ ((always_inline)) void
input_transform (const float *restrict D, float *restrict V, gsize vstride)
{
  for (int h = 0; h < NV; h++)
    {
      v16 t[NP];

      for (int j = 0; j < 6; j++)
        {
          const float *d = D + j * BT + h * 16;
          BT6 (LD (d), LD (d + 6 * BT), LD (d + 12 * BT), LD (d + 18 * BT), LD (d + 24 * BT), LD (d + 30 * BT),
               t[j], t[6 + j], t[12 + j], t[18 + j], t[24 + j], t[30 + j]);
        }
      for (int i = 0; i < 6; i++)
        {
          v16 r0, r1, r2, r3, r4, r5;
          float *v = V + (gsize) i * 6 * vstride + h * 16;
          BT6 (t[i * 6], t[i * 6 + 1], t[i * 6 + 2], t[i * 6 + 3], t[i * 6 + 4], t[i * 6 + 5],
               r0, r1, r2, r3, r4, r5);
          ST (v, r0);
          ST (v + vstride, r1);
          ST (v + 2 * vstride, r2);
          ST (v + 3 * vstride, r3);
          ST (v + 4 * vstride, r4);
          ST (v + 5 * vstride, r5);
        }
    }
}

/* max (0, v) lane by lane: the comparison's all-ones lanes keep v's bits */
#define RELU(v) ({ v16 v_ = (v); (v16) ((vi16) v_ & (v_ > SPLAT (0.0f))); })

/* M[p * mstride + lane] -> O[16][BT] (a 4x4 tile per lane) + bias [, relu] */
static inline __attribute__ ((always_inline)) void
output_transform (const float *restrict M, gsize mstride, float *restrict O, float bias, gboolean relu)
{
  for (int h = 0; h < NV; h++)
    {
      v16 t[24];

      for (int j = 0; j < 6; j++)
        {
          const float *m = M + (gsize) j * mstride + h * 16;
          AT4 (LD (m), LD (m + 6 * mstride), LD (m + 12 * mstride), LD (m + 18 * mstride),
               LD (m + 24 * mstride), LD (m + 30 * mstride), t[j], t[6 + j], t[12 + j], t[18 + j]);
        }
      for (int i = 0; i < 4; i++)
        {
          v16 o0, o1, o2, o3;
          float *o = O + (gsize) i * 4 * BT + h * 16;
          AT4 (t[i * 6], t[i * 6 + 1], t[i * 6 + 2], t[i * 6 + 3], t[i * 6 + 4], t[i * 6 + 5], o0, o1, o2, o3);
          o0 += bias, o1 += bias, o2 += bias, o3 += bias;
          if (relu)
            o0 = RELU (o0), o1 = RELU (o1), o2 = RELU (o2), o3 = RELU (o3);
          ST (o, o0);
          ST (o + BT, o1);
          ST (o + 2 * BT, o2);
          ST (o + 3 * BT, o3);
        }
    }
}

/* m[r][lane] = sum_k u[k][r] * v[k][lane] for rows r0..r0+R-1 and vectors
 * l0..l0+L-1 of the lanes: R x L accumulators live in registers. */
static inline __attribute__ ((always_inline)) void
gemm_panel (const float *restrict u, const float *restrict v, float *restrict m, int K,
            const int R, const int L, int r0, int l0)
{
  v16 acc[MR][NV];

  for (int r = 0; r < R; r++)
    for (int l = 0; l < L; l++)
      acc[r][l] = SPLAT (0.0f);
  for (int k = 0; k < K; k++)
    {
      v16 b[NV];
      for (int l = 0; l < L; l++)
        b[l] = LD (v + (gsize) k * BT + (l0 + l) * 16);
      for (int r = 0; r < R; r++)
        {
          v16 a = SPLAT (u[k * MR + r0 + r]);
          for (int l = 0; l < L; l++)
            acc[r][l] += a * b[l];
        }
    }
  for (int r = 0; r < R; r++)
    for (int l = 0; l < L; l++)
      ST (m + (gsize) (r0 + r) * BT + (l0 + l) * 16, acc[r][l]);
}

/* Where a tile's 6x6 input patch and 4x4 output tile lie. Border patches
 * only copy their part inside the image; the rest of D stays zero for the
 * whole block because every channel has the same geometry. */
typedef struct {
  gsize in;             /* offset of the patch's first inside element in channel 0 of its image */
  gsize out;            /* offset of the output tile in channel 0 of its image */
  int d0;               /* D position of that element: i0 * 6 + j0 */
  int ni, nj;           /* inside rows and columns of the patch */
  int oy, ox;           /* output rows and columns inside the image (<= 4) */
  int n;
} Lane;

/* The input (and output) of a block, per image, as [start, end) offsets in
 * channel 0. The patches of one channel are scattered over ~20 rows and the
 * channels are a plane apart, too many streams for the hardware
 * prefetchers: without software prefetch the gather waited on memory for
 * most of its time. */
typedef struct {
  gsize in0, in1, out0, out1;
} Seg;

#define PF_DIST 2       /* channels ahead */

static inline void
prefetch_read (const float *p, gsize n)
{
  for (gsize i = 0; i < n; i += 16)
    __builtin_prefetch (p + i, 0, 3);
  __builtin_prefetch (p + n - 1, 0, 3);
}

static inline void
prefetch_write (float *p, gsize n)
{
  for (gsize i = 0; i < n; i += 16)
    __builtin_prefetch (p + i, 1, 3);
  __builtin_prefetch (p + n - 1, 1, 3);
}

/* Copies an ni x nj rectangle between a strided image and a lane of a
 * block (lane stride BT). Border tiles have short rows; a switch to
 * constant-length rows keeps the copy unrolled and its branch periodic
 * (it follows the tile column), where a variable-length inner loop
 * mispredicted on almost every row. */
#define COPY_RECT(dst, di, dj, src, si, sj, ni, nj) \
  do { \
    switch (nj) \
      { \
      case 6: COPY_ROWS (dst, di, dj, src, si, sj, ni, 6); break; \
      case 5: COPY_ROWS (dst, di, dj, src, si, sj, ni, 5); break; \
      case 4: COPY_ROWS (dst, di, dj, src, si, sj, ni, 4); break; \
      case 3: COPY_ROWS (dst, di, dj, src, si, sj, ni, 3); break; \
      case 2: COPY_ROWS (dst, di, dj, src, si, sj, ni, 2); break; \
      default: COPY_ROWS (dst, di, dj, src, si, sj, ni, 1); break; \
      } \
  } while (0)
#define COPY_ROWS(dst, di, dj, src, si, sj, ni, NJ) \
  for (int i_ = 0; i_ < (ni); i_++) \
    for (int j_ = 0; j_ < (NJ); j_++) \
      (dst)[(gsize) i_ * (di) + (gsize) j_ * (dj)] = (src)[(gsize) i_ * (si) + (gsize) j_ * (sj)]

/* The lanes of block @blk: patch and tile geometry; returns their count. */
static inline int
block_lanes (const CleaveWinograd *wg, gsize blk, Lane *lane)
{
  const gsize t0 = blk * BT, per = (gsize) wg->th * wg->tw, plane = (gsize) wg->h * wg->w;
  const int nl = (int) MIN ((gsize) BT, wg->n_tiles - t0), H = wg->h, W = wg->w;

  for (int l = 0; l < nl; l++)
    {
      const gsize t = t0 + l, n = t / per;
      const int r = (int) (t % per), ty = r / wg->tw * 4, tx = r % wg->tw * 4;
      const int i0 = ty == 0, j0 = tx == 0;
      const int i1 = MIN (6, H + 1 - ty), j1 = MIN (6, W + 1 - tx);
      Lane *ln = &lane[l];

      ln->in = n * wg->ci * plane + (gsize) (ty - 1 + i0) * W + (tx - 1 + j0);
      ln->out = n * wg->co * plane + (gsize) ty * W + tx;
      ln->d0 = i0 * 6 + j0;
      ln->ni = i1 - i0;
      ln->nj = j1 - j0;
      ln->oy = MIN (4, H - ty);
      ln->ox = MIN (4, W - tx);
      ln->n = (int) n;
    }
  return nl;
}

static inline __attribute__ ((always_inline)) void
forward_blocks_body (const CleaveWinograd *wg, const float *x, float *y, gsize lo, gsize hi,
                     float *scratch, const gboolean wide)
{
  const int H = wg->h, W = wg->w, cig = wg->cig, cog = wg->cog, nob = wg->nob;
  const gsize plane = (gsize) H * W, vstride = (gsize) cig * BT;
  float *D = scratch;
  float *O = D + NP * BT;
  float *V = O + 16 * BT;
  float *M = V + NP * vstride;
  Lane lane[BT];
  Seg seg[BT];

  for (gsize blk = lo; blk < hi; blk++)
    {
      const int nl = block_lanes (wg, blk, lane);

      int nseg = 0;
      for (int l = 0; l < nl; l++)
        {
          const Lane *ln = &lane[l];
          const gsize in1 = ln->in + (gsize) (ln->ni - 1) * W + ln->nj;
          const gsize out1 = ln->out + (gsize) (ln->oy - 1) * W + ln->ox;
          if (l == 0 || ln->n != lane[l - 1].n)
            {
              seg[nseg].in0 = ln->in;
              seg[nseg].in1 = in1;
              seg[nseg].out0 = ln->out;
              seg[nseg].out1 = out1;
              nseg++;
              continue;
            }
          seg[nseg - 1].in0 = MIN (seg[nseg - 1].in0, ln->in);
          seg[nseg - 1].in1 = MAX (seg[nseg - 1].in1, in1);
          seg[nseg - 1].out0 = MIN (seg[nseg - 1].out0, ln->out);
          seg[nseg - 1].out1 = MAX (seg[nseg - 1].out1, out1);
        }
      for (int cc = 0; cc < MIN (PF_DIST, wg->ci); cc++)
        for (int k = 0; k < nseg; k++)
          prefetch_read (x + seg[k].in0 + (gsize) cc * plane, seg[k].in1 - seg[k].in0);
      memset (D, 0, NP * BT * sizeof (float));

      for (int g = 0; g < wg->groups; g++)
        {
          for (int c = 0; c < cig; c++)
            {
              const float *xc = x + ((gsize) g * cig + c) * plane;
              if (g * cig + c + PF_DIST < wg->ci)
                for (int k = 0; k < nseg; k++)
                  prefetch_read (xc + PF_DIST * plane + seg[k].in0, seg[k].in1 - seg[k].in0);
              for (int l = 0; l < nl; l++)
                {
                  const float *src = xc + lane[l].in;
                  float *d = D + lane[l].d0 * BT + l;
                  COPY_RECT (d, 6 * BT, BT, src, W, 1, lane[l].ni, lane[l].nj);
                }
              input_transform (D, V + (gsize) c * BT, vstride);
            }

          for (int ob = 0; ob < nob; ob++)
            {
              const float *u = wg->u + ((gsize) g * NP * nob + ob) * cig * MR;
              const int rows = MIN (MR, cog - ob * MR);

              for (int p = 0; p < NP; p++)
                {
                  const float *up = u + (gsize) p * nob * cig * MR;
                  if (wide)
                    gemm_panel (up, V + p * vstride, M + p * MR * BT, cig, 8, 2, 0, 0);
                  else
                    for (int r0 = 0; r0 < MR; r0 += 4)
                      for (int l0 = 0; l0 < NV; l0++)
                        gemm_panel (up, V + p * vstride, M + p * MR * BT, cig, 4, 1, r0, l0);
                }

              for (int r = 0; r < rows; r++)
                {
                  const int o = g * cog + ob * MR + r;
                  for (int k = 0; k < nseg; k++)
                    prefetch_write (y + seg[k].out0 + (gsize) MIN (o + PF_DIST, wg->co - 1) * plane,
                                    seg[k].out1 - seg[k].out0);

                  output_transform (M + r * BT, MR * BT, O, wg->bias ? wg->bias[o] : 0.0f, wg->relu);
                  for (int l = 0; l < nl; l++)
                    {
                      float *dst = y + lane[l].out + (gsize) o * plane;
                      const float *src = O + l;
                      COPY_RECT (dst, W, 1, src, 4 * BT, BT, lane[l].oy, lane[l].ox);
                    }
                }
            }
        }
    }
}

#ifdef HAVE_X86
__attribute__ ((target ("avx512f,avx512vl,avx2,fma")))
static void
forward_blocks_avx512 (const CleaveWinograd *wg, const float *x, float *y, gsize lo, gsize hi, float *scratch)
{
  forward_blocks_body (wg, x, y, lo, hi, scratch, TRUE);
}
#endif

static void
forward_blocks_generic (const CleaveWinograd *wg, const float *x, float *y, gsize lo, gsize hi, float *scratch)
{
  forward_blocks_body (wg, x, y, lo, hi, scratch, FALSE);
}

void
cleave_winograd_forward_blocks (const CleaveWinograd *wg, const float *x, float *y, gsize lo, gsize hi,
                                float *scratch)
{
#if defined(__x86_64__) || defined(__i386__)
  if (wg->avx512)
    {
      forward_blocks_avx512 (wg, x, y, lo, hi, scratch);
      return;
    }
#endif
  forward_blocks_generic (wg, x, y, lo, hi, scratch);
}

/* ------------------------------------------------------ weight gradient */

/* The weight gradient through the same transform. With Y = A^T M A,
 * M = sum_c U_c ⊙ V_c and U = G g G^T, the chain rule gives
 *   dM = A dY A^T (per output tile),  dU[p] = sum_tiles dM[p] V[p],
 *   dg = G^T dU G,
 * so the 36 positions p each contribute one GEMM [cout x tiles] x
 * [tiles x cin] whose inner dimension is the tiles of the whole batch:
 * long, well-shaped products for OpenBLAS, with a quarter of the multiplies
 * of im2col's [cout x pixels] x [pixels x 9 cin] and no 9x expanded copy
 * of the input. The tiles are taken in chunks so that V and dM stay within
 * a memory budget. */
struct _CleaveWinogradGrad {
  CleaveWinograd geom;  /* sizes and tiles only: no weights */
  gsize chunk_blocks;   /* tile blocks per chunk */
  gsize t_cols;         /* columns of V and dM: chunk_blocks * BT */
  gsize first;          /* first block of the current chunk */
  float *v;             /* [36][ci][t_cols] */
  float *m;             /* [36][co][t_cols] */
  float *du;            /* [groups][36][cog][cig] */
};

#define GRAD_CHUNK_FLOATS ((gsize) 8 << 20)     /* V + dM per chunk: 32 MiB */

CleaveWinogradGrad *
cleave_winograd_grad_new (int n, int ci, int h, int w, int co, int groups, gsize chunk_floats)
{
  CleaveWinogradGrad *gr = g_new0 (CleaveWinogradGrad, 1);
  CleaveWinograd *wg = &gr->geom;
  gsize per_block, cap, budget;
  void *p = NULL;

  set_geometry (wg, n, ci, h, w, co, groups);
  per_block = (gsize) NP * (ci + co) * BT;
  budget = chunk_floats ? chunk_floats : GRAD_CHUNK_FLOATS;
  cap = MAX ((gsize) 1, budget / per_block);
  gr->chunk_blocks = MIN (cap, wg->n_blocks);
  gr->t_cols = gr->chunk_blocks * BT;
  if (posix_memalign (&p, 64, gr->t_cols * NP * (gsize) (ci + co) * sizeof (float)) != 0)
    {
      g_free (gr);
      return NULL;
    }
  gr->v = p;
  gr->m = gr->v + gr->t_cols * NP * (gsize) ci;
  gr->du = g_try_new (float, (gsize) wg->groups * NP * wg->cog * wg->cig);
  if (gr->du == NULL)
    {
      free (gr->v);
      g_free (gr);
      return NULL;
    }
  return gr;
}

void
cleave_winograd_grad_free (CleaveWinogradGrad *gr)
{
  if (gr == NULL)
    return;
  free (gr->v);
  g_free (gr->du);
  g_free (gr);
}

gsize
cleave_winograd_grad_n_chunks (const CleaveWinogradGrad *gr)
{
  return (gr->geom.n_blocks + gr->chunk_blocks - 1) / gr->chunk_blocks;
}

gsize
cleave_winograd_grad_set_chunk (CleaveWinogradGrad *gr, gsize chunk)
{
  gr->first = chunk * gr->chunk_blocks;
  return MIN (gr->chunk_blocks, gr->geom.n_blocks - gr->first);
}

gsize
cleave_winograd_grad_scratch_floats (const CleaveWinogradGrad *gr)
{
  return (gsize) NP * BT + 16 * BT;   /* D, O */
}

gsize
cleave_winograd_grad_n_products (const CleaveWinogradGrad *gr)
{
  return (gsize) gr->geom.groups * NP;
}

/* 1-d A y of F(4, 3) (A is 6 x 4), the adjoint of AT4. */
#define A6(y0, y1, y2, y3, m0, m1, m2, m3, m4, m5) \
  do { \
    v16 s02 = (y0) + (y2), s13 = (y1) + (y3); \
    v16 u_ = (y0) + 4.0f * (y2), w_ = 2.0f * (y1) + 8.0f * (y3); \
    m0 = (y0); \
    m1 = s02 + s13; \
    m2 = s02 - s13; \
    m3 = u_ + w_; \
    m4 = u_ - w_; \
    m5 = (y3); \
  } while (0)

/* O[16][BT] (a 4x4 output-gradient tile per lane) -> M[p * mstride + lane] = (A dY A^T)[p] */
static inline __attribute__ ((always_inline)) void
grad_output_transform (const float *restrict O, float *restrict M, gsize mstride)
{
  for (int h = 0; h < NV; h++)
    {
      v16 t[24];        /* [6][4]: A applied down each column */

      for (int j = 0; j < 4; j++)
        {
          const float *o = O + j * BT + h * 16;
          A6 (LD (o), LD (o + 4 * BT), LD (o + 8 * BT), LD (o + 12 * BT),
              t[j], t[4 + j], t[8 + j], t[12 + j], t[16 + j], t[20 + j]);
        }
      for (int i = 0; i < 6; i++)
        {
          v16 r0, r1, r2, r3, r4, r5;
          float *m = M + (gsize) i * 6 * mstride + h * 16;
          A6 (t[i * 4], t[i * 4 + 1], t[i * 4 + 2], t[i * 4 + 3], r0, r1, r2, r3, r4, r5);
          ST (m, r0);
          ST (m + mstride, r1);
          ST (m + 2 * mstride, r2);
          ST (m + 3 * mstride, r3);
          ST (m + 4 * mstride, r4);
          ST (m + 5 * mstride, r5);
        }
    }
}

static inline __attribute__ ((always_inline)) void
grad_transform_body (CleaveWinogradGrad *gr, const float *x, const float *dy, gsize lo, gsize hi, float *scratch)
{
  const CleaveWinograd *wg = &gr->geom;
  const gsize plane = (gsize) wg->h * wg->w, T = gr->t_cols;
  const int W = wg->w;
  float *D = scratch, *O = D + NP * BT;
  Lane lane[BT];

  for (gsize blk = gr->first + lo; blk < gr->first + hi; blk++)
    {
      const int nl = block_lanes (wg, blk, lane);
      const gsize col = (blk - gr->first) * BT;

      /* lanes past the last tile stay zero in D and O, so their columns of
       * V and dM are zero and add nothing to the products */
      memset (D, 0, NP * BT * sizeof (float));
      for (int c = 0; c < wg->ci; c++)
        {
          const float *xc = x + (gsize) c * plane;
          for (int l = 0; l < nl; l++)
            COPY_RECT (D + lane[l].d0 * BT + l, 6 * BT, BT, xc + lane[l].in, W, 1, lane[l].ni, lane[l].nj);
          input_transform (D, gr->v + (gsize) c * T + col, (gsize) wg->ci * T);
        }
      memset (O, 0, 16 * BT * sizeof (float));
      for (int o = 0; o < wg->co; o++)
        {
          const float *dyo = dy + (gsize) o * plane;
          for (int l = 0; l < nl; l++)
            COPY_RECT (O + l, 4 * BT, BT, dyo + lane[l].out, W, 1, lane[l].oy, lane[l].ox);
          grad_output_transform (O, gr->m + (gsize) o * T + col, (gsize) wg->co * T);
        }
    }
}

#ifdef HAVE_X86
__attribute__ ((target ("avx512f,avx512vl,avx2,fma")))
static void
grad_transform_avx512 (CleaveWinogradGrad *gr, const float *x, const float *dy, gsize lo, gsize hi, float *scratch)
{
  grad_transform_body (gr, x, dy, lo, hi, scratch);
}
#endif

static void
grad_transform_generic (CleaveWinogradGrad *gr, const float *x, const float *dy, gsize lo, gsize hi,
                        float *scratch)
{
  grad_transform_body (gr, x, dy, lo, hi, scratch);
}

void
cleave_winograd_grad_transform (CleaveWinogradGrad *gr, const float *x, const float *dy, gsize lo, gsize hi,
                                float *scratch)
{
#ifdef HAVE_X86
  if (gr->geom.avx512)
    {
      grad_transform_avx512 (gr, x, dy, lo, hi, scratch);
      return;
    }
#endif
  grad_transform_generic (gr, x, dy, lo, hi, scratch);
}

void
cleave_winograd_grad_products (CleaveWinogradGrad *gr, gsize n_cols, gboolean accumulate, gsize lo, gsize hi)
{
  const CleaveWinograd *wg = &gr->geom;
  const gsize T = gr->t_cols;

  for (gsize k = lo; k < hi; k++)
    {
      const int g = (int) (k / NP), p = (int) (k % NP);
      const float *m = gr->m + ((gsize) p * wg->co + (gsize) g * wg->cog) * T;
      const float *v = gr->v + ((gsize) p * wg->ci + (gsize) g * wg->cig) * T;
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, wg->cog, wg->cig, (int) n_cols, 1.0f, m, (int) T,
                   v, (int) T, accumulate ? 1.0f : 0.0f, gr->du + k * wg->cog * wg->cig, wg->cig);
    }
}

void
cleave_winograd_grad_finish (const CleaveWinogradGrad *gr, float *dw, gsize lo, gsize hi)
{
  static const double G[6][3] = {
    { 1.0 / 4, 0, 0 },
    { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
    { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
    { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
    { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
    { 0, 0, 1 },
  };
  const CleaveWinograd *wg = &gr->geom;
  const gsize pc = (gsize) wg->cog * wg->cig;

  for (gsize og = lo; og < hi; og++)
    {
      const int g = (int) og / wg->cog, o = (int) og % wg->cog;
      const float *du = gr->du + (gsize) g * NP * pc + (gsize) o * wg->cig;

      for (int c = 0; c < wg->cig; c++)
        {
          double t[6][3];       /* dU G */
          float *out = dw + (og * wg->cig + c) * 9;

          for (int i = 0; i < 6; i++)
            for (int b = 0; b < 3; b++)
              {
                double s = 0.0;
                for (int j = 0; j < 6; j++)
                  s += (double) du[(i * 6 + j) * pc + c] * G[j][b];
                t[i][b] = s;
              }
          for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++)
              {
                double s = 0.0;
                for (int i = 0; i < 6; i++)
                  s += G[i][a] * t[i][b];
                out[a * 3 + b] = (float) s;
              }
        }
    }
}
