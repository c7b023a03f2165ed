/* bench-cnn.c: training and inference throughput of the benchmark CNN
 * (issue 2: conv 1→32, 32→32, pool, 32→64, 64→64, pool, fc 3136→256, fc 256→10,
 * BN+ReLU after every conv, batch 128) on each requested device.
 * Prints one JSON object per device; bench/run.sh compares with PyTorch.
 * --model FILE times inference of a model file instead (a Cleave model or an
 * ONNX file, batch of random inputs of its input shape): bench/infer.sh
 * compares that with ONNX Runtime and PyTorch. */
#include "cleave-arch.h"
#include "cleave-model.h"
#include "cleave-onnx.h"
#include "cleave-blas.h"
#include "cleave-device.h"
#include "cleave-net.h"
#include "cleave-ops.h"
#include "cleave-optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* --infer-only: skip the training steps (for profiling inference alone) */
static gboolean infer_only;

static gboolean
bench_device (const char *spec, int batch, int iters, GError **error)
{
  g_autoptr(CleaveBackend) backend = cleave_device_open (spec, NULL, error);
  g_autoptr(CleaveGraph) g = NULL;
  g_autoptr(CleaveOptimizer) sgd = NULL;
  CleaveNet *net = NULL;
  CleaveTensor *labels = NULL, *loss = NULL, *dlogits = NULL;
  g_autofree float *x = NULL, *y = NULL;
  g_autofree double *train_t = NULL, *infer_t = NULL;
  GRand *r;
  gboolean ok = FALSE;
  double flops;
  float lossv;

  if (backend == NULL)
    return FALSE;
  g = cleave_arch_build ("bench", 1, 28, 28, 10, error);
  if (g == NULL)
    return FALSE;
  cleave_graph_init_params (g, 1);
  flops = (double) cleave_graph_count_flops (g);
  net = cleave_net_new (g, backend, error);
  if (net == NULL)
    return FALSE;
  sgd = cleave_optimizer_new_sgd (0.01f, 0.9f, 1e-4f);
  if (!cleave_optimizer_add_net (sgd, net, error))
    goto out;
  labels = cleave_tensor_new_1d (backend, batch, error);
  loss = cleave_tensor_new_1d (backend, 1, error);
  dlogits = cleave_tensor_new_2d (backend, batch, 10, error);
  if (!labels || !loss || !dlogits)
    goto out;
  x = g_new (float, (gsize) batch * 784);
  y = g_new (float, batch);
  r = g_rand_new_with_seed (7);
  for (int i = 0; i < batch * 784; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1);
  for (int i = 0; i < batch; i++)
    y[i] = (float) g_rand_int_range (r, 0, 10);
  g_rand_free (r);
  if (!cleave_tensor_upload (labels, y, batch, error))
    goto out;
  train_t = g_new (double, iters);
  infer_t = g_new (double, iters);
  /* warm-up (kernel builds, first-touch allocations), then timed steps;
   * each step ends with a download so queued device work is counted. */
  for (int i = infer_only ? iters : -3; i < iters; i++)
    {
      gint64 t0 = g_get_monotonic_time ();
      if (!cleave_net_forward (net, x, batch, TRUE, error) ||
          !cleave_softmax_ce (cleave_net_output (net), labels, loss, dlogits, error) ||
          !cleave_net_backward (net, dlogits, error) || !cleave_optimizer_step (sgd, error) ||
          !cleave_tensor_download (loss, &lossv, 1, error))
        goto out;
      if (i >= 0)
        train_t[i] = (g_get_monotonic_time () - t0) / 1e6;
    }
  for (int i = -3; i < iters; i++)
    {
      gint64 t0 = g_get_monotonic_time ();
      float out[128 * 10];
      if (!cleave_net_infer (net, x, batch, error) ||
          (batch <= 128 && !cleave_net_download_output (net, out, error)) ||
          !cleave_backend_finish (backend, error))
        goto out;
      if (i >= 0)
        infer_t[i] = (g_get_monotonic_time () - t0) / 1e6;
    }
  {
    double tt = infer_only ? NAN : median (train_t, iters), ti = median (infer_t, iters);
    printf ("{\"engine\": \"cleave\", \"device\": \"%s\", \"batch\": %d, \"iters\": %d, "
            "\"train_images_per_s\": %.1f, \"infer_images_per_s\": %.1f, "
            "\"train_gflops\": %.2f, \"infer_gflops\": %.2f}\n",
            backend->name, batch, iters, batch / tt, batch / ti,
            3 * flops * batch / tt / 1e9, flops * batch / ti / 1e9);
  }
  ok = TRUE;
out:
  cleave_tensor_free (labels);
  cleave_tensor_free (loss);
  cleave_tensor_free (dlogits);
  cleave_net_free (net);
  return ok;
}

/* Inference of a model file on one device: median seconds per batch of @iters
 * after three warm-up batches, printed as one JSON object. */
static gboolean
bench_model (const char *spec, const char *path, int batch, int iters, GError **error)
{
  g_autoptr(CleaveBackend) backend = cleave_device_open (spec, NULL, error);
  g_autoptr(CleaveModel) model = NULL;
  CleaveNet *net = NULL;
  g_autofree float *x = NULL, *out = NULL;
  g_autofree double *t = NULL;
  int c, h, w, n_out;
  gboolean ok = FALSE;
  GRand *r;

  if (backend == NULL)
    return FALSE;
  model = g_str_has_suffix (path, ".onnx") ? cleave_onnx_load_model (path, error) : cleave_model_load (path, error);
  if (model == NULL)
    return FALSE;
  cleave_graph_input_shape (model->graph, &c, &h, &w);
  n_out = model->n_classes;
  net = cleave_net_new (model->graph, backend, error);
  if (net == NULL)
    return FALSE;
  x = g_new (float, (gsize) batch * c * h * w);
  out = g_new (float, (gsize) batch * n_out);
  t = g_new (double, iters);
  r = g_rand_new_with_seed (7);
  for (gsize i = 0; i < (gsize) batch * c * h * w; i++)
    x[i] = (float) g_rand_double_range (r, -1, 1);
  g_rand_free (r);
  for (int i = -3; i < iters; i++)
    {
      gint64 t0 = g_get_monotonic_time ();
      if (!cleave_net_infer (net, x, batch, error) || !cleave_net_download_output (net, out, error) ||
          !cleave_backend_finish (backend, error))
        goto out;
      if (i >= 0)
        t[i] = (g_get_monotonic_time () - t0) / 1e6;
    }
  {
    double ti = median (t, iters), flops = (double) cleave_graph_count_flops (model->graph);
    printf ("{\"engine\": \"cleave\", \"device\": \"%s\", \"batch\": %d, \"iters\": %d, "
            "\"input\": [%d, %d, %d], \"flops\": %.0f, "
            "\"infer_images_per_s\": %.1f, \"infer_gflops\": %.2f}\n",
            backend->name, batch, iters, c, h, w, flops, batch / ti, flops * batch / ti / 1e9);
  }
  ok = TRUE;
out:
  cleave_net_free (net);
  return ok;
}

int
main (int argc, char **argv)
{
  int batch = 128, iters = 30, status = 0;
  const char *devices[16], *model = NULL;
  int n_dev = 0;

  if (cleave_blas_preferred_coretype () && !g_getenv ("OPENBLAS_CORETYPE") && !g_getenv ("CLEAVE_KEEP_BLAS_KERNELS"))
    cleave_blas_reexec (cleave_blas_preferred_coretype (), argv);

  for (int i = 1; i < argc; i++)
    {
      if (g_str_equal (argv[i], "--batch") && i + 1 < argc)
        batch = atoi (argv[++i]);
      else if (g_str_equal (argv[i], "--iters") && i + 1 < argc)
        iters = atoi (argv[++i]);
      else if (g_str_equal (argv[i], "--model") && i + 1 < argc)
        model = argv[++i];
      else if (g_str_equal (argv[i], "--infer-only"))
        infer_only = TRUE;
      else if (n_dev < 16)
        devices[n_dev++] = argv[i];
    }
  if (n_dev == 0)
    devices[n_dev++] = "cpu";
  if (batch < 1 || iters < 1)
    {
      fprintf (stderr, "usage: bench-cnn [--batch N] [--iters N] [--infer-only | --model FILE] [DEVICE…]\n");
      return 2;
    }
  for (int d = 0; d < n_dev; d++)
    {
      g_autoptr(GError) error = NULL;
      if (!(model ? bench_model (devices[d], model, batch, iters, &error)
                  : bench_device (devices[d], batch, iters, &error)))
        {
          fprintf (stderr, "bench-cnn: %s: %s\n", devices[d], error ? error->message : "failed");
          status = 1;
        }
    }
  return status;
}
