/* test-net.c: whole networks through CleaveNet against PyTorch golden files
 * (tests/reference/make_net_golden.py): training-mode forward, loss, every
 * parameter gradient, one SGD step with running statistics, and grouped
 * channel masks with their gradients in eval mode — on every backend. */
#include "cleave-device.h"
#include "cleave-graph.h"
#include "cleave-net.h"
#include "cleave-ops.h"
#include "cleave-optim.h"
#include "cleave-safetensors.h"

#include <math.h>
#include <string.h>

typedef struct {
  const char *net;
  const char *device;
} Case;

static float *
golden (CleaveSafetensors *st, const char *name, gsize *n)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, name);
  g_autoptr(GError) error = NULL;
  float *v;
  g_assert_nonnull (t);
  v = cleave_safe_tensor_to_f32 (t, 0, "golden", &error);
  g_assert_no_error (error);
  if (n)
    *n = cleave_safe_tensor_numel (t);
  return v;
}

/* |a - b| <= atol + rtol |b| element-wise. */
static void
assert_close (const char *what, const float *a, const float *b, gsize n, double atol, double rtol)
{
  for (gsize i = 0; i < n; i++)
    if (!(fabs (a[i] - b[i]) <= atol + rtol * fabs (b[i])))
      g_error ("%s[%zu]: cleave %.7g, pytorch %.7g (atol %g, rtol %g)", what, i, a[i], b[i], atol, rtol);
}

static CleaveBackend *
open_backend (const char *spec)
{
  g_autoptr(GError) error = NULL;
  CleaveBackend *b = cleave_device_open (spec, NULL, &error);
  if (b == NULL)
    {
      g_autofree char *msg = g_strdup_printf ("device '%s' unavailable: %s", spec, error->message);
      g_test_skip (msg);
    }
  return b;
}

static CleaveSafetensors *
load_case (const Case *c, CleaveGraph **graph)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "reference", "golden", NULL);
  g_autofree char *file = g_strdup_printf ("%s/net-%s.safetensors", path, c->net);
  g_autoptr(GError) error = NULL;
  CleaveSafetensors *st = cleave_safetensors_load (file, &error);
  g_assert_no_error (error);
  *graph = cleave_graph_from_json (cleave_safetensors_get_metadata (st, "graph"), &error);
  g_assert_no_error (error);
  for (int i = 0; i < cleave_graph_n_params (*graph); i++)
    {
      CleaveParam *p = cleave_graph_param (*graph, i);
      g_autofree char *key = g_strconcat ("init.", p->name, NULL);
      gsize n;
      float *v = golden (st, key, &n);
      g_assert_cmpuint (n, ==, cleave_param_numel (p));
      g_free (p->data);
      p->data = v;
    }
  return st;
}

/* Training step: forward (batch statistics), cross-entropy, backward, SGD. */
static void
test_train_step (gconstpointer data)
{
  const Case *c = data;
  g_autoptr(CleaveBackend) backend = open_backend (c->device);
  g_autoptr(CleaveGraph) g = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveOptimizer) sgd = NULL;
  g_autofree float *x = NULL, *labels = NULL, *want_logits = NULL, *want_loss = NULL, *logits = NULL;
  CleaveTensor *lab, *loss, *dlogits;
  CleaveNet *net;
  gsize nx, nl, nlog;
  float lossv;
  int batch;

  if (backend == NULL)
    return;
  st = load_case (c, &g);
  x = golden (st, "x", &nx);
  labels = golden (st, "labels", &nl);
  want_logits = golden (st, "train.logits", &nlog);
  want_loss = golden (st, "train.loss", NULL);
  batch = (int) nl;
  cleave_graph_set_trainable (g, TRUE);
  net = cleave_net_new (g, backend, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, batch, TRUE, &error));
  g_assert_no_error (error);
  logits = g_new (float, nlog);
  g_assert_true (cleave_net_download_output (net, logits, &error));
  assert_close ("train logits", logits, want_logits, nlog, 1e-5, 1e-4);

  lab = cleave_tensor_new_1d (backend, batch, &error);
  loss = cleave_tensor_new_1d (backend, 1, &error);
  dlogits = cleave_tensor_new_2d (backend, batch, (int) (nlog / batch), &error);
  g_assert_true (cleave_tensor_upload (lab, labels, batch, &error));
  g_assert_true (cleave_softmax_ce (cleave_net_output (net), lab, loss, dlogits, &error));
  g_assert_true (cleave_tensor_download (loss, &lossv, 1, &error));
  assert_close ("loss", &lossv, want_loss, 1, 1e-6, 1e-5);
  g_assert_true (cleave_net_backward (net, dlogits, &error));
  g_assert_no_error (error);
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      g_autofree char *key = g_strconcat ("grad.", p->name, NULL);
      g_autofree float *want = NULL, *got = NULL;
      gsize n;
      if (p->is_buffer)
        continue;
      want = golden (st, key, &n);
      got = cleave_tensor_to_host (cleave_net_param_grad (net, i), &error);
      g_assert_no_error (error);
      assert_close (key, got, want, n, 1e-5, 1e-3);
    }
  sgd = cleave_optimizer_new_sgd (0.05f, 0.9f, 1e-4f);
  g_assert_true (cleave_optimizer_add_net (sgd, net, &error));
  g_assert_true (cleave_optimizer_step (sgd, &error));
  g_assert_true (cleave_net_sync_to_graph (net, &error));
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      g_autofree char *key = g_strconcat ("after.", p->name, NULL);
      g_autofree float *want = NULL;
      gsize n;
      want = golden (st, key, &n);
      g_assert_cmpuint (n, ==, cleave_param_numel (p));
      assert_close (key, p->data, want, n, 1e-5, 1e-4);
    }
  cleave_tensor_free (lab);
  cleave_tensor_free (loss);
  cleave_tensor_free (dlogits);
  cleave_net_free (net);
}

/* Each mask site's gradient (two groups) against the golden file. */
static void
check_mask_grads (CleaveNet *net, CleaveGraph *g, CleaveSafetensors *st, const char *when)
{
  g_autoptr (GError) error = NULL;

  for (int s = 0; s < cleave_graph_n_mask_sites (g); s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
      g_autofree char *key = g_strconcat ("mask.grad.", cleave_graph_node (g, site->conv)->name, NULL);
      g_autofree char *what = g_strconcat (key, when, NULL);
      g_autofree float *wg = golden (st, key, NULL);
      g_autofree float *gg = cleave_tensor_to_host (cleave_net_mask_grad (net, s), &error);
      g_assert_no_error (error);
      assert_close (what, gg, wg, 2 * site->channels, 1e-5, 1e-3);
    }
}

/* Both groups given group 0's mask at the first sites (at the first only,
 * then at all but the last): cleave_net_infer_repeated runs the layers up to
 * the first differing mask once, and its logits and mask gradients must
 * match a forward of the two explicit copies. */
static void
check_uniform_masks (CleaveNet *net, CleaveGraph *g, CleaveSafetensors *st, CleaveTensor **masks,
                     const float *x, const float *x2, int batch, const CleaveTensor *dt)
{
  g_autoptr (GError) error = NULL;
  int n_sites = cleave_graph_n_mask_sites (g);
  gsize nout = cleave_tensor_numel (cleave_net_output (net));
  g_autofree float *want = g_new (float, nout), *got = g_new (float, nout);

  const int uptos[2] = { 1, MAX (1, n_sites - 1) };

  for (int k = 0; k < 2; k++)
    {
      int upto = uptos[k];
      GPtrArray *want_dm = g_ptr_array_new_with_free_func (g_free);
      for (int s = 0; s < n_sites; s++)
        {
          const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
          g_autofree char *key = g_strconcat ("mask.value.", cleave_graph_node (g, site->conv)->name, NULL);
          g_autofree float *m = golden (st, key, NULL);
          if (s < upto)
            memcpy (m + site->channels, m, site->channels * sizeof (float));
          g_assert_true (cleave_tensor_upload (masks[s], m, 2 * site->channels, &error));
        }
      g_assert_true (cleave_net_forward (net, x2, batch, FALSE, &error));
      g_assert_true (cleave_net_download_output (net, want, &error));
      g_assert_true (cleave_net_backward (net, dt, &error));
      g_assert_no_error (error);
      for (int s = 0; s < n_sites; s++)
        g_ptr_array_add (want_dm, cleave_tensor_to_host (cleave_net_mask_grad (net, s), &error));
      g_assert_true (cleave_net_infer_repeated (net, x, batch / 2, 2, &error));
      g_assert_true (cleave_net_download_output (net, got, &error));
      g_assert_no_error (error);
      assert_close ("masked logits (repeated input, equal masks)", got, want, nout, 1e-5, 1e-4);
      g_assert_true (cleave_net_backward (net, dt, &error));
      g_assert_no_error (error);
      for (int s = 0; s < n_sites; s++)
        {
          g_autofree float *gg = cleave_tensor_to_host (cleave_net_mask_grad (net, s), &error);
          g_assert_no_error (error);
          assert_close ("mask gradient (repeated input, equal masks)", gg, want_dm->pdata[s],
                        2 * cleave_graph_mask_site (g, s)->channels, 1e-5, 1e-3);
        }
      g_ptr_array_unref (want_dm);
    }
}

/* Eval mode, two mask groups: masked logits and d(sum(w·logits))/d(mask). */
static void
test_masks (gconstpointer data)
{
  const Case *c = data;
  g_autoptr(CleaveBackend) backend = open_backend (c->device);
  g_autoptr(CleaveGraph) g = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree float *x = NULL, *x2 = NULL, *want = NULL, *dout = NULL, *got = NULL;
  g_autofree CleaveTensor **masks = NULL;
  CleaveTensor *dt;
  CleaveNet *net;
  gsize nx, nout;
  int n_sites, batch;

  if (backend == NULL)
    return;
  st = load_case (c, &g);
  cleave_graph_set_trainable (g, FALSE);
  x = golden (st, "x", &nx);
  want = golden (st, "mask.logits", &nout);
  dout = golden (st, "mask.dout", NULL);
  x2 = g_new (float, 2 * nx);
  memcpy (x2, x, nx * sizeof (float));
  memcpy (x2 + nx, x, nx * sizeof (float));
  batch = (int) (cleave_safetensors_find (st, "labels")->shape[0]) * 2;
  net = cleave_net_new (g, backend, &error);
  g_assert_no_error (error);
  n_sites = cleave_graph_n_mask_sites (g);
  g_assert_cmpint (n_sites, >, 0);
  masks = g_new0 (CleaveTensor *, (gsize) MAX (n_sites, 1));
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
      g_autofree char *key = g_strconcat ("mask.value.", cleave_graph_node (g, site->conv)->name, NULL);
      g_autofree float *m = golden (st, key, NULL);
      masks[s] = cleave_tensor_new_2d (backend, 2, site->channels, &error);
      g_assert_true (cleave_tensor_upload (masks[s], m, 2 * site->channels, &error));
    }
  g_assert_true (cleave_net_set_masks (net, masks, 2, TRUE, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x2, batch, FALSE, &error));
  g_assert_no_error (error);
  got = g_new (float, nout);
  g_assert_true (cleave_net_download_output (net, got, &error));
  assert_close ("masked logits", got, want, nout, 1e-5, 1e-4);
  dt = cleave_tensor_new (backend, cleave_net_output (net)->ndim, cleave_net_output (net)->shape, &error);
  g_assert_true (cleave_tensor_upload (dt, dout, nout, &error));
  g_assert_true (cleave_net_backward (net, dt, &error));
  g_assert_no_error (error);
  check_mask_grads (net, g, st, "");
  /* No parameter is trainable: none may have a gradient buffer. */
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    g_assert_null (cleave_net_param_grad (net, i));

  /* The inference path (conv → batchnorm → relu fused where the backend can)
   * gives the same masked logits and, the network being frozen, the same
   * mask gradients; with trainable parameters a backward after it is
   * refused (the fused layers' outputs were not kept), and works again
   * after a forward. */
  g_assert_true (cleave_net_infer (net, x2, batch, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_download_output (net, got, &error));
  assert_close ("masked logits (infer)", got, want, nout, 1e-5, 1e-4);
  /* the cpu backend fuses the conv → batchnorm → relu chains of these nets
   * where nothing else reads the conv output; OpenCL has no fused op */
  g_assert_true (cleave_net_last_fused (net) ==
                 (cleave_conv2d_bn_supported (backend) && g_strcmp0 (c->net, "cat") != 0));
  g_assert_true (cleave_net_backward (net, dt, &error));
  g_assert_no_error (error);
  check_mask_grads (net, g, st, " (after infer)");
  /* The same from one copy of the input: the layers before the first mask
   * run once and are copied, and the logits and mask gradients match. */
  g_assert_true (cleave_net_infer_repeated (net, x, batch / 2, 2, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_download_output (net, got, &error));
  assert_close ("masked logits (infer, repeated input)", got, want, nout, 1e-5, 1e-4);
  g_assert_true (cleave_net_backward (net, dt, &error));
  g_assert_no_error (error);
  check_mask_grads (net, g, st, " (repeated input)");
  check_uniform_masks (net, g, st, masks, x, x2, batch, dt);
  g_assert_false (cleave_net_infer_repeated (net, x, batch / 2, 0, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  cleave_graph_set_trainable (g, TRUE);
  g_assert_true (cleave_net_refresh_trainable (net, &error));
  g_assert_true (cleave_net_infer (net, x2, batch, &error));
  if (cleave_net_last_fused (net))
    {
      g_assert_false (cleave_net_backward (net, dt, &error));
      g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "cleave_net_infer"));
      g_clear_error (&error);
    }
  g_assert_true (cleave_net_forward (net, x2, batch, FALSE, &error) && cleave_net_backward (net, dt, &error));
  g_assert_no_error (error);
  cleave_tensor_free (dt);
  for (int s = 0; s < n_sites; s++)
    cleave_tensor_free (masks[s]);
  cleave_net_free (net);
}

/* cleave_net_infer against an eval-mode cleave_net_forward, with batchnorm
 * statistics and affine parameters far from their defaults (the folding
 * must use all four): the output and every mask site's output agree. */
static void
test_infer (gconstpointer data)
{
  const Case *c = data;
  g_autoptr(CleaveBackend) backend = open_backend (c->device);
  g_autoptr(CleaveGraph) g = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GRand) r = g_rand_new_with_seed (11);
  g_autofree float *x = NULL, *a = NULL, *b = NULL;
  CleaveNet *net;
  gsize nx, nout;
  int batch;

  if (backend == NULL)
    return;
  st = load_case (c, &g);
  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    {
      CleaveNode *n = cleave_graph_node (g, i);
      if (n->op != CLEAVE_OP_BATCHNORM2D)
        continue;
      for (int slot = 0; slot < CLEAVE_N_PARAM_SLOTS; slot++)
        {
          CleaveParam *p = n->param[slot] >= 0 ? cleave_graph_param (g, n->param[slot]) : NULL;
          for (gsize k = 0; p && k < cleave_param_numel (p); k++)
            p->data[k] = slot == CLEAVE_PARAM_RUNNING_VAR ? (float) g_rand_double_range (r, 0.3, 3.0)
                                                          : (float) g_rand_double_range (r, -0.8, 0.8);
        }
    }
  x = golden (st, "x", &nx);
  batch = (int) cleave_safetensors_find (st, "labels")->shape[0];
  net = cleave_net_new (g, backend, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, batch, FALSE, &error));
  g_assert_no_error (error);
  nout = cleave_tensor_numel (cleave_net_output (net));
  a = g_new (float, nout);
  b = g_new (float, nout);
  g_assert_true (cleave_net_download_output (net, a, &error));
  {
    int n_sites = cleave_graph_n_mask_sites (g);
    g_autoptr(GPtrArray) site_out = g_ptr_array_new_with_free_func (g_free);
    for (int s = 0; s < n_sites; s++)
      {
        g_ptr_array_add (site_out, cleave_tensor_to_host (cleave_net_node_output (net, cleave_graph_mask_site (g, s)->node), &error));
        g_assert_no_error (error);
      }
    g_assert_true (cleave_net_infer (net, x, batch, &error));
    g_assert_no_error (error);
    g_assert_true (cleave_net_download_output (net, b, &error));
    assert_close ("logits (infer vs forward)", b, a, nout, 1e-5, 1e-4);
    for (int s = 0; s < n_sites; s++)
      {
        CleaveTensor *t = cleave_net_node_output (net, cleave_graph_mask_site (g, s)->node);
        g_autofree float *v = cleave_tensor_to_host (t, &error);
        g_assert_no_error (error);
        assert_close (cleave_graph_node (g, cleave_graph_mask_site (g, s)->node)->name, v, site_out->pdata[s],
                      cleave_tensor_numel (t), 1e-5, 1e-4);
      }
  }
  cleave_net_free (net);
}

/* Bad input: wrong input shape, mask of the wrong shape, batch not a multiple of groups. */
static void
test_bad_input (void)
{
  g_autoptr(CleaveBackend) backend = cleave_backend_cpu_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveGraph) g = cleave_graph_from_json (
    "{\"input\":[1,4,4],\"nodes\":[{\"name\":\"c\",\"op\":\"conv2d\",\"out_channels\":2,\"kernel\":3,\"pad\":1},"
    "{\"name\":\"r\",\"op\":\"relu\"},{\"name\":\"f\",\"op\":\"flatten\"},{\"name\":\"l\",\"op\":\"linear\",\"out_features\":3}]}",
    &error);
  CleaveTensor *wrong, *mask;
  CleaveNet *net;
  float x[2 * 16] = { 0 };

  g_assert_no_error (error);
  net = cleave_net_new (g, backend, &error);
  g_assert_no_error (error);
  wrong = cleave_tensor_new_4d (backend, 2, 3, 4, 4, &error);
  g_assert_false (cleave_net_forward_tensor (net, wrong, FALSE, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "[2, 3, 4, 4]"));
  g_clear_error (&error);
  mask = cleave_tensor_new_2d (backend, 2, 5, &error);
  g_assert_false (cleave_net_set_masks (net, &mask, 2, FALSE, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "'c'"));
  g_clear_error (&error);
  cleave_tensor_free (mask);
  mask = cleave_tensor_new_2d (backend, 2, 2, &error);
  g_assert_true (cleave_tensor_fill (mask, 1.0f, &error));
  g_assert_true (cleave_net_set_masks (net, &mask, 2, FALSE, &error));
  g_assert_false (cleave_net_forward (net, x, 1, FALSE, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (cleave_net_forward (net, x, 2, FALSE, &error));
  g_assert_no_error (error);
  g_assert_false (cleave_net_backward (net, wrong, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  cleave_tensor_free (wrong);
  cleave_tensor_free (mask);
  cleave_net_free (net);
}

/* A cancelled cancellable stops forward and backward with G_IO_ERROR_CANCELLED;
 * once it is removed (or reset) the net runs again and gives the same output. */
static void
test_cancel (void)
{
  g_autoptr(CleaveBackend) backend = cleave_backend_cpu_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  g_autoptr(CleaveGraph) g = cleave_graph_from_json (
    "{\"input\":[1,4,4],\"nodes\":[{\"name\":\"c\",\"op\":\"conv2d\",\"out_channels\":2,\"kernel\":3,\"pad\":1},"
    "{\"name\":\"r\",\"op\":\"relu\"},{\"name\":\"f\",\"op\":\"flatten\"},{\"name\":\"l\",\"op\":\"linear\",\"out_features\":3}]}",
    &error);
  CleaveTensor *dout;
  CleaveNet *net;
  float x[2 * 16], a[6], b[6];

  g_assert_no_error (error);
  for (int i = 0; i < 32; i++)
    x[i] = (float) (i % 7) - 3.0f;
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      for (gsize k = 0; k < cleave_param_numel (p); k++)
        p->data[k] = 0.1f * (float) ((k * 5 + i) % 9) - 0.4f;
    }
  net = cleave_net_new (g, backend, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, 2, TRUE, &error));
  g_assert_true (cleave_net_download_output (net, a, &error));

  cleave_net_set_cancellable (net, cancel);
  g_cancellable_cancel (cancel);
  g_assert_false (cleave_net_forward (net, x, 2, TRUE, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_assert_false (cleave_net_infer (net, x, 2, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Reset: a forward runs, then a cancel stops the backward. */
  g_cancellable_reset (cancel);
  g_assert_true (cleave_net_forward (net, x, 2, TRUE, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_download_output (net, b, &error));
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  dout = cleave_tensor_new_2d (backend, 2, 3, &error);
  g_assert_true (cleave_tensor_fill (dout, 1.0f, &error));
  g_cancellable_cancel (cancel);
  g_assert_false (cleave_net_backward (net, dout, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);

  /* Removed: everything runs again, with the same output. */
  cleave_net_set_cancellable (net, NULL);
  g_assert_true (cleave_net_forward (net, x, 2, TRUE, &error));
  g_assert_true (cleave_net_backward (net, dout, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_net_download_output (net, b, &error));
  g_assert_cmpmem (a, sizeof a, b, sizeof b);
  cleave_tensor_free (dout);
  cleave_net_free (net);
}

int
main (int argc, char **argv)
{
  static const char *nets[] = { "plain", "res", "cat", "squeeze" };
  static const char *devices[] = { "cpu", "opencl" };
  g_test_init (&argc, &argv, NULL);
  for (gsize d = 0; d < G_N_ELEMENTS (devices); d++)
    for (gsize i = 0; i < G_N_ELEMENTS (nets); i++)
      {
        Case *c = g_new0 (Case, 1);
        g_autofree char *p1 = g_strdup_printf ("/core/net/%s/%s/train-step-matches-pytorch", devices[d], nets[i]);
        g_autofree char *p2 = g_strdup_printf ("/core/net/%s/%s/masks-match-pytorch", devices[d], nets[i]);
        c->net = nets[i];
        c->device = devices[d];
        g_test_add_data_func (p1, c, test_train_step);
        g_test_add_data_func (p2, c, test_masks);
        {
          g_autofree char *p3 = g_strdup_printf ("/core/net/%s/%s/infer-matches-forward", devices[d], nets[i]);
          g_test_add_data_func (p3, c, test_infer);
        }
      }
  g_test_add_func ("/core/net/bad-input", test_bad_input);
  g_test_add_func ("/core/net/cancel", test_cancel);
  return g_test_run ();
}
