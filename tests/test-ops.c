/* test-ops.c: the cpu backend, through the checked wrappers of cleave-ops.h,
 * against PyTorch golden files (tests/reference/make_golden.py), against
 * finite differences, and on malformed calls. */
#include <math.h>
#include <string.h>

#include "cleave-ops.h"
#include "cleave-safetensors.h"

static CleaveBackend *backend;

/* ------------------------------------------------------------- helpers */

static CleaveTensor *
tensor (int ndim, int a, int b, int c, int d)
{
  int shape[4] = { a, b, c, d };
  g_autoptr (GError) error = NULL;
  CleaveTensor *t = cleave_tensor_new (backend, ndim, shape, &error);
  g_assert_no_error (error);
  return t;
}

static CleaveTensor *
tensor_like (const CleaveTensor *o)
{
  g_autoptr (GError) error = NULL;
  CleaveTensor *t = cleave_tensor_new (backend, o->ndim, o->shape, &error);
  g_assert_no_error (error);
  return t;
}

static void
upload (CleaveTensor *t, const float *data)
{
  g_autoptr (GError) error = NULL;
  cleave_tensor_upload (t, data, cleave_tensor_numel (t), &error);
  g_assert_no_error (error);
}

static float *
host (const CleaveTensor *t)
{
  g_autoptr (GError) error = NULL;
  float *d = cleave_tensor_to_host (t, &error);
  g_assert_no_error (error);
  return d;
}

static float *
random_host (GRand *r, gsize n, double lo, double hi)
{
  float *d = g_new (float, n);
  for (gsize i = 0; i < n; i++)
    d[i] = (float) g_rand_double_range (r, lo, hi);
  return d;
}

static CleaveTensor *
random_tensor (GRand *r, int ndim, int a, int b, int c, int d)
{
  CleaveTensor *t = tensor (ndim, a, b, c, d);
  g_autofree float *v = random_host (r, cleave_tensor_numel (t), -1.0, 1.0);
  upload (t, v);
  return t;
}

/* ------------------------------------------------------- golden files */

typedef struct {
  CleaveSafetensors *st;
  char *path;
} Golden;

static Golden *
golden_open (const char *name)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *file = g_strconcat (name, ".safetensors", NULL);
  Golden *g = g_new0 (Golden, 1);

  g->path = g_test_build_filename (G_TEST_DIST, "reference", "golden", file, NULL);
  g->st = cleave_safetensors_load (g->path, &error);
  g_assert_no_error (error);
  return g;
}

static void
golden_close (Golden *g)
{
  cleave_safetensors_free (g->st);
  g_free (g->path);
  g_free (g);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Golden, golden_close)

static double
golden_meta (Golden *g, const char *key)
{
  const char *v = cleave_safetensors_get_metadata (g->st, key);
  g_assert_nonnull (v);
  return g_ascii_strtod (v, NULL);
}

static float *
golden_data (Golden *g, const char *name, gsize *n, int *ndim, int *shape)
{
  g_autoptr (GError) error = NULL;
  const CleaveSafeTensor *t = cleave_safetensors_find (g->st, name);
  float *d;

  if (t == NULL)
    g_error ("%s: no tensor '%s'", g->path, name);
  d = cleave_safe_tensor_to_f32 (t, 0, g->path, &error);
  g_assert_no_error (error);
  *n = cleave_safe_tensor_numel (t);
  if (ndim)
    {
      *ndim = t->ndim;
      for (int i = 0; i < t->ndim; i++)
        shape[i] = (int) t->shape[i];
    }
  return d;
}

/* A backend tensor holding the golden tensor @name with its shape. */
static CleaveTensor *
golden_tensor (Golden *g, const char *name)
{
  gsize n;
  int ndim, shape[8];
  g_autofree float *d = golden_data (g, name, &n, &ndim, shape);
  g_autoptr (GError) error = NULL;
  CleaveTensor *t = cleave_tensor_new (backend, ndim, shape, &error);
  g_assert_no_error (error);
  upload (t, d);
  return t;
}

/* max |got - want| must stay below @tol times the scale of the reference
 * (its largest magnitude, at least 1): a relative bound that does not blow
 * up on entries near zero. */
static void
assert_close_host (const char *what, const float *got, const float *want, gsize n, double tol)
{
  double scale = 1.0, worst = 0.0;
  gsize at = 0;

  for (gsize i = 0; i < n; i++)
    scale = MAX (scale, fabs (want[i]));
  for (gsize i = 0; i < n; i++)
    {
      double e = fabs ((double) got[i] - want[i]);
      if (!(e <= worst))
        {
          worst = e;
          at = i;
          if (isnan (e))
            break;
        }
    }
  if (!(worst <= tol * scale))
    g_error ("%s: element %zu is %.8g, expected %.8g (max error %.3g > %.3g)",
             what, at, got[at], want[at], worst, tol * scale);
  g_assert_cmpfloat (worst, <=, tol * scale);
}

static void
assert_golden (Golden *g, const char *name, const CleaveTensor *t, double tol)
{
  gsize n;
  g_autofree float *want = golden_data (g, name, &n, NULL, NULL);
  g_autofree float *got = host (t);
  g_autofree char *what = g_strdup_printf ("%s:%s", g->path, name);

  g_assert_cmpuint (n, ==, cleave_tensor_numel (t));
  assert_close_host (what, got, want, n, tol);
}

/* ------------------------------------------------------ golden: conv2d */

static void
test_conv2d_golden (gconstpointer data)
{
  g_autoptr (Golden) g = golden_open (data);
  g_autoptr (GError) error = NULL;
  CleaveConvParams p = { (int) golden_meta (g, "stride"), (int) golden_meta (g, "pad"),
                         (int) golden_meta (g, "groups") };
  gboolean has_bias = cleave_safetensors_find (g->st, "b") != NULL;
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) w = golden_tensor (g, "w");
  g_autoptr (CleaveTensor) b = has_bias ? golden_tensor (g, "b") : NULL;
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (dy);
  g_autoptr (CleaveTensor) dx = tensor_like (x);
  g_autoptr (CleaveTensor) dw = tensor_like (w);
  g_autoptr (CleaveTensor) db = has_bias ? tensor_like (b) : NULL;

  /* Bound: 1e-5 of the largest magnitude (float32 sums of <= 100 terms). */
  g_assert_true (cleave_conv2d_forward (x, w, b, y, &p, &error));
  g_assert_no_error (error);
  assert_golden (g, "y", y, 1e-5);

  /* Garbage in the outputs must not leak in: they are overwritten. */
  cleave_tensor_fill (dx, 7.0f, NULL);
  cleave_tensor_fill (dw, 7.0f, NULL);
  g_assert_true (cleave_conv2d_backward (x, w, dy, dx, dw, db, &p, &error));
  g_assert_no_error (error);
  assert_golden (g, "dx", dx, 1e-5);
  assert_golden (g, "dw", dw, 1e-5);
  if (has_bias)
    assert_golden (g, "db", db, 1e-5);

  /* Optional outputs can be skipped one at a time. */
  cleave_tensor_fill (dw, 0.0f, NULL);
  g_assert_true (cleave_conv2d_backward (x, w, dy, NULL, dw, NULL, &p, &error));
  assert_golden (g, "dw", dw, 1e-5);
  cleave_tensor_fill (dx, 0.0f, NULL);
  g_assert_true (cleave_conv2d_backward (x, w, dy, dx, NULL, NULL, &p, &error));
  assert_golden (g, "dx", dx, 1e-5);
}

/* --------------------------------------------------- golden: batchnorm */

static void
test_batchnorm_train_golden (void)
{
  g_autoptr (Golden) g = golden_open ("batchnorm_train");
  g_autoptr (GError) error = NULL;
  float eps = golden_meta (g, "eps"), momentum = golden_meta (g, "momentum");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) gamma = golden_tensor (g, "gamma");
  g_autoptr (CleaveTensor) beta = golden_tensor (g, "beta");
  g_autoptr (CleaveTensor) rm = golden_tensor (g, "running_mean");
  g_autoptr (CleaveTensor) rv = golden_tensor (g, "running_var");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) sm = tensor_like (gamma);
  g_autoptr (CleaveTensor) si = tensor_like (gamma);
  g_autoptr (CleaveTensor) dx = tensor_like (x);
  g_autoptr (CleaveTensor) dg = tensor_like (gamma);
  g_autoptr (CleaveTensor) dbeta = tensor_like (gamma);

  /* Bound 1e-5 relative to the largest magnitude for every output. */
  g_assert_true (cleave_batchnorm_forward (x, gamma, beta, rm, rv, y, sm, si, TRUE, momentum, eps, &error));
  g_assert_no_error (error);
  assert_golden (g, "y", y, 1e-5);
  assert_golden (g, "save_mean", sm, 1e-5);
  assert_golden (g, "save_invstd", si, 1e-5);
  assert_golden (g, "running_mean_after", rm, 1e-5);
  assert_golden (g, "running_var_after", rv, 1e-5);

  g_assert_true (cleave_batchnorm_backward (x, gamma, sm, si, dy, dx, dg, dbeta, TRUE, &error));
  g_assert_no_error (error);
  assert_golden (g, "dx", dx, 1e-5);
  assert_golden (g, "dgamma", dg, 1e-5);
  assert_golden (g, "dbeta", dbeta, 1e-5);
}

static void
test_batchnorm_eval_golden (void)
{
  g_autoptr (Golden) g = golden_open ("batchnorm_eval");
  g_autoptr (GError) error = NULL;
  float eps = golden_meta (g, "eps");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) gamma = golden_tensor (g, "gamma");
  g_autoptr (CleaveTensor) beta = golden_tensor (g, "beta");
  g_autoptr (CleaveTensor) rm = golden_tensor (g, "running_mean");
  g_autoptr (CleaveTensor) rv = golden_tensor (g, "running_var");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) si = tensor_like (gamma);
  g_autoptr (CleaveTensor) dx = tensor_like (x);
  g_autoptr (CleaveTensor) dg = tensor_like (gamma);
  g_autoptr (CleaveTensor) dbeta = tensor_like (gamma);
  g_autofree float *rv_h = host (rv), *rm_before = host (rm), *rm_after = NULL;
  float si_h[4];

  g_assert_true (cleave_batchnorm_forward (x, gamma, beta, rm, rv, y, NULL, NULL, FALSE, 0.1f, eps, &error));
  g_assert_no_error (error);
  assert_golden (g, "y", y, 1e-5);
  rm_after = host (rm);
  g_assert_cmpmem (rm_before, 4 * sizeof (float), rm_after, 4 * sizeof (float));

  /* eval backward takes the running mean and 1/sqrt(var+eps) as "saved" */
  for (int c = 0; c < 4; c++)
    si_h[c] = 1.0f / sqrtf (rv_h[c] + eps);
  upload (si, si_h);
  g_assert_true (cleave_batchnorm_backward (x, gamma, rm, si, dy, dx, dg, dbeta, FALSE, &error));
  g_assert_no_error (error);
  assert_golden (g, "dx", dx, 1e-5);
  assert_golden (g, "dgamma", dg, 1e-5);
  assert_golden (g, "dbeta", dbeta, 1e-5);
}

/* ------------------------------------------ golden: activations, pools */

static void
test_relu_golden (void)
{
  g_autoptr (Golden) g = golden_open ("relu");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) dx = tensor_like (x);

  /* exact ops: bound 0 */
  g_assert_true (cleave_relu_forward (x, y, NULL));
  assert_golden (g, "y", y, 0.0);
  g_assert_true (cleave_relu_backward (y, dy, dx, NULL));
  assert_golden (g, "dx", dx, 0.0);
}

static void
test_sigmoid_golden (void)
{
  g_autoptr (Golden) g = golden_open ("sigmoid");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) dx = tensor_like (x);

  /* bound 1e-6 relative to the largest magnitude */
  g_assert_true (cleave_sigmoid_forward (x, y, NULL));
  assert_golden (g, "y", y, 1e-6);
  g_assert_true (cleave_sigmoid_backward (y, dy, dx, NULL));
  assert_golden (g, "dx", dx, 1e-6);
}

static void
test_pool_golden (gconstpointer data)
{
  const char *name = data;
  gboolean is_max = g_str_has_prefix (name, "maxpool");
  g_autoptr (Golden) g = golden_open (name);
  g_autoptr (GError) error = NULL;
  CleavePoolParams p = { (int) golden_meta (g, "kernel"), (int) golden_meta (g, "stride"),
                         (int) golden_meta (g, "pad") };
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (dy);
  g_autoptr (CleaveTensor) dx = tensor_like (x);

  /* max pool is exact (bound 0; ties must pick the first maximum);
   * average pool bound 1e-6 */
  if (is_max)
    {
      g_assert_true (cleave_maxpool_forward (x, y, &p, &error));
      g_assert_no_error (error);
      assert_golden (g, "y", y, 0.0);
      g_assert_true (cleave_maxpool_backward (x, dy, dx, &p, &error));
      g_assert_no_error (error);
      assert_golden (g, "dx", dx, 1e-6);
    }
  else
    {
      g_assert_true (cleave_avgpool_forward (x, y, &p, &error));
      g_assert_no_error (error);
      assert_golden (g, "y", y, 1e-6);
      g_assert_true (cleave_avgpool_backward (dy, dx, &p, &error));
      g_assert_no_error (error);
      assert_golden (g, "dx", dx, 1e-6);
    }
}

static void
test_global_avgpool_golden (void)
{
  g_autoptr (Golden) g = golden_open ("global_avgpool");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (dy);
  g_autoptr (CleaveTensor) dx = tensor_like (x);

  /* bound 1e-6 */
  g_assert_true (cleave_global_avgpool_forward (x, y, NULL));
  assert_golden (g, "y", y, 1e-6);
  g_assert_true (cleave_global_avgpool_backward (dy, dx, NULL));
  assert_golden (g, "dx", dx, 1e-6);
}

static void
test_linear_golden (void)
{
  g_autoptr (Golden) g = golden_open ("linear");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) w = golden_tensor (g, "w");
  g_autoptr (CleaveTensor) b = golden_tensor (g, "b");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (dy);
  g_autoptr (CleaveTensor) dx = tensor_like (x);
  g_autoptr (CleaveTensor) dw = tensor_like (w);
  g_autoptr (CleaveTensor) db = tensor_like (b);

  /* bound 1e-5 */
  g_assert_true (cleave_linear_forward (x, w, b, y, NULL));
  assert_golden (g, "y", y, 1e-5);
  g_assert_true (cleave_linear_backward (x, w, dy, dx, dw, db, NULL));
  assert_golden (g, "dx", dx, 1e-5);
  assert_golden (g, "dw", dw, 1e-5);
  assert_golden (g, "db", db, 1e-5);
}

/* --------------------------------- golden: add, concat, mask, softmax */

static void
test_add_golden (void)
{
  g_autoptr (Golden) g = golden_open ("add");
  g_autoptr (CleaveTensor) a = golden_tensor (g, "a");
  g_autoptr (CleaveTensor) b = golden_tensor (g, "b");
  g_autoptr (CleaveTensor) y = tensor_like (a);

  /* bound 1e-6 */
  g_assert_true (cleave_axpby (1.0f, a, 1.0f, b, y, NULL));
  assert_golden (g, "y", y, 1e-6);
  g_assert_true (cleave_axpby (golden_meta (g, "alpha"), a, golden_meta (g, "beta"), b, y, NULL));
  assert_golden (g, "y_scaled", y, 1e-6);
  /* in place: a = a + b */
  g_assert_true (cleave_axpby (1.0f, a, 1.0f, b, a, NULL));
  assert_golden (g, "y", a, 1e-6);
}

static void
test_concat_golden (void)
{
  g_autoptr (Golden) g = golden_open ("concat");
  g_autoptr (CleaveTensor) a = golden_tensor (g, "a");
  g_autoptr (CleaveTensor) b = golden_tensor (g, "b");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (dy);
  g_autoptr (CleaveTensor) da = tensor_like (a);
  g_autoptr (CleaveTensor) db = tensor_like (b);

  /* copies: bound 0 */
  g_assert_true (cleave_channel_copy_in (a, y, 0, NULL));
  g_assert_true (cleave_channel_copy_in (b, y, a->shape[1], NULL));
  assert_golden (g, "y", y, 0.0);
  g_assert_true (cleave_channel_copy_out (dy, 0, da, NULL));
  g_assert_true (cleave_channel_copy_out (dy, a->shape[1], db, NULL));
  assert_golden (g, "da", da, 0.0);
  assert_golden (g, "db", db, 0.0);
}

static void
test_mask_golden (void)
{
  g_autoptr (Golden) g = golden_open ("mask");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) m = golden_tensor (g, "m");
  g_autoptr (CleaveTensor) dy = golden_tensor (g, "dy");
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) dx = tensor_like (x);
  g_autoptr (CleaveTensor) dm = tensor_like (m);

  /* bound 1e-6; dm sums 18 products: 1e-5 */
  g_assert_true (cleave_mask_forward (x, m, y, NULL));
  assert_golden (g, "y", y, 1e-6);
  g_assert_true (cleave_mask_backward (x, m, dy, dx, dm, NULL));
  assert_golden (g, "dx", dx, 1e-6);
  assert_golden (g, "dm", dm, 1e-5);
  cleave_tensor_fill (dm, 3.0f, NULL);
  g_assert_true (cleave_mask_backward (x, m, dy, NULL, dm, NULL));
  assert_golden (g, "dm", dm, 1e-5);
}

static void
test_softmax_ce_golden (void)
{
  g_autoptr (Golden) g = golden_open ("softmax_ce");
  g_autoptr (CleaveTensor) logits = golden_tensor (g, "logits");
  g_autoptr (CleaveTensor) labels = golden_tensor (g, "labels");
  g_autoptr (CleaveTensor) loss = tensor (1, 1, 0, 0, 0);
  g_autoptr (CleaveTensor) d = tensor_like (logits);

  /* bound 1e-6 */
  g_assert_true (cleave_softmax_ce (logits, labels, loss, d, NULL));
  assert_golden (g, "loss", loss, 1e-6);
  assert_golden (g, "dlogits", d, 1e-6);
  g_assert_true (cleave_softmax_ce (logits, labels, loss, NULL, NULL));
  assert_golden (g, "loss", loss, 1e-6);
}

/* ------------------------------------------------- golden: optimisers */

static void
test_sgd_golden (void)
{
  g_autoptr (Golden) g = golden_open ("sgd");
  g_autoptr (CleaveTensor) p = golden_tensor (g, "param");
  g_autoptr (CleaveTensor) buf = tensor_like (p);
  float lr = golden_meta (g, "lr"), mom = golden_meta (g, "momentum"), wd = golden_meta (g, "weight_decay");

  cleave_tensor_fill (buf, 5.0f, NULL);   /* ignored on the first step */
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *gn = g_strdup_printf ("grad%d", i);
      g_autofree char *pn = g_strdup_printf ("param%d", i);
      g_autofree char *bn = g_strdup_printf ("buf%d", i);
      g_autoptr (CleaveTensor) grad = golden_tensor (g, gn);
      /* bound 1e-6 per step */
      g_assert_true (cleave_sgd_step (p, grad, buf, lr, mom, wd, i == 0, NULL));
      assert_golden (g, pn, p, 1e-6);
      assert_golden (g, bn, buf, 1e-6);
    }
}

static void
test_adam_golden (void)
{
  g_autoptr (Golden) g = golden_open ("adam");
  g_autoptr (CleaveTensor) p = golden_tensor (g, "param");
  g_autoptr (CleaveTensor) m = tensor_like (p);
  g_autoptr (CleaveTensor) v = tensor_like (p);

  cleave_tensor_fill (m, 0.0f, NULL);
  cleave_tensor_fill (v, 0.0f, NULL);
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *gn = g_strdup_printf ("grad%d", i);
      g_autofree char *pn = g_strdup_printf ("param%d", i);
      g_autofree char *mn = g_strdup_printf ("m%d", i);
      g_autofree char *vn = g_strdup_printf ("v%d", i);
      g_autoptr (CleaveTensor) grad = golden_tensor (g, gn);
      /* bound 1e-6 per step */
      g_assert_true (cleave_adam_step (p, grad, m, v, golden_meta (g, "lr"), golden_meta (g, "beta1"),
                                       golden_meta (g, "beta2"), golden_meta (g, "eps"),
                                       golden_meta (g, "weight_decay"), i + 1, NULL));
      assert_golden (g, pn, p, 1e-6);
      assert_golden (g, mn, m, 1e-6);
      assert_golden (g, vn, v, 1e-6);
    }
}

/* ---------------------------------------------------- golden: network */

/* conv(1->4, 3x3, pad 1) - bn - relu - maxpool 2 - flatten - linear(64->3),
 * batch 4: forward, backward and one SGD step, all through the wrappers. */
static void
test_network_golden (void)
{
  g_autoptr (Golden) g = golden_open ("network");
  g_autoptr (GError) error = NULL;
  const char *pnames[] = { "conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias" };
  CleaveTensor *P[6], *G[6], *Buf[6];
  CleaveConvParams cp = { 1, 1, 1 };
  CleavePoolParams pp = { 2, 2, 0 };
  float lr = golden_meta (g, "lr"), mom = golden_meta (g, "momentum"), wd = golden_meta (g, "weight_decay");
  g_autoptr (CleaveTensor) x = golden_tensor (g, "x");
  g_autoptr (CleaveTensor) labels = golden_tensor (g, "labels");
  g_autoptr (CleaveTensor) rm = golden_tensor (g, "bn.running_mean");
  g_autoptr (CleaveTensor) rv = golden_tensor (g, "bn.running_var");
  g_autoptr (CleaveTensor) c1 = tensor (4, 4, 4, 8, 8);
  g_autoptr (CleaveTensor) bn = tensor (4, 4, 4, 8, 8);
  g_autoptr (CleaveTensor) r = tensor (4, 4, 4, 8, 8);
  g_autoptr (CleaveTensor) pool = tensor (4, 4, 4, 4, 4);
  g_autoptr (CleaveTensor) logits = tensor (2, 4, 3, 0, 0);
  g_autoptr (CleaveTensor) loss = tensor (1, 1, 0, 0, 0);
  g_autoptr (CleaveTensor) dlogits = tensor_like (logits);
  g_autoptr (CleaveTensor) dpool = tensor_like (pool);
  g_autoptr (CleaveTensor) dr = tensor_like (r);
  g_autoptr (CleaveTensor) dbn = tensor_like (bn);
  g_autoptr (CleaveTensor) dc1 = tensor_like (c1);
  g_autoptr (CleaveTensor) sm = tensor (1, 4, 0, 0, 0);
  g_autoptr (CleaveTensor) si = tensor (1, 4, 0, 0, 0);
  int flat_shape[2] = { 4, 64 };
  g_autoptr (CleaveTensor) flat = cleave_tensor_reshape (pool, 2, flat_shape);
  g_autoptr (CleaveTensor) dflat = cleave_tensor_reshape (dpool, 2, flat_shape);

  for (int i = 0; i < 6; i++)
    {
      P[i] = golden_tensor (g, pnames[i]);
      G[i] = tensor_like (P[i]);
      Buf[i] = tensor_like (P[i]);
    }

  g_assert_true (cleave_conv2d_forward (x, P[0], P[1], c1, &cp, &error));
  g_assert_true (cleave_batchnorm_forward (c1, P[2], P[3], rm, rv, bn, sm, si, TRUE, 0.1f, 1e-5f, &error));
  g_assert_true (cleave_relu_forward (bn, r, &error));
  g_assert_true (cleave_maxpool_forward (r, pool, &pp, &error));
  g_assert_true (cleave_linear_forward (flat, P[4], P[5], logits, &error));
  g_assert_true (cleave_softmax_ce (logits, labels, loss, dlogits, &error));
  g_assert_no_error (error);
  /* bounds: 1e-5 forward, 1e-4 for gradients (they pass through BN's
   * batch statistics, which amplify float32 rounding) */
  assert_golden (g, "logits", logits, 1e-5);
  assert_golden (g, "loss", loss, 1e-5);

  g_assert_true (cleave_linear_backward (flat, P[4], dlogits, dflat, G[4], G[5], &error));
  g_assert_true (cleave_maxpool_backward (r, dpool, dr, &pp, &error));
  g_assert_true (cleave_relu_backward (r, dr, dbn, &error));
  g_assert_true (cleave_batchnorm_backward (c1, P[2], sm, si, dbn, dc1, G[2], G[3], TRUE, &error));
  g_assert_true (cleave_conv2d_backward (x, P[0], dc1, NULL, G[0], G[1], &cp, &error));
  g_assert_no_error (error);
  for (int i = 0; i < 6; i++)
    {
      g_autofree char *gn = g_strconcat ("grad.", pnames[i], NULL);
      g_autofree char *an = g_strconcat ("after.", pnames[i], NULL);
      assert_golden (g, gn, G[i], 1e-4);
      g_assert_true (cleave_sgd_step (P[i], G[i], Buf[i], lr, mom, wd, TRUE, &error));
      g_assert_no_error (error);
      assert_golden (g, an, P[i], 1e-5);
    }
  assert_golden (g, "after.bn.running_mean", rm, 1e-5);
  assert_golden (g, "after.bn.running_var", rv, 1e-5);

  for (int i = 0; i < 6; i++)
    {
      cleave_tensor_free (P[i]);
      cleave_tensor_free (G[i]);
      cleave_tensor_free (Buf[i]);
    }
}

/* Small feature maps are convolved a block of images per GEMM; the result
 * must equal convolving the images one at a time. */
static void
test_conv2d_batched (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (19);
  /* ci, h, co, k, stride, pad, groups */
  const int cfg[][7] = { { 4, 2, 6, 3, 1, 1, 2 }, { 6, 3, 5, 1, 1, 0, 1 }, { 3, 5, 4, 3, 2, 1, 1 },
                         { 4, 1, 4, 1, 1, 0, 4 } };
  const int N = 9;

  for (gsize c = 0; c < G_N_ELEMENTS (cfg); c++)
    {
      const int ci = cfg[c][0], h = cfg[c][1], co = cfg[c][2], k = cfg[c][3];
      CleaveConvParams p = { cfg[c][4], cfg[c][5], cfg[c][6] };
      const int ho = cleave_out_size (h, k, p.stride, p.pad);
      const gsize in1 = (gsize) ci * h * h, out1 = (gsize) co * ho * ho;
      g_autoptr (CleaveTensor) x = random_tensor (rand, 4, N, ci, h, h);
      g_autoptr (CleaveTensor) w = random_tensor (rand, 4, co, ci / p.groups, k, k);
      g_autoptr (CleaveTensor) b = random_tensor (rand, 1, co, 0, 0, 0);
      g_autoptr (CleaveTensor) dy = random_tensor (rand, 4, N, co, ho, ho);
      g_autoptr (CleaveTensor) y = tensor_like (dy);
      g_autoptr (CleaveTensor) dx = tensor_like (x);
      g_autoptr (CleaveTensor) dw = tensor_like (w);
      g_autoptr (CleaveTensor) db = tensor_like (b);
      g_autoptr (CleaveTensor) x1 = tensor (4, 1, ci, h, h);
      g_autoptr (CleaveTensor) dy1 = tensor (4, 1, co, ho, ho);
      g_autoptr (CleaveTensor) y1 = tensor_like (dy1);
      g_autoptr (CleaveTensor) dx1 = tensor_like (x1);
      g_autoptr (CleaveTensor) dw1 = tensor_like (w);
      g_autofree float *xh = host (x), *dyh = host (dy), *yh = NULL, *dxh = NULL, *dwh = NULL;
      g_autofree float *ref_y = g_new0 (float, N * out1), *ref_dx = g_new0 (float, N * in1);
      g_autofree float *ref_dw = g_new0 (float, cleave_tensor_numel (w));
      g_autofree char *what = g_strdup_printf ("batched conv config %zu", c);

      g_assert_true (cleave_conv2d_forward (x, w, b, y, &p, NULL));
      g_assert_true (cleave_conv2d_backward (x, w, dy, dx, dw, db, &p, NULL));
      for (int n = 0; n < N; n++)
        {
          g_autofree float *o = NULL, *d = NULL, *g = NULL;
          upload (x1, xh + n * in1);
          upload (dy1, dyh + n * out1);
          g_assert_true (cleave_conv2d_forward (x1, w, b, y1, &p, NULL));
          g_assert_true (cleave_conv2d_backward (x1, w, dy1, dx1, dw1, NULL, &p, NULL));
          o = host (y1);
          d = host (dx1);
          g = host (dw1);
          memcpy (ref_y + n * out1, o, out1 * sizeof (float));
          memcpy (ref_dx + n * in1, d, in1 * sizeof (float));
          for (gsize i = 0; i < cleave_tensor_numel (w); i++)
            ref_dw[i] += g[i];
        }
      yh = host (y);
      dxh = host (dx);
      dwh = host (dw);
      /* same arithmetic up to summation order: 1e-5 of the largest value */
      assert_close_host (what, yh, ref_y, N * out1, 1e-5);
      assert_close_host (what, dxh, ref_dx, N * in1, 1e-5);
      assert_close_host (what, dwh, ref_dw, cleave_tensor_numel (w), 1e-5);
    }
}

/* Repeated backward passes on the same inputs give the same gradients bit
 * for bit: the weight gradient is summed over image blocks that any thread
 * may run, so the sum's order must not depend on which one did (the test
 * environment runs two threads). One im2col layer with one image per
 * block, one with several (small maps), one through Winograd. */
static void
test_conv2d_backward_deterministic (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (23);
  /* n, ci, h, co, k, pad */
  const int cfg[][6] = { { 64, 8, 12, 16, 5, 2 }, { 96, 8, 4, 12, 3, 0 }, { 48, 16, 16, 16, 3, 1 } };

  for (gsize c = 0; c < G_N_ELEMENTS (cfg); c++)
    {
      const int n = cfg[c][0], ci = cfg[c][1], h = cfg[c][2], co = cfg[c][3], k = cfg[c][4];
      CleaveConvParams p = { 1, cfg[c][5], 1 };
      const int ho = cleave_out_size (h, k, 1, p.pad);
      g_autoptr (CleaveTensor) x = random_tensor (rand, 4, n, ci, h, h);
      g_autoptr (CleaveTensor) w = random_tensor (rand, 4, co, ci, k, k);
      g_autoptr (CleaveTensor) dy = random_tensor (rand, 4, n, co, ho, ho);
      g_autoptr (CleaveTensor) dx = tensor_like (x);
      g_autoptr (CleaveTensor) dw = tensor_like (w);
      g_autoptr (CleaveTensor) db = tensor (1, co, 0, 0, 0);
      g_autofree float *dx0 = NULL, *dw0 = NULL, *db0 = NULL;

      g_assert_true (cleave_conv2d_backward (x, w, dy, dx, dw, db, &p, NULL));
      dx0 = host (dx);
      dw0 = host (dw);
      db0 = host (db);
      for (int rep = 0; rep < 30; rep++)
        {
          g_autofree float *dx1 = NULL, *dw1 = NULL, *db1 = NULL;

          g_assert_true (cleave_conv2d_backward (x, w, dy, dx, dw, db, &p, NULL));
          dx1 = host (dx);
          dw1 = host (dw);
          db1 = host (db);
          if (memcmp (dw0, dw1, cleave_tensor_numel (dw) * sizeof (float)) != 0 ||
              memcmp (dx0, dx1, cleave_tensor_numel (dx) * sizeof (float)) != 0 ||
              memcmp (db0, db1, co * sizeof (float)) != 0)
            g_error ("conv config %zu: backward pass %d differs from the first", c, rep + 2);
        }
    }
}

/* Layers big enough to be split over threads (by batch rows, or by output
 * features for a small batch) against a plain double-precision product. */
static void
test_linear_large (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (20);
  const int shapes[][3] = { { 2, 300, 1000 }, { 40, 200, 50 }, { 1, 4096, 100 } };  /* N, K, M */

  for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
      g_autoptr (CleaveTensor) x = random_tensor (rand, 2, N, K, 0, 0);
      g_autoptr (CleaveTensor) w = random_tensor (rand, 2, M, K, 0, 0);
      g_autoptr (CleaveTensor) b = random_tensor (rand, 1, M, 0, 0, 0);
      g_autoptr (CleaveTensor) dy = random_tensor (rand, 2, N, M, 0, 0);
      g_autoptr (CleaveTensor) y = tensor_like (dy);
      g_autoptr (CleaveTensor) dx = tensor_like (x);
      g_autoptr (CleaveTensor) dw = tensor_like (w);
      g_autoptr (CleaveTensor) db = tensor_like (b);
      g_autofree float *xh = host (x), *wh = host (w), *bh = host (b), *dyh = host (dy);
      g_autofree float *ry = g_new (float, N * M), *rdx = g_new (float, N * K), *rdw = g_new (float, M * K);
      g_autofree float *rdb = g_new (float, M), *yh = NULL, *dxh = NULL, *dwh = NULL, *dbh = NULL;
      g_autofree char *what = g_strdup_printf ("linear [%d, %d] x [%d, %d]^T", N, K, M, K);

      for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++)
          {
            double acc = bh[m];
            for (int k = 0; k < K; k++)
              acc += (double) xh[n * K + k] * wh[m * K + k];
            ry[n * M + m] = acc;
          }
      for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
          {
            double acc = 0.0;
            for (int m = 0; m < M; m++)
              acc += (double) dyh[n * M + m] * wh[m * K + k];
            rdx[n * K + k] = acc;
          }
      for (int m = 0; m < M; m++)
        {
          double acc_b = 0.0;
          for (int k = 0; k < K; k++)
            {
              double acc = 0.0;
              for (int n = 0; n < N; n++)
                acc += (double) dyh[n * M + m] * xh[n * K + k];
              rdw[m * K + k] = acc;
            }
          for (int n = 0; n < N; n++)
            acc_b += dyh[n * M + m];
          rdb[m] = acc_b;
        }

      g_assert_true (cleave_linear_forward (x, w, b, y, NULL));
      g_assert_true (cleave_linear_backward (x, w, dy, dx, dw, db, NULL));
      yh = host (y);
      dxh = host (dx);
      dwh = host (dw);
      dbh = host (db);
      /* sums of up to 4096 products: 1e-5 of the largest magnitude */
      assert_close_host (what, yh, ry, N * M, 1e-5);
      assert_close_host (what, dxh, rdx, N * K, 1e-5);
      assert_close_host (what, dwh, rdw, M * K, 1e-5);
      assert_close_host (what, dbh, rdb, M, 1e-5);
    }
}

/* -------------------------------------------- finite-difference checks */

/* A scalar function of the op's inputs: loss = sum(y * r) for a fixed random
 * r, evaluated in double from the float32 outputs. The analytic gradients
 * come from the backward pass with dy = r. */
typedef double (*LossFn) (gpointer ctx);

typedef struct {
  const char *name;
  CleaveTensor *t;          /* the input being perturbed */
  const CleaveTensor *grad; /* its analytic gradient */
} FdParam;

/* Double-sided differences with step @h on up to @max_elems elements of
 * each input: |numeric - analytic| <= tol * max(1, |analytic|). */
static void
fd_check (const char *op, LossFn loss, gpointer ctx, FdParam *params, int n_params,
          float h, double tol, int max_elems)
{
  for (int p = 0; p < n_params; p++)
    {
      gsize n = cleave_tensor_numel (params[p].t);
      g_autofree float *v = host (params[p].t);
      g_autofree float *ana = host (params[p].grad);
      gsize step = n > (gsize) max_elems ? n / max_elems + 1 : 1;
      double worst = 0.0;

      for (gsize i = 0; i < n; i += step)
        {
          float orig = v[i];
          double lp, lm, num, err;
          v[i] = orig + h;
          upload (params[p].t, v);
          lp = loss (ctx);
          v[i] = orig - h;
          upload (params[p].t, v);
          lm = loss (ctx);
          v[i] = orig;
          upload (params[p].t, v);
          num = (lp - lm) / (2.0 * h);
          err = fabs (num - ana[i]) / MAX (1.0, fabs (ana[i]));
          worst = MAX (worst, err);
          if (!(err <= tol))
            g_error ("%s: d/d%s[%zu]: finite difference %.6g, backward %.6g", op, params[p].name, i, num,
                     (double) ana[i]);
        }
      g_test_message ("%s d/d%s: worst relative error %.3g", op, params[p].name, worst);
      g_assert_cmpfloat (worst, <=, tol);
    }
}

static double
dot_with (const CleaveTensor *y, const float *r)
{
  g_autofree float *yh = host (y);
  gsize n = cleave_tensor_numel (y);
  double s = 0.0;
  for (gsize i = 0; i < n; i++)
    s += (double) yh[i] * r[i];
  return s;
}

typedef struct {
  CleaveTensor *x, *w, *b, *y, *dy;
  CleaveConvParams p;
  float *r;
} ConvCtx;

static double
conv_loss (gpointer data)
{
  ConvCtx *c = data;
  g_autoptr (GError) error = NULL;
  g_assert_true (cleave_conv2d_forward (c->x, c->w, c->b, c->y, &c->p, &error));
  return dot_with (c->y, c->r);
}

typedef struct {
  int n, ci, h, w, co, k, stride, pad, groups;
  gboolean bias;
} ConvShape;

static const ConvShape conv_shapes[] = {
  { 1, 3, 5, 5, 5, 3, 1, 1, 1, TRUE },   /* batch 1, odd channel counts */
  { 2, 3, 1, 1, 7, 3, 1, 1, 1, TRUE },   /* 1x1 spatial: only the centre tap sees data */
  { 2, 4, 6, 5, 6, 3, 2, 1, 2, TRUE },   /* stride 2, groups 2, non-square input */
  { 3, 6, 4, 4, 3, 1, 1, 0, 3, FALSE },  /* 1x1 direct path, 3 groups, no bias */
  { 2, 5, 5, 6, 2, 1, 2, 0, 1, TRUE },   /* 1x1 with stride: im2col path */
  { 1, 2, 7, 7, 3, 5, 2, 2, 1, TRUE },   /* 5x5 stride 2 pad 2 */
  { 2, 7, 3, 3, 7, 3, 1, 0, 7, TRUE },   /* depthwise, valid padding */
};

static void
test_conv2d_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (11);

  for (gsize s = 0; s < G_N_ELEMENTS (conv_shapes); s++)
    {
      const ConvShape *cs = &conv_shapes[s];
      ConvCtx c = { 0 };
      int ho, wo;
      g_autofree char *op = g_strdup_printf ("conv2d shape #%zu", s);

      c.p = (CleaveConvParams) { cs->stride, cs->pad, cs->groups };
      ho = cleave_out_size (cs->h, cs->k, cs->stride, cs->pad);
      wo = cleave_out_size (cs->w, cs->k, cs->stride, cs->pad);
      c.x = random_tensor (rand, 4, cs->n, cs->ci, cs->h, cs->w);
      c.w = random_tensor (rand, 4, cs->co, cs->ci / cs->groups, cs->k, cs->k);
      c.b = cs->bias ? random_tensor (rand, 1, cs->co, 0, 0, 0) : NULL;
      c.y = tensor (4, cs->n, cs->co, ho, wo);
      c.dy = tensor_like (c.y);
      c.r = random_host (rand, cleave_tensor_numel (c.y), -1.0, 1.0);
      upload (c.dy, c.r);

      g_autoptr (CleaveTensor) dx = tensor_like (c.x);
      g_autoptr (CleaveTensor) dw = tensor_like (c.w);
      g_autoptr (CleaveTensor) db = c.b ? tensor_like (c.b) : NULL;
      g_assert_true (cleave_conv2d_backward (c.x, c.w, c.dy, dx, dw, db, &c.p, NULL));

      FdParam params[] = { { "x", c.x, dx }, { "w", c.w, dw }, { "b", c.b, db } };
      /* conv is linear in each input: only rounding limits the bound */
      fd_check (op, conv_loss, &c, params, c.b ? 3 : 2, 1e-2f, 2e-3, 40);

      cleave_tensor_free (c.x);
      cleave_tensor_free (c.w);
      cleave_tensor_free (c.b);
      cleave_tensor_free (c.y);
      cleave_tensor_free (c.dy);
      g_free (c.r);
    }
}

typedef struct {
  CleaveTensor *x, *gamma, *beta, *rm, *rv, *y, *sm, *si;
  gboolean training;
  float *r;
} BnCtx;

static double
bn_loss (gpointer data)
{
  BnCtx *c = data;
  g_autoptr (GError) error = NULL;
  g_assert_true (cleave_batchnorm_forward (c->x, c->gamma, c->beta, c->rm, c->rv, c->y, c->sm, c->si,
                                           c->training, 0.1f, 1e-5f, &error));
  return dot_with (c->y, c->r);
}

static void
bn_gradcheck_one (GRand *rand, int ndim, int n, int ch, int h, int w, gboolean training)
{
  BnCtx c = { 0 };
  g_autofree char *op = g_strdup_printf ("batchnorm %s [%d, %d, %d, %d]", training ? "train" : "eval",
                                         n, ch, h, w);
  g_autofree float *rv = random_host (rand, ch, 0.5, 1.5);

  c.training = training;
  c.x = ndim == 4 ? random_tensor (rand, 4, n, ch, h, w) : random_tensor (rand, 2, n, ch, 0, 0);
  c.gamma = random_tensor (rand, 1, ch, 0, 0, 0);
  c.beta = random_tensor (rand, 1, ch, 0, 0, 0);
  c.rm = random_tensor (rand, 1, ch, 0, 0, 0);
  c.rv = tensor (1, ch, 0, 0, 0);
  upload (c.rv, rv);
  c.y = tensor_like (c.x);
  c.sm = tensor_like (c.gamma);
  c.si = tensor_like (c.gamma);
  c.r = random_host (rand, cleave_tensor_numel (c.y), -1.0, 1.0);

  g_autoptr (CleaveTensor) dy = tensor_like (c.y);
  g_autoptr (CleaveTensor) dx = tensor_like (c.x);
  g_autoptr (CleaveTensor) dg = tensor_like (c.gamma);
  g_autoptr (CleaveTensor) dbeta = tensor_like (c.gamma);
  upload (dy, c.r);
  bn_loss (&c);
  if (!training)
    {
      /* eval backward wants the running mean and 1/sqrt(var+eps) */
      g_autofree float *si = g_new (float, ch);
      for (int i = 0; i < ch; i++)
        si[i] = 1.0f / sqrtf (rv[i] + 1e-5f);
      upload (c.si, si);
      cleave_tensor_copy (c.sm, c.rm, NULL);
    }
  g_assert_true (cleave_batchnorm_backward (c.x, c.gamma, c.sm, c.si, dy, dx, dg, dbeta, training, NULL));

  /* Training forwards move the running statistics, but y only depends on
   * the batch statistics, so the differences are unaffected. */
  FdParam params[] = { { "x", c.x, dx }, { "gamma", c.gamma, dg }, { "beta", c.beta, dbeta } };
  fd_check (op, bn_loss, &c, params, 3, 1e-2f, 2e-3, 40);

  cleave_tensor_free (c.x);
  cleave_tensor_free (c.gamma);
  cleave_tensor_free (c.beta);
  cleave_tensor_free (c.rm);
  cleave_tensor_free (c.rv);
  cleave_tensor_free (c.y);
  cleave_tensor_free (c.sm);
  cleave_tensor_free (c.si);
  g_free (c.r);
}

static void
test_batchnorm_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (12);
  bn_gradcheck_one (rand, 4, 1, 3, 3, 3, TRUE);   /* batch 1 */
  bn_gradcheck_one (rand, 4, 4, 5, 1, 1, TRUE);   /* 1x1 spatial */
  bn_gradcheck_one (rand, 4, 2, 7, 2, 3, TRUE);
  bn_gradcheck_one (rand, 2, 6, 3, 0, 0, TRUE);   /* 2-d input */
  bn_gradcheck_one (rand, 4, 2, 3, 3, 2, FALSE);
  bn_gradcheck_one (rand, 4, 1, 5, 1, 1, FALSE);  /* eval works on a single value per channel */
}

/* Unary ops and pools share one context: y = f(x). */
typedef enum { U_RELU, U_SIGMOID, U_MAXPOOL, U_AVGPOOL, U_GAP } UnaryKind;

typedef struct {
  UnaryKind kind;
  CleaveTensor *x, *y;
  CleavePoolParams p;
  float *r;
} UnaryCtx;

static double
unary_loss (gpointer data)
{
  UnaryCtx *c = data;
  g_autoptr (GError) error = NULL;
  switch (c->kind)
    {
    case U_RELU: g_assert_true (cleave_relu_forward (c->x, c->y, &error)); break;
    case U_SIGMOID: g_assert_true (cleave_sigmoid_forward (c->x, c->y, &error)); break;
    case U_MAXPOOL: g_assert_true (cleave_maxpool_forward (c->x, c->y, &c->p, &error)); break;
    case U_AVGPOOL: g_assert_true (cleave_avgpool_forward (c->x, c->y, &c->p, &error)); break;
    case U_GAP: g_assert_true (cleave_global_avgpool_forward (c->x, c->y, &error)); break;
    }
  return dot_with (c->y, c->r);
}

static void
unary_gradcheck_one (GRand *rand, UnaryKind kind, int n, int ch, int h, int w, int k, int s, int pad)
{
  static const char *names[] = { "relu", "sigmoid", "maxpool", "avgpool", "global avgpool" };
  UnaryCtx c = { kind };
  g_autofree char *op = g_strdup_printf ("%s [%d, %d, %d, %d] k%d s%d p%d", names[kind], n, ch, h, w, k, s, pad);
  gsize nx = (gsize) n * ch * h * w;
  g_autofree float *xv = g_new (float, nx);

  /* Inputs sit on a grid with spacing far above the step (0.05 vs 0.01), so
   * no difference crosses relu's kink or swaps a pool's maximum; distinct
   * values come from a shuffled ramp. */
  for (gsize i = 0; i < nx; i++)
    xv[i] = -1.0f + 0.05f * (float) i + 0.025f;
  for (gsize i = nx - 1; i > 0; i--)
    {
      gsize j = g_rand_int_range (rand, 0, (gint32) i + 1);
      float t = xv[i];
      xv[i] = xv[j];
      xv[j] = t;
    }
  c.x = tensor (4, n, ch, h, w);
  upload (c.x, xv);
  c.p = (CleavePoolParams) { k, s, pad };
  if (kind == U_MAXPOOL || kind == U_AVGPOOL)
    c.y = tensor (4, n, ch, cleave_out_size (h, k, s, pad), cleave_out_size (w, k, s, pad));
  else if (kind == U_GAP)
    c.y = tensor (2, n, ch, 0, 0);
  else
    c.y = tensor_like (c.x);
  c.r = random_host (rand, cleave_tensor_numel (c.y), -1.0, 1.0);

  g_autoptr (CleaveTensor) dy = tensor_like (c.y);
  g_autoptr (CleaveTensor) dx = tensor_like (c.x);
  upload (dy, c.r);
  unary_loss (&c);
  switch (kind)
    {
    case U_RELU: g_assert_true (cleave_relu_backward (c.y, dy, dx, NULL)); break;
    case U_SIGMOID: g_assert_true (cleave_sigmoid_backward (c.y, dy, dx, NULL)); break;
    case U_MAXPOOL: g_assert_true (cleave_maxpool_backward (c.x, dy, dx, &c.p, NULL)); break;
    case U_AVGPOOL: g_assert_true (cleave_avgpool_backward (dy, dx, &c.p, NULL)); break;
    case U_GAP: g_assert_true (cleave_global_avgpool_backward (dy, dx, NULL)); break;
    }
  FdParam params[] = { { "x", c.x, dx } };
  fd_check (op, unary_loss, &c, params, 1, 1e-2f, 2e-3, 60);

  cleave_tensor_free (c.x);
  cleave_tensor_free (c.y);
  g_free (c.r);
}

static void
test_activation_pool_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (13);
  unary_gradcheck_one (rand, U_RELU, 1, 3, 2, 3, 0, 0, 0);
  unary_gradcheck_one (rand, U_SIGMOID, 2, 5, 1, 1, 0, 0, 0);
  unary_gradcheck_one (rand, U_MAXPOOL, 1, 3, 5, 5, 2, 2, 0);     /* odd size: last row unused */
  unary_gradcheck_one (rand, U_MAXPOOL, 2, 2, 5, 4, 3, 2, 1);
  unary_gradcheck_one (rand, U_MAXPOOL, 1, 5, 1, 1, 1, 1, 0);
  unary_gradcheck_one (rand, U_MAXPOOL, 1, 3, 4, 4, 3, 1, 1);     /* overlapping windows */
  unary_gradcheck_one (rand, U_AVGPOOL, 1, 3, 5, 5, 2, 2, 0);
  unary_gradcheck_one (rand, U_AVGPOOL, 2, 2, 5, 4, 3, 2, 1);
  unary_gradcheck_one (rand, U_AVGPOOL, 1, 7, 3, 3, 3, 1, 1);
  unary_gradcheck_one (rand, U_GAP, 1, 7, 1, 1, 0, 0, 0);
  unary_gradcheck_one (rand, U_GAP, 2, 3, 3, 5, 0, 0, 0);
}

typedef struct {
  CleaveTensor *x, *w, *b, *y;
  float *r;
} LinearCtx;

static double
linear_loss (gpointer data)
{
  LinearCtx *c = data;
  g_assert_true (cleave_linear_forward (c->x, c->w, c->b, c->y, NULL));
  return dot_with (c->y, c->r);
}

static void
test_linear_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (14);
  const int shapes[][3] = { { 1, 3, 5 }, { 7, 5, 1 }, { 3, 1, 7 } };  /* N, K, M */

  for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      LinearCtx c;
      int N = shapes[s][0], K = shapes[s][1], M = shapes[s][2];
      c.x = random_tensor (rand, 2, N, K, 0, 0);
      c.w = random_tensor (rand, 2, M, K, 0, 0);
      c.b = random_tensor (rand, 1, M, 0, 0, 0);
      c.y = tensor (2, N, M, 0, 0);
      c.r = random_host (rand, (gsize) N * M, -1.0, 1.0);
      g_autoptr (CleaveTensor) dy = tensor_like (c.y);
      g_autoptr (CleaveTensor) dx = tensor_like (c.x);
      g_autoptr (CleaveTensor) dw = tensor_like (c.w);
      g_autoptr (CleaveTensor) db = tensor_like (c.b);
      upload (dy, c.r);
      g_assert_true (cleave_linear_backward (c.x, c.w, dy, dx, dw, db, NULL));
      FdParam params[] = { { "x", c.x, dx }, { "w", c.w, dw }, { "b", c.b, db } };
      fd_check ("linear", linear_loss, &c, params, 3, 1e-2f, 2e-3, 40);
      cleave_tensor_free (c.x);
      cleave_tensor_free (c.w);
      cleave_tensor_free (c.b);
      cleave_tensor_free (c.y);
      g_free (c.r);
    }
}

typedef struct {
  CleaveTensor *x, *m, *y;
  float *r;
} MaskCtx;

static double
mask_loss (gpointer data)
{
  MaskCtx *c = data;
  g_assert_true (cleave_mask_forward (c->x, c->m, c->y, NULL));
  return dot_with (c->y, c->r);
}

static void
test_mask_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (15);
  /* G, B, C, H, W (H = 0: a 2-d input) */
  const int shapes[][5] = { { 1, 1, 3, 1, 1 }, { 2, 3, 5, 2, 2 }, { 3, 1, 7, 0, 0 } };

  for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      MaskCtx c;
      int G = shapes[s][0], B = shapes[s][1], C = shapes[s][2], H = shapes[s][3], W = shapes[s][4];
      c.x = H ? random_tensor (rand, 4, G * B, C, H, W) : random_tensor (rand, 2, G * B, C, 0, 0);
      c.m = random_tensor (rand, 2, G, C, 0, 0);
      c.y = tensor_like (c.x);
      c.r = random_host (rand, cleave_tensor_numel (c.y), -1.0, 1.0);
      g_autoptr (CleaveTensor) dy = tensor_like (c.y);
      g_autoptr (CleaveTensor) dx = tensor_like (c.x);
      g_autoptr (CleaveTensor) dm = tensor_like (c.m);
      upload (dy, c.r);
      g_assert_true (cleave_mask_backward (c.x, c.m, dy, dx, dm, NULL));
      FdParam params[] = { { "x", c.x, dx }, { "m", c.m, dm } };
      fd_check ("mask", mask_loss, &c, params, 2, 1e-2f, 2e-3, 40);
      cleave_tensor_free (c.x);
      cleave_tensor_free (c.m);
      cleave_tensor_free (c.y);
      g_free (c.r);
    }
}

typedef struct {
  CleaveTensor *logits, *labels, *loss;
} CeCtx;

static double
ce_loss (gpointer data)
{
  CeCtx *c = data;
  g_autofree float *l = NULL;
  g_assert_true (cleave_softmax_ce (c->logits, c->labels, c->loss, NULL, NULL));
  l = host (c->loss);
  return l[0];
}

static void
test_softmax_ce_gradcheck (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (16);
  const int shapes[][2] = { { 1, 3 }, { 5, 7 }, { 4, 1 } };

  for (gsize s = 0; s < G_N_ELEMENTS (shapes); s++)
    {
      CeCtx c;
      int N = shapes[s][0], C = shapes[s][1];
      g_autofree float *lab = g_new (float, N);
      for (int i = 0; i < N; i++)
        lab[i] = (float) g_rand_int_range (rand, 0, C);
      c.logits = random_tensor (rand, 2, N, C, 0, 0);
      c.labels = tensor (1, N, 0, 0, 0);
      upload (c.labels, lab);
      c.loss = tensor (1, 1, 0, 0, 0);
      g_autoptr (CleaveTensor) d = tensor_like (c.logits);
      g_assert_true (cleave_softmax_ce (c.logits, c.labels, c.loss, d, NULL));
      FdParam params[] = { { "logits", c.logits, d } };
      fd_check ("softmax cross-entropy", ce_loss, &c, params, 1, 1e-2f, 2e-3, 40);
      cleave_tensor_free (c.logits);
      cleave_tensor_free (c.labels);
      cleave_tensor_free (c.loss);
    }
}

/* ---------------------------------------------------------- dropout */

static void
test_dropout (void)
{
  const int n = 100000;
  const float p = 0.3f;
  g_autoptr (CleaveTensor) x = tensor (2, 100, 1000, 0, 0);
  g_autoptr (CleaveTensor) y = tensor_like (x);
  g_autoptr (CleaveTensor) keep = tensor_like (x);
  g_autoptr (GRand) rand = g_rand_new_with_seed (17);
  g_autofree float *xv = random_host (rand, n, 0.5, 2.0);
  g_autofree float *yv = NULL, *kv = NULL, *y2 = NULL;
  int kept = 0;

  upload (x, xv);
  g_assert_true (cleave_dropout_forward (x, y, keep, p, 42, NULL));
  yv = host (y);
  kv = host (keep);
  for (int i = 0; i < n; i++)
    {
      gboolean k = cleave_dropout_uniform (42, i) >= p;
      /* the mask is exactly the shared hash rule, scaled by 1/(1-p) */
      g_assert_cmpfloat (kv[i], ==, k ? 1.0f / (1.0f - p) : 0.0f);
      g_assert_cmpfloat (yv[i], ==, xv[i] * kv[i]);
      kept += k;
    }
  /* keep rate within 5 standard deviations (sd = sqrt(p(1-p)/n) ~ 0.0014) */
  g_assert_cmpfloat (fabs ((double) kept / n - (1.0 - p)), <, 0.0075);

  /* same seed, same mask; another seed, another mask; p = 0 is the identity */
  g_assert_true (cleave_dropout_forward (x, y, NULL, p, 42, NULL));
  y2 = host (y);
  g_assert_cmpmem (y2, n * sizeof (float), yv, n * sizeof (float));
  g_free (y2);
  g_assert_true (cleave_dropout_forward (x, y, keep, p, 43, NULL));
  y2 = host (y);
  g_assert_false (memcmp (y2, yv, n * sizeof (float)) == 0);
  g_free (y2);
  g_assert_true (cleave_dropout_forward (x, y, keep, 0.0f, 43, NULL));
  y2 = host (y);
  g_assert_cmpmem (y2, n * sizeof (float), xv, n * sizeof (float));
}

static void
test_mul (void)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (18);
  g_autoptr (CleaveTensor) a = random_tensor (rand, 4, 2, 3, 2, 2);
  g_autoptr (CleaveTensor) b = random_tensor (rand, 2, 2, 12, 0, 0);  /* same size, other shape */
  g_autoptr (CleaveTensor) y = tensor_like (a);
  g_autofree float *av = host (a), *bv = host (b), *yv = NULL;

  g_assert_true (cleave_mul (a, b, y, NULL));
  yv = host (y);
  for (int i = 0; i < 24; i++)
    g_assert_cmpfloat (yv[i], ==, av[i] * bv[i]);
}

/* ------------------------------------------------------- bad arguments */

/* Takes the GError location, not its value: the call filling it is another
 * argument, and C leaves the evaluation order of arguments open. */
static void
expect_invalid (gboolean ok, GError **error, const char *needle)
{
  g_assert_false (ok);
  g_assert_error (*error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_test_message ("%s", (*error)->message);
  if (needle && strstr ((*error)->message, needle) == NULL)
    g_error ("error message \"%s\" lacks \"%s\"", (*error)->message, needle);
  g_clear_error (error);
}

static void
test_shape_errors (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) x = tensor (4, 8, 1, 28, 28);
  g_autoptr (CleaveTensor) w = tensor (4, 32, 3, 3, 3);
  g_autoptr (CleaveTensor) y = tensor (4, 8, 32, 28, 28);
  g_autoptr (CleaveTensor) w1 = tensor (4, 32, 1, 3, 3);
  g_autoptr (CleaveTensor) ybad = tensor (4, 8, 32, 26, 26);
  g_autoptr (CleaveTensor) v3 = tensor (1, 3, 0, 0, 0);
  g_autoptr (CleaveTensor) v32 = tensor (1, 32, 0, 0, 0);
  g_autoptr (CleaveTensor) lx = tensor (2, 4, 10, 0, 0);
  g_autoptr (CleaveTensor) lw = tensor (2, 5, 11, 0, 0);
  g_autoptr (CleaveTensor) ly = tensor (2, 4, 5, 0, 0);
  g_autoptr (CleaveTensor) m = tensor (2, 3, 32, 0, 0);
  g_autoptr (CleaveTensor) labels = tensor (1, 3, 0, 0, 0);
  g_autoptr (CleaveTensor) loss = tensor (1, 1, 0, 0, 0);
  g_autoptr (CleaveTensor) pooled = tensor (4, 8, 32, 15, 15);
  CleaveConvParams cp = { 1, 1, 1 };
  CleavePoolParams pp = { 2, 2, 0 };
  g_autoptr (CleaveBackend) other = cleave_backend_cpu_new ();
  g_autoptr (CleaveTensor) foreign = cleave_tensor_new_4d (other, 8, 1, 28, 28, NULL);

  expect_invalid (cleave_conv2d_forward (x, w, NULL, y, &cp, &error), &error,
                  "conv2d: weight [32, 3, 3, 3] expects 3 input channels, input is [8, 1, 28, 28]");
  expect_invalid (cleave_conv2d_forward (x, w1, v3, y, &cp, &error), &error, "bias is [3], expected [32]");
  expect_invalid (cleave_conv2d_forward (x, w1, NULL, ybad, &cp, &error), &error, "[8, 32, 28, 28]");
  cp.groups = 2;
  expect_invalid (cleave_conv2d_forward (x, w1, NULL, y, &cp, &error), &error, "groups");
  cp = (CleaveConvParams) { 0, 1, 1 };
  expect_invalid (cleave_conv2d_forward (x, w1, NULL, y, &cp, &error), &error, "stride 0");
  cp = (CleaveConvParams) { 1, 1, 1 };
  expect_invalid (cleave_conv2d_backward (x, w1, y, y, NULL, NULL, &cp, &error), &error, "input gradient");
  expect_invalid (cleave_conv2d_forward (foreign, w1, NULL, y, &cp, &error), &error, "different backends");

  expect_invalid (cleave_batchnorm_forward (y, v3, v32, v32, v32, y, NULL, NULL, TRUE, 0.1f, 1e-5f, &error),
                  &error, "gamma is [3], expected [32]");
  {
    g_autoptr (CleaveTensor) one = tensor (4, 1, 32, 1, 1);
    expect_invalid (cleave_batchnorm_forward (one, v32, v32, v32, v32, one, NULL, NULL, TRUE, 0.1f, 1e-5f,
                                              &error), &error, "more than one value per channel");
  }

  expect_invalid (cleave_linear_forward (lx, lw, NULL, ly, &error), &error,
                  "weight [5, 11] expects 11 input features, input is [4, 10]");
  expect_invalid (cleave_linear_forward (x, lw, NULL, ly, &error), &error, "must be 2-d");

  expect_invalid (cleave_maxpool_forward (y, pooled, &pp, &error), &error, "[8, 32, 14, 14]");
  pp = (CleavePoolParams) { 2, 2, 2 };
  expect_invalid (cleave_avgpool_forward (y, pooled, &pp, &error), &error, "half the kernel");
  expect_invalid (cleave_global_avgpool_forward (y, lx, &error), &error, "[8, 32]");

  expect_invalid (cleave_mask_forward (y, m, y, &error), &error, "not a multiple");
  expect_invalid (cleave_relu_forward (x, y, &error), &error, "differ in shape");
  expect_invalid (cleave_axpby (1.0f, lx, 1.0f, ly, ly, &error), &error, "differ in size");
  expect_invalid (cleave_channel_copy_in (y, y, 1, &error), &error, "do not fit");
  expect_invalid (cleave_softmax_ce (ly, labels, loss, NULL, &error), &error, "one label for each row");
  expect_invalid (cleave_dropout_forward (x, x, NULL, 1.0f, 1, &error), &error, "outside [0, 1)");
  expect_invalid (cleave_sgd_step (lx, lx, NULL, 0.1f, 0.9f, 0.0f, TRUE, &error), &error, "momentum buffer");
  expect_invalid (cleave_adam_step (lx, lx, lx, lx, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0, &error), &error,
                  "step 0");

  /* a label outside the classes is caught by the backend, not a crash */
  {
    g_autoptr (CleaveTensor) lab4 = tensor (1, 4, 0, 0, 0);
    const float bad[4] = { 0, 1, 5, 2 };
    upload (lab4, bad);
    cleave_tensor_fill (ly, 0.0f, NULL);
    expect_invalid (cleave_softmax_ce (ly, lab4, loss, NULL, &error), &error, "label 5 of sample 2");
  }
}

/* 2x2 max pooling on awkward values: NaN propagates from any position of
 * its window (as in PyTorch), and among equal maxima the first in
 * row-major window order wins, in the value and in where the gradient goes. */
static void
test_maxpool_nan_and_ties (void)
{
  /* one plane 2 x 8: four windows */
  const float in[16] = { 1.0f, NAN, 2.0f, 2.0f, -1.0f, -3.0f, 5.0f, 0.0f,
                         0.0f, 0.0f, 2.0f, 1.0f, -1.0f, NAN,  5.0f, 5.0f };
  const float dyv[4] = { 10.0f, 20.0f, 30.0f, 40.0f };
  /* window 3 (5, 0 / 5, 5): the first 5, at column 6 of row 0 */
  const float want_dx[16] = { 0, 10, 20, 0, 0, 0, 40, 0,
                              0, 0, 0, 0, 0, 30, 0, 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) x = cleave_tensor_new_4d (backend, 1, 1, 2, 8, &error);
  g_autoptr (CleaveTensor) y = cleave_tensor_new_4d (backend, 1, 1, 1, 4, &error);
  g_autoptr (CleaveTensor) dy = cleave_tensor_new_4d (backend, 1, 1, 1, 4, &error);
  g_autoptr (CleaveTensor) dx = cleave_tensor_new_4d (backend, 1, 1, 2, 8, &error);
  CleavePoolParams p = { 2, 2, 0 };
  g_autofree float *yh = NULL, *dxh = NULL;

  g_assert_no_error (error);
  g_assert_true (cleave_tensor_upload (x, in, 16, &error) && cleave_tensor_upload (dy, dyv, 4, &error));
  g_assert_true (cleave_maxpool_forward (x, y, &p, &error));
  g_assert_true (cleave_maxpool_backward (x, dy, dx, &p, &error));
  g_assert_no_error (error);
  yh = cleave_tensor_to_host (y, &error);
  dxh = cleave_tensor_to_host (dx, &error);
  g_assert_no_error (error);
  g_assert_true (isnan (yh[0]));
  g_assert_cmpfloat (yh[1], ==, 2.0f);
  g_assert_true (isnan (yh[2]));
  g_assert_cmpfloat (yh[3], ==, 5.0f);
  for (int i = 0; i < 16; i++)
    g_assert_cmpfloat (dxh[i], ==, want_dx[i]);

  /* Odd sizes (3 x 9): the last row and column lie in no window, and their
   * gradient is zero whatever the buffer held before. */
  {
    g_autoptr (CleaveTensor) x3 = cleave_tensor_new_4d (backend, 1, 1, 3, 9, &error);
    g_autoptr (CleaveTensor) dy3 = cleave_tensor_new_4d (backend, 1, 1, 1, 4, &error);
    g_autoptr (CleaveTensor) dx3 = cleave_tensor_new_4d (backend, 1, 1, 3, 9, &error);
    g_autofree float *got = NULL;
    float in3[27], junk[27];
    for (int i = 0; i < 27; i++)
      in3[i] = (float) ((i * 7) % 11), junk[i] = 99.0f;
    g_assert_true (cleave_tensor_upload (x3, in3, 27, &error) && cleave_tensor_upload (dy3, dyv, 4, &error) &&
                   cleave_tensor_upload (dx3, junk, 27, &error));
    g_assert_true (cleave_maxpool_backward (x3, dy3, dx3, &p, &error));
    got = cleave_tensor_to_host (dx3, &error);
    g_assert_no_error (error);
    for (int r = 0; r < 3; r++)
      for (int c = 0; c < 9; c++)
        {
          float want = 0.0f;
          if (r < 2 && c < 8)
            {
              int w = c / 2, best = 0;   /* first maximum of window w (no NaN here) */
              int cand[4] = { 2 * w, 2 * w + 1, 9 + 2 * w, 10 + 2 * w };
              for (int k = 1; k < 4; k++)
                if (in3[cand[k]] > in3[cand[best]])
                  best = k;
              want = cand[best] == r * 9 + c ? dyv[w] : 0.0f;
            }
          g_assert_cmpfloat (got[r * 9 + c], ==, want);
        }
  }
}

static CleaveTensor *
ranged_tensor (GRand *r, int ndim, int a, int b, double lo, double hi)
{
  CleaveTensor *t = tensor (ndim, a, b, 0, 0);
  g_autofree float *v = random_host (r, cleave_tensor_numel (t), lo, hi);
  upload (t, v);
  return t;
}

/* The one-pass backward of a frozen batchnorm → relu → mask chain against
 * the three ops it replaces: mask backward, relu backward, eval-mode
 * batchnorm backward; and its bad input. */
static void
test_mask_chain_backward (void)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (23);
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) y = random_tensor (r, 4, 6, 5, 3, 4);   /* relu output: clamped below */
  g_autoptr (CleaveTensor) dy = random_tensor (r, 4, 6, 5, 3, 4);
  g_autoptr (CleaveTensor) m = ranged_tensor (r, 2, 3, 5, 0.0, 1.0);
  g_autoptr (CleaveTensor) gamma = ranged_tensor (r, 1, 5, 0, 0.5, 2.0);
  g_autoptr (CleaveTensor) mean = ranged_tensor (r, 1, 5, 0, -0.5, 0.5);
  g_autoptr (CleaveTensor) invstd = ranged_tensor (r, 1, 5, 0, 0.5, 3.0);
  g_autoptr (CleaveTensor) dx = tensor (4, 6, 5, 3, 4);
  g_autoptr (CleaveTensor) dm = tensor (2, 3, 5, 0, 0);
  g_autoptr (CleaveTensor) t1 = tensor (4, 6, 5, 3, 4);
  g_autoptr (CleaveTensor) t2 = tensor (4, 6, 5, 3, 4);
  g_autoptr (CleaveTensor) t3 = tensor (4, 6, 5, 3, 4);
  g_autoptr (CleaveTensor) dm_ref = tensor (2, 3, 5, 0, 0);
  g_autofree float *a = NULL, *b = NULL, *ga = NULL, *gb = NULL;
  gsize n = cleave_tensor_numel (dx);

  g_assert_no_error (error);
  g_assert_true (cleave_relu_forward (y, y, &error));
  g_assert_true (cleave_mask_chain_backward (y, m, dy, TRUE, gamma, invstd, dx, dm, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_mask_backward (y, m, dy, t1, dm_ref, &error)
                 && cleave_relu_backward (y, t1, t2, &error)
                 && cleave_batchnorm_backward (y, gamma, mean, invstd, t2, t3, NULL, NULL, FALSE, &error));
  g_assert_no_error (error);
  a = cleave_tensor_to_host (dx, &error);
  b = cleave_tensor_to_host (t3, &error);
  ga = cleave_tensor_to_host (dm, &error);
  gb = cleave_tensor_to_host (dm_ref, &error);
  g_assert_no_error (error);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (a[i], b[i], 1e-6 * (1.0 + fabsf (b[i])));
  for (int i = 0; i < 15; i++)
    g_assert_cmpfloat (ga[i], ==, gb[i]);

  /* The mask gradient alone (dx NULL), and from x's first 2 rows when the
   * batch repeats them (rows 2–5 = rows 0–1 twice): the same values. */
  {
    g_autoptr (CleaveTensor) y2 = tensor (4, 2, 5, 3, 4);
    g_autoptr (CleaveTensor) dm2 = tensor (2, 3, 5, 0, 0);
    g_autoptr (CleaveTensor) masked = tensor (4, 6, 5, 3, 4);
    g_autoptr (CleaveTensor) masked_ref = tensor (4, 6, 5, 3, 4);
    g_autofree float *yh = cleave_tensor_to_host (y, &error), *g2 = NULL, *mk = NULL, *mr = NULL;
    gsize row = n / 6;
    g_assert_no_error (error);
    g_assert_true (cleave_mask_chain_backward (y, m, dy, TRUE, gamma, invstd, NULL, dm2, &error));
    g_assert_no_error (error);
    g2 = cleave_tensor_to_host (dm2, &error);
    for (int i = 0; i < 15; i++)
      g_assert_cmpfloat (g2[i], ==, gb[i]);
    memcpy (yh + 2 * row, yh, 2 * row * sizeof (float));
    memcpy (yh + 4 * row, yh, 2 * row * sizeof (float));
    g_assert_true (cleave_tensor_upload (y, yh, n, &error) && cleave_tensor_upload (y2, yh, 2 * row, &error));
    g_assert_true (cleave_mask_chain_backward (y, m, dy, TRUE, gamma, invstd, t1, dm_ref, &error));
    g_assert_true (cleave_mask_chain_backward (y2, m, dy, TRUE, gamma, invstd, dx, dm, &error));
    g_assert_no_error (error);
    g_free (a), g_free (b), g_free (ga), g_free (gb);
    a = cleave_tensor_to_host (dx, &error);
    b = cleave_tensor_to_host (t1, &error);
    ga = cleave_tensor_to_host (dm, &error);
    gb = cleave_tensor_to_host (dm_ref, &error);
    for (gsize i = 0; i < n; i++)
      g_assert_cmpfloat (a[i], ==, b[i]);
    for (int i = 0; i < 15; i++)
      g_assert_cmpfloat (ga[i], ==, gb[i]);
    /* the mask forward likewise */
    g_assert_true (cleave_mask_forward (y, m, masked_ref, &error) && cleave_mask_forward (y2, m, masked, &error));
    g_assert_no_error (error);
    mk = cleave_tensor_to_host (masked, &error);
    mr = cleave_tensor_to_host (masked_ref, &error);
    for (gsize i = 0; i < n; i++)
      g_assert_cmpfloat (mk[i], ==, mr[i]);
    /* 4 rows do not divide the batch of 6 */
    {
      g_autoptr (CleaveTensor) y4 = tensor (4, 4, 5, 3, 4);
      g_assert_false (cleave_mask_forward (y4, m, masked, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "first rows"));
      g_clear_error (&error);
    }
  }

  g_assert_false (cleave_mask_chain_backward (y, m, dy, TRUE, gamma, invstd, NULL, NULL, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (cleave_mask_chain_backward (y, m, dy, TRUE, gamma, NULL, dx, dm, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_false (cleave_mask_chain_backward (y, m, dy, TRUE, dm, dm, dx, dm, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

int
main (int argc, char **argv)
{
  static const char *convs[] = { "conv2d_k1", "conv2d_k1_s2", "conv2d_k3_s2_g2", "conv2d_k3_p1",
                                 "conv2d_k5_s2_nobias" };
  static const char *pools[] = { "maxpool_k2_s2", "maxpool_k3_s2_p1", "maxpool_ties", "avgpool_k2_s2",
                                 "avgpool_k3_s2_p1" };
  int rc;

  g_test_init (&argc, &argv, NULL);
  backend = cleave_backend_cpu_new ();

  for (gsize i = 0; i < G_N_ELEMENTS (convs); i++)
    {
      g_autofree char *path = g_strdup_printf ("/core/conv2d/%s/matches-pytorch", convs[i]);
      g_test_add_data_func (path, convs[i], test_conv2d_golden);
    }
  g_test_add_func ("/core/batchnorm/train-matches-pytorch", test_batchnorm_train_golden);
  g_test_add_func ("/core/batchnorm/eval-matches-pytorch", test_batchnorm_eval_golden);
  g_test_add_func ("/core/relu/matches-pytorch", test_relu_golden);
  g_test_add_func ("/core/sigmoid/matches-pytorch", test_sigmoid_golden);
  for (gsize i = 0; i < G_N_ELEMENTS (pools); i++)
    {
      g_autofree char *path = g_strdup_printf ("/core/pool/%s/matches-pytorch", pools[i]);
      g_test_add_data_func (path, pools[i], test_pool_golden);
    }
  g_test_add_func ("/core/global-avgpool/matches-pytorch", test_global_avgpool_golden);
  g_test_add_func ("/core/maxpool/nan-and-ties", test_maxpool_nan_and_ties);
  g_test_add_func ("/core/mask/chain-backward", test_mask_chain_backward);
  g_test_add_func ("/core/linear/matches-pytorch", test_linear_golden);
  g_test_add_func ("/core/add/matches-pytorch", test_add_golden);
  g_test_add_func ("/core/concat/matches-pytorch", test_concat_golden);
  g_test_add_func ("/core/mask/matches-pytorch", test_mask_golden);
  g_test_add_func ("/core/softmax-ce/matches-pytorch", test_softmax_ce_golden);
  g_test_add_func ("/core/sgd/matches-pytorch", test_sgd_golden);
  g_test_add_func ("/core/adam/matches-pytorch", test_adam_golden);
  g_test_add_func ("/core/network/step-matches-pytorch", test_network_golden);

  g_test_add_func ("/core/conv2d/batched-matches-per-image", test_conv2d_batched);
  g_test_add_func ("/core/conv2d/backward-deterministic", test_conv2d_backward_deterministic);
  g_test_add_func ("/core/conv2d/gradcheck", test_conv2d_gradcheck);
  g_test_add_func ("/core/batchnorm/gradcheck", test_batchnorm_gradcheck);
  g_test_add_func ("/core/activation-pool/gradcheck", test_activation_pool_gradcheck);
  g_test_add_func ("/core/linear/gradcheck", test_linear_gradcheck);
  g_test_add_func ("/core/linear/large-matches-naive", test_linear_large);
  g_test_add_func ("/core/mask/gradcheck", test_mask_gradcheck);
  g_test_add_func ("/core/softmax-ce/gradcheck", test_softmax_ce_gradcheck);

  g_test_add_func ("/core/dropout/keep-rate-and-scale", test_dropout);
  g_test_add_func ("/core/mul/elementwise", test_mul);
  g_test_add_func ("/core/ops/shape-errors", test_shape_errors);

  rc = g_test_run ();
  cleave_backend_unref (backend);
  return rc;
}
