/* test-winograd.c: the cpu backend's Winograd F(4x4, 3x3) convolution
 * (conv-algo winograd) against im2col + sgemm (conv-algo im2col) and against
 * a direct sum in double precision, on awkward shapes: batch 1, maps that
 * are not multiples of the 4x4 tile, 1x1 maps, channel counts that are not
 * multiples of the 8-channel GEMM panels, groups, with and without bias. */
#include <math.h>
#include <string.h>

#include "cleave-ops.h"

/* Where tensor4 and vec make tensors: the default backend, or one of
 * backend_for's while a test runs an algorithm. */
static CleaveBackend *backend;
static CleaveBackend *default_backend;

/* A cpu backend configured with conv-algo @algo (NULL: auto) and Winograd
 * weight-gradient chunks of @chunk floats (0: the default); kept for reuse. */
static CleaveBackend *
backend_for (const char *algo, gsize chunk)
{
  static GHashTable *cache;
  g_autofree char *key = g_strdup_printf ("%s/%" G_GSIZE_FORMAT, algo ? algo : "auto", chunk);
  CleaveBackend *b;

  if (cache == NULL)
    cache = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) cleave_backend_unref);
  b = g_hash_table_lookup (cache, key);
  if (b == NULL)
    {
      g_autoptr (GError) error = NULL;
      CleaveBackendConfig cfg;
      cleave_backend_config_init (&cfg);
      if (algo)
        g_assert_true (cleave_backend_config_set (&cfg, "conv-algo", algo, &error));
      g_assert_no_error (error);
      cfg.winograd_grad_chunk = chunk;
      b = cleave_backend_cpu_new_with_config (&cfg);
      g_hash_table_insert (cache, g_steal_pointer (&key), b);
    }
  return b;
}

/* A copy of @t on @b (NULL stays NULL). */
static CleaveTensor *
moved (const CleaveTensor *t, CleaveBackend *b)
{
  g_autoptr (GError) error = NULL;
  g_autofree float *host = NULL;
  CleaveTensor *c;

  if (t == NULL)
    return NULL;
  host = cleave_tensor_to_host (t, &error);
  g_assert_no_error (error);
  c = cleave_tensor_new (b, t->ndim, t->shape, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_tensor_upload (c, host, cleave_tensor_numel (t), &error));
  return c;
}

typedef struct {
  int n, ci, co, h, w, groups;
  gboolean bias;
} Shape;

static const Shape shapes[] = {
  { 1, 16, 16, 7, 7, 1, TRUE },
  { 2, 3, 5, 5, 3, 1, FALSE },
  { 3, 32, 32, 28, 28, 1, TRUE },
  { 2, 64, 64, 14, 14, 1, FALSE },
  { 1, 32, 64, 14, 14, 1, TRUE },
  { 1, 20, 13, 1, 1, 1, TRUE },
  { 9, 64, 32, 1, 1, 1, TRUE },   /* 1x1 maps: the centre-tap GEMM */
  { 4, 8, 12, 2, 9, 1, FALSE },
  { 2, 32, 48, 9, 10, 2, TRUE },
  { 37, 16, 24, 6, 6, 1, TRUE },  /* several blocks of 32 tiles, the last partial */
  { 2, 1, 32, 8, 8, 1, TRUE },
  { 1, 128, 17, 4, 5, 1, FALSE },
};

/* Max |error| relative to the largest output magnitude, against a double
 * direct sum. F(4, 3) rounds through transforms with coefficients up to 8
 * (output) and 1/24 (weights), so its error is ~10x that of a float sum:
 * with inputs and weights in [-1, 1] and up to 128 input channels it
 * measured up to 5.4e-6 (im2col: 6.5e-7); asserted with headroom. */
#define WINO_BOUND 2e-5
#define IM2COL_BOUND 2e-6

static float *
random_host (GRand *r, gsize n)
{
  float *d = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    d[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  return d;
}

static CleaveTensor *
tensor4 (int n, int c, int h, int w, const float *data)
{
  g_autoptr (GError) error = NULL;
  CleaveTensor *t = cleave_tensor_new_4d (backend, n, c, h, w, &error);
  g_assert_no_error (error);
  if (data)
    {
      cleave_tensor_upload (t, data, cleave_tensor_numel (t), &error);
      g_assert_no_error (error);
    }
  return t;
}

static double *
direct_conv (const Shape *s, const float *x, const float *w, const float *b)
{
  const int cig = s->ci / s->groups, cog = s->co / s->groups, H = s->h, W = s->w;
  double *y = g_new0 (double, (gsize) s->n * s->co * H * W);

  for (int n = 0; n < s->n; n++)
    for (int o = 0; o < s->co; o++)
      {
        const int g = o / cog;
        for (int oy = 0; oy < H; oy++)
          for (int ox = 0; ox < W; ox++)
            {
              double acc = b ? b[o] : 0.0;
              for (int c = 0; c < cig; c++)
                for (int ky = 0; ky < 3; ky++)
                  for (int kx = 0; kx < 3; kx++)
                    {
                      int iy = oy + ky - 1, ix = ox + kx - 1;
                      if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                        continue;
                      acc += (double) x[(((gsize) n * s->ci + g * cig + c) * H + iy) * W + ix]
                             * w[(((gsize) o * cig + c) * 3 + ky) * 3 + kx];
                    }
              y[(((gsize) n * s->co + o) * H + oy) * W + ox] = acc;
            }
      }
  return y;
}

static float *
run_conv (const char *algo, CleaveTensor *x0, CleaveTensor *w0, CleaveTensor *b0, const Shape *s)
{
  CleaveBackend *on = backend_for (algo, 0);
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) x = moved (x0, on), w = moved (w0, on), b = moved (b0, on), y = NULL;
  CleaveConvParams p = { 1, 1, s->groups };
  float *out;

  backend = on;
  y = tensor4 (s->n, s->co, s->h, s->w, NULL);
  backend = default_backend;
  /* garbage in y must be overwritten, including under partial tiles */
  cleave_tensor_fill (y, NAN, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_conv2d_forward (x, w, b, y, &p, &error));
  g_assert_no_error (error);
  out = cleave_tensor_to_host (y, &error);
  g_assert_no_error (error);
  return out;
}

static double
rel_err (const float *got, const double *ref, gsize n)
{
  double maxref = 0.0, maxerr = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      maxref = MAX (maxref, fabs (ref[i]));
      /* NaN compares false: count it as an infinite error */
      double e = fabs ((double) got[i] - ref[i]);
      if (!(e <= maxerr))
        maxerr = isnan (e) ? INFINITY : e;
    }
  return maxerr / MAX (maxref, 1e-30);
}

static void
test_matches_direct (void)
{
  GRand *r = g_rand_new_with_seed (11);
  double worst_w = 0.0, worst_i = 0.0;

  for (gsize k = 0; k < G_N_ELEMENTS (shapes); k++)
    {
      const Shape *s = &shapes[k];
      gsize nx = (gsize) s->n * s->ci * s->h * s->w, ny = (gsize) s->n * s->co * s->h * s->w;
      g_autofree float *xh = random_host (r, nx);
      g_autofree float *wh = random_host (r, (gsize) s->co * (s->ci / s->groups) * 9);
      g_autofree float *bh = s->bias ? random_host (r, s->co) : NULL;
      g_autoptr (CleaveTensor) x = tensor4 (s->n, s->ci, s->h, s->w, xh);
      g_autoptr (CleaveTensor) w = tensor4 (s->co, s->ci / s->groups, 3, 3, wh);
      g_autoptr (CleaveTensor) b = NULL;
      g_autofree double *ref = NULL;
      g_autofree float *yw = NULL, *yi = NULL;
      double ew, ei;

      if (bh)
        {
          g_autoptr (GError) error = NULL;
          int shape[1] = { s->co };
          b = cleave_tensor_new (backend, 1, shape, &error);
          g_assert_no_error (error);
          cleave_tensor_upload (b, bh, s->co, &error);
          g_assert_no_error (error);
        }
      ref = direct_conv (s, xh, wh, bh);
      yw = run_conv ("winograd", x, w, b, s);
      yi = run_conv ("im2col", x, w, b, s);
      ew = rel_err (yw, ref, ny);
      ei = rel_err (yi, ref, ny);
      {
        /* auto: whichever path it takes (1x1 maps: one GEMM over the centre taps) */
        g_autofree float *ya = run_conv (NULL, x, w, b, s);
        g_assert_cmpfloat (rel_err (ya, ref, ny), <=, WINO_BOUND);
      }
      g_test_message ("n %d ci %d co %d %dx%d groups %d bias %d: winograd %.2e, im2col %.2e",
                      s->n, s->ci, s->co, s->h, s->w, s->groups, s->bias, ew, ei);
      g_assert_cmpfloat (ew, <=, WINO_BOUND);
      g_assert_cmpfloat (ei, <=, IM2COL_BOUND);
      worst_w = MAX (worst_w, ew);
      worst_i = MAX (worst_i, ei);
    }
  g_test_message ("worst relative error: winograd %.2e, im2col %.2e", worst_w, worst_i);
  g_rand_free (r);
}

static CleaveTensor *
vec (const float *data, int n)
{
  g_autoptr (GError) error = NULL;
  int shape[1] = { n };
  CleaveTensor *t = cleave_tensor_new (backend, 1, shape, &error);
  g_assert_no_error (error);
  cleave_tensor_upload (t, data, n, &error);
  g_assert_no_error (error);
  return t;
}

/* The inference op conv → batchnorm (running statistics) [→ relu] with the
 * batchnorm folded into the weights (cleave_conv2d_bn_forward), through
 * both algorithms, against the three steps done in double precision. */
static void
test_fused_bn_relu (void)
{
  GRand *r = g_rand_new_with_seed (5);
  const float eps = 1e-5f;

  for (gsize k = 0; k < G_N_ELEMENTS (shapes); k++)
    for (int relu = 0; relu < 2; relu++)
      {
        const Shape *s = &shapes[k];
        const gsize plane = (gsize) s->h * s->w, nx = (gsize) s->n * s->ci * plane, ny = (gsize) s->n * s->co * plane;
        g_autofree float *xh = random_host (r, nx);
        g_autofree float *wh = random_host (r, (gsize) s->co * (s->ci / s->groups) * 9);
        g_autofree float *bh = s->bias ? random_host (r, s->co) : NULL;
        g_autofree float *ga = random_host (r, s->co), *be = random_host (r, s->co), *mu = random_host (r, s->co);
        g_autofree float *var = g_new (float, s->co);
        g_autofree double *ref = NULL;

        for (int c = 0; c < s->co; c++)
          var[c] = (float) g_rand_double_range (r, 0.3, 3.0);
        ref = direct_conv (s, xh, wh, bh);
        for (gsize i = 0; i < ny; i++)
          {
            int c = (int) ((i / plane) % (gsize) s->co);
            double v = (ref[i] - mu[c]) / sqrt ((double) var[c] + eps) * ga[c] + be[c];
            ref[i] = relu && v < 0 ? 0 : v;
          }
        for (int a = 0; a < 2; a++)
          {
            g_autoptr (GError) error = NULL;
            g_autoptr (CleaveTensor) x = NULL, w = NULL, b = NULL, tg = NULL, tb = NULL, tm = NULL, tv = NULL;
            g_autoptr (CleaveTensor) y = NULL;
            CleaveConvParams p = { 1, 1, s->groups, relu };
            g_autofree float *got = NULL;
            double e;

            backend = backend_for (a ? "winograd" : "im2col", 0);
            x = tensor4 (s->n, s->ci, s->h, s->w, xh);
            w = tensor4 (s->co, s->ci / s->groups, 3, 3, wh);
            b = bh ? vec (bh, s->co) : NULL;
            tg = vec (ga, s->co), tb = vec (be, s->co), tm = vec (mu, s->co), tv = vec (var, s->co);
            y = tensor4 (s->n, s->co, s->h, s->w, NULL);
            backend = default_backend;
            cleave_tensor_fill (y, NAN, &error);
            g_assert_true (cleave_conv2d_bn_forward (x, w, b, tg, tb, tm, tv, eps, y, &p, &error));
            g_assert_no_error (error);
            got = cleave_tensor_to_host (y, &error);
            e = rel_err (got, ref, ny);
            /* the folded weights add one rounding per weight to the bounds above */
            g_assert_cmpfloat (e, <=, a ? 2 * WINO_BOUND : 2 * IM2COL_BOUND);
            if (relu)
              for (gsize i = 0; i < ny; i++)
                g_assert_cmpfloat (got[i], >=, 0.0f);
          }
      }
  g_rand_free (r);
}

/* Missing batchnorm parameters and a zero eps are refused with the field named. */
static void
test_fused_bad_input (void)
{
  g_autoptr (GError) error = NULL;
  float one[4] = { 1, 1, 1, 1 };
  g_autoptr (CleaveTensor) x = tensor4 (1, 4, 5, 5, NULL), w = tensor4 (4, 4, 3, 3, NULL);
  g_autoptr (CleaveTensor) y = tensor4 (1, 4, 5, 5, NULL), v = vec (one, 4), v3 = vec (one, 3);
  CleaveConvParams p = { 1, 1, 1, TRUE };

  g_assert_false (cleave_conv2d_bn_forward (x, w, NULL, NULL, v, v, v, 1e-5f, y, &p, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (cleave_conv2d_bn_forward (x, w, NULL, v, v, v3, v, 1e-5f, y, &p, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "running mean"));
  g_clear_error (&error);
  g_assert_false (cleave_conv2d_bn_forward (x, w, NULL, v, v, v, v, 0.0f, y, &p, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "eps"));
}

/* conv-algo auto picks Winograd for the benchmark CNN's layers and
 * im2col where Winograd does not pay off (1 input channel, 2x2 maps). */
static void
test_auto_choice (void)
{
  static const Shape wino[] = { { 2, 32, 32, 28, 28, 1, TRUE }, { 2, 32, 64, 14, 14, 1, FALSE },
                                { 2, 8, 8, 14, 14, 1, FALSE } };
  static const Shape im2col[] = { { 2, 1, 32, 28, 28, 1, TRUE }, { 2, 64, 64, 2, 2, 1, TRUE },
                                  { 2, 4, 8, 14, 14, 1, FALSE } };
  GRand *r = g_rand_new_with_seed (5);

  for (int pass = 0; pass < 2; pass++)
    {
      const Shape *list = pass == 0 ? wino : im2col;
      gsize count = pass == 0 ? G_N_ELEMENTS (wino) : G_N_ELEMENTS (im2col);
      for (gsize k = 0; k < count; k++)
        {
          const Shape *s = &list[k];
          gsize nx = (gsize) s->n * s->ci * s->h * s->w, ny = (gsize) s->n * s->co * s->h * s->w;
          g_autofree float *xh = random_host (r, nx);
          g_autofree float *wh = random_host (r, (gsize) s->co * s->ci * 9);
          g_autoptr (CleaveTensor) x = tensor4 (s->n, s->ci, s->h, s->w, xh);
          g_autoptr (CleaveTensor) w = tensor4 (s->co, s->ci, 3, 3, wh);
          g_autofree float *ya = run_conv (NULL, x, w, NULL, s);
          g_autofree float *ye = run_conv (pass == 0 ? "winograd" : "im2col", x, w, NULL, s);
          g_autofree float *yo = run_conv (pass == 0 ? "im2col" : "winograd", x, w, NULL, s);

          /* same algorithm: bit-identical; the other one rounds differently */
          g_assert_cmpmem (ya, ny * sizeof (float), ye, ny * sizeof (float));
          g_assert_true (memcmp (ya, yo, ny * sizeof (float)) != 0);
        }
    }
  g_rand_free (r);
}

/* dx[n, c, y, x] = sum over o, ky, kx of dy[n, o, y - ky + 1, x - kx + 1] * w[o, c, ky, kx] */
static double *
direct_backward_data (const Shape *s, const float *dy, const float *w)
{
  const int cig = s->ci / s->groups, cog = s->co / s->groups, H = s->h, W = s->w;
  double *dx = g_new0 (double, (gsize) s->n * s->ci * H * W);

  for (int n = 0; n < s->n; n++)
    for (int o = 0; o < s->co; o++)
      for (int c = 0; c < cig; c++)
        for (int oy = 0; oy < H; oy++)
          for (int ox = 0; ox < W; ox++)
            {
              const double g = dy[(((gsize) n * s->co + o) * H + oy) * W + ox];
              for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                  {
                    int iy = oy + ky - 1, ix = ox + kx - 1;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                      continue;
                    dx[(((gsize) n * s->ci + (o / cog) * cig + c) * H + iy) * W + ix]
                      += g * w[(((gsize) o * cig + c) * 3 + ky) * 3 + kx];
                  }
            }
  return dx;
}

/* dw[o, c, ky, kx] = sum over n, y, x of dy[n, o, y, x] * x[n, g*cig + c, y + ky - 1, x + kx - 1] */
static double *
direct_backward_weights (const Shape *s, const float *x, const float *dy)
{
  const int cig = s->ci / s->groups, cog = s->co / s->groups, H = s->h, W = s->w;
  double *dw = g_new0 (double, (gsize) s->co * cig * 9);

  for (int n = 0; n < s->n; n++)
    for (int o = 0; o < s->co; o++)
      for (int c = 0; c < cig; c++)
        for (int ky = 0; ky < 3; ky++)
          for (int kx = 0; kx < 3; kx++)
            {
              double acc = 0.0;
              for (int oy = 0; oy < H; oy++)
                for (int ox = 0; ox < W; ox++)
                  {
                    int iy = oy + ky - 1, ix = ox + kx - 1;
                    if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                      continue;
                    acc += (double) dy[(((gsize) n * s->co + o) * H + oy) * W + ox]
                           * x[(((gsize) n * s->ci + (o / cog) * cig + c) * H + iy) * W + ix];
                  }
              dw[(((gsize) o * cig + c) * 3 + ky) * 3 + kx] += acc;
            }
  return dw;
}

static void
run_backward (const char *algo, gsize chunk, CleaveTensor *x0, CleaveTensor *w0, CleaveTensor *dy0, const Shape *s,
              float **dx_out, float **dw_out)
{
  CleaveBackend *on = backend_for (algo, chunk);
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) x = moved (x0, on), w = moved (w0, on), dy = moved (dy0, on), dx = NULL, dw = NULL;
  CleaveConvParams p = { 1, 1, s->groups };

  backend = on;
  dx = tensor4 (s->n, s->ci, s->h, s->w, NULL);
  dw = tensor4 (s->co, s->ci / s->groups, 3, 3, NULL);
  backend = default_backend;
  cleave_tensor_fill (dx, NAN, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_conv2d_backward (x, w, dy, dx, dw, NULL, &p, &error));
  g_assert_no_error (error);
  *dx_out = cleave_tensor_to_host (dx, &error);
  g_assert_no_error (error);
  *dw_out = cleave_tensor_to_host (dw, &error);
  g_assert_no_error (error);
}

/* The input gradient through Winograd (the output gradient convolved with
 * the turned, channel-swapped weights) and the weight gradient through
 * Winograd (36 products over the tiles, then G^T dU G) against double sums,
 * with im2col alongside. */
static void
test_backward_data (void)
{
  GRand *r = g_rand_new_with_seed (17);
  double worst = 0.0;

  for (gsize k = 0; k < G_N_ELEMENTS (shapes); k++)
    {
      const Shape *s = &shapes[k];
      const gsize nx = (gsize) s->n * s->ci * s->h * s->w, ny = (gsize) s->n * s->co * s->h * s->w;
      const gsize nw = (gsize) s->co * (s->ci / s->groups) * 9;
      g_autofree float *xh = random_host (r, nx);
      g_autofree float *wh = random_host (r, nw);
      g_autofree float *dyh = random_host (r, ny);
      g_autoptr (CleaveTensor) x = tensor4 (s->n, s->ci, s->h, s->w, xh);
      g_autoptr (CleaveTensor) w = tensor4 (s->co, s->ci / s->groups, 3, 3, wh);
      g_autoptr (CleaveTensor) dy = tensor4 (s->n, s->co, s->h, s->w, dyh);
      g_autofree double *ref = direct_backward_data (s, dyh, wh);
      g_autofree double *refw = direct_backward_weights (s, xh, dyh);
      g_autofree float *dxw = NULL, *dww = NULL, *dxi = NULL, *dwi = NULL;
      double ew, ei, eww, ewi;

      /* every other shape in chunks of 1 tile block: the weight gradient
       * then sums over several chunks */
      run_backward ("winograd", k % 2 ? 1 : 0, x, w, dy, s, &dxw, &dww);
      run_backward ("im2col", 0, x, w, dy, s, &dxi, &dwi);
      ew = rel_err (dxw, ref, nx);
      ei = rel_err (dxi, ref, nx);
      eww = rel_err (dww, refw, nw);
      ewi = rel_err (dwi, refw, nw);
      g_test_message ("n %d ci %d co %d %dx%d groups %d: dx winograd %.2e, im2col %.2e; "
                      "dw winograd %.2e, im2col %.2e",
                      s->n, s->ci, s->co, s->h, s->w, s->groups, ew, ei, eww, ewi);
      g_assert_cmpfloat (ew, <=, WINO_BOUND);
      g_assert_cmpfloat (ei, <=, IM2COL_BOUND);
      g_assert_cmpfloat (eww, <=, WINO_BOUND);
      g_assert_cmpfloat (ewi, <=, IM2COL_BOUND);
      worst = MAX (worst, MAX (ew, eww));
    }
  g_test_message ("worst relative error of dx and dw through winograd: %.2e", worst);
  g_rand_free (r);
}

/* An unknown conv-algo is refused, naming the setting and the value (no
 * silent fallback to auto); so are bad numbers and unknown settings. */
static void
test_unknown_algo_refused (void)
{
  CleaveBackendConfig cfg;
  GError *error = NULL;
  g_auto (GStrv) env = g_environ_setenv (NULL, "CLEAVE_CONV_ALGO", "no-such-algo", TRUE);

  cleave_backend_config_init (&cfg);
  g_assert_false (cleave_backend_config_set (&cfg, "conv-algo", "no-such-algo", &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "conv-algo"));
  g_assert_nonnull (strstr (error->message, "no-such-algo"));
  g_clear_error (&error);
  g_assert_cmpint (cfg.conv_algo, ==, CLEAVE_CONV_ALGO_AUTO);
  g_assert_false (cleave_backend_config_from_environ (&cfg, env, NULL, &error));
  g_assert_nonnull (strstr (error->message, "CLEAVE_CONV_ALGO"));
  g_clear_error (&error);
  g_assert_false (cleave_backend_config_set (&cfg, "threads", "two", &error));
  g_clear_error (&error);
  g_assert_false (cleave_backend_config_set (&cfg, "no-such-setting", "1", &error));
  g_clear_error (&error);
  g_assert_true (cleave_backend_config_set (&cfg, "conv-algo", "winograd", &error));
  g_assert_cmpint (cfg.conv_algo, ==, CLEAVE_CONV_ALGO_WINOGRAD);
  {
    g_autofree char *d = cleave_backend_config_describe (&cfg);
    g_assert_cmpstr (d, ==, "conv-algo winograd");
  }
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  default_backend = backend = cleave_backend_cpu_new ();
  g_test_add_func ("/core/conv2d/winograd/matches-direct", test_matches_direct);
  g_test_add_func ("/core/conv2d/winograd/backward-data", test_backward_data);
  g_test_add_func ("/core/conv2d/winograd/auto-choice", test_auto_choice);
  g_test_add_func ("/core/conv2d/winograd/unknown-algo-refused", test_unknown_algo_refused);
  g_test_add_func ("/core/conv2d/bn-relu-fused/matches-direct", test_fused_bn_relu);
  g_test_add_func ("/core/conv2d/bn-relu-fused/bad-input", test_fused_bad_input);
  rc = g_test_run ();
  cleave_backend_unref (backend);
  return rc;
}
