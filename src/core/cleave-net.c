/* cleave-net.c: running a CleaveGraph on a backend (forward, backward, masks). */
#include "cleave-net.h"
#include "cleave-graph-private.h"
#include "cleave-ops.h"
#include "cleave-error.h"

#include <math.h>
#include <string.h>

struct _CleaveNet {
  CleaveGraph *graph;
  CleaveBackend *backend;
  int n_nodes, n_params;

  CleaveTensor **pvalue;     /* per parameter */
  CleaveTensor **pgrad;      /* per parameter, NULL when frozen */

  int batch;                 /* batch the activation buffers are sized for (0 = none) */
  CleaveTensor **act;        /* per node: its (masked) output */
  CleaveTensor **own;        /* per node: pre-mask output at mask sites, else == act */
  CleaveTensor **grad;       /* per node: d loss / d act */
  CleaveTensor **gtmp;       /* per node with several consumers: scratch for summing */
  CleaveTensor **own_grad;   /* per mask site node: d loss / d own */
  CleaveTensor **aux0;       /* BN: save_mean; dropout: keep */
  CleaveTensor **aux1;       /* BN: save_invstd */
  gboolean *grad_written;
  int *n_consumers;
  int *site_of_node;

  gboolean last_training;
  gboolean last_fused;       /* the last forward fused conv/batchnorm chains */
  gboolean *in_fused;        /* per node: inside a fused chain of the last forward (output not written,
                              * except the chain's last node's own[]) */
  int *own_rows;             /* per node: > 0 where the last forward wrote only the first own_rows rows
                              * of own[] (the batch repeats them; cleave_net_infer_repeated) */
  gboolean eval_stats_valid; /* aux0/aux1 hold running-stat mean/invstd */

  CleaveTensor **masks;      /* per site, borrowed */
  CleaveTensor **mask_grads; /* per site, owned */
  int mask_groups;
  gboolean mask_need_grad;

  guint64 seed;
  GCancellable *cancellable; /* checked before each layer, or NULL */
};

static void
free_tensor_array (CleaveTensor **a, int n)
{
  if (a == NULL)
    return;
  for (int i = 0; i < n; i++)
    cleave_tensor_free (a[i]);
}

static void
free_activations (CleaveNet *net)
{
  for (int i = 0; i < net->n_nodes; i++)
    {
      if (net->own[i] != net->act[i])
        cleave_tensor_free (net->own[i]);
      net->own[i] = NULL;
    }
  free_tensor_array (net->act, net->n_nodes);
  free_tensor_array (net->grad, net->n_nodes);
  free_tensor_array (net->gtmp, net->n_nodes);
  free_tensor_array (net->own_grad, net->n_nodes);
  free_tensor_array (net->aux0, net->n_nodes);
  free_tensor_array (net->aux1, net->n_nodes);
  memset (net->act, 0, sizeof (gpointer) * net->n_nodes);
  memset (net->grad, 0, sizeof (gpointer) * net->n_nodes);
  memset (net->gtmp, 0, sizeof (gpointer) * net->n_nodes);
  memset (net->own_grad, 0, sizeof (gpointer) * net->n_nodes);
  memset (net->aux0, 0, sizeof (gpointer) * net->n_nodes);
  memset (net->aux1, 0, sizeof (gpointer) * net->n_nodes);
  net->batch = 0;
  net->eval_stats_valid = FALSE;
}

static CleaveTensor *
new_like_node (CleaveNet *net, const CleaveNode *n, int batch, GError **error)
{
  if (n->out_ndim == 3)
    return cleave_tensor_new_4d (net->backend, batch, n->out_shape[0], n->out_shape[1], n->out_shape[2], error);
  return cleave_tensor_new_2d (net->backend, batch, n->out_shape[0], error);
}

static gboolean
alloc_activations (CleaveNet *net, int batch, GError **error)
{
  CleaveGraph *g = net->graph;

  if (net->batch == batch)
    return TRUE;
  free_activations (net);
  for (int i = 0; i < net->n_nodes; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      if (n->op == CLEAVE_OP_FLATTEN)
        {
          /* A view of its input's buffer: flatten costs nothing forward. */
          int shape[2] = { batch, n->out_shape[0] };
          net->act[i] = cleave_tensor_reshape (net->act[n->inputs[0]], 2, shape);
        }
      else
        {
          net->act[i] = new_like_node (net, n, batch, error);
          if (net->act[i] == NULL)
            goto fail;
        }
      net->own[i] = net->act[i];
      if (net->site_of_node[i] >= 0)
        {
          net->own[i] = new_like_node (net, n, batch, error);
          if (net->own[i] == NULL)
            goto fail;
        }
      if (n->op == CLEAVE_OP_BATCHNORM2D)
        {
          net->aux0[i] = cleave_tensor_new_1d (net->backend, n->out_shape[0], error);
          net->aux1[i] = cleave_tensor_new_1d (net->backend, n->out_shape[0], error);
          if (net->aux0[i] == NULL || net->aux1[i] == NULL)
            goto fail;
        }
      if (n->op == CLEAVE_OP_DROPOUT)
        {
          net->aux0[i] = new_like_node (net, n, batch, error);
          if (net->aux0[i] == NULL)
            goto fail;
        }
    }
  net->batch = batch;
  return TRUE;

fail:
  free_activations (net);
  return FALSE;
}

/* Gradient buffers are allocated on the first backward only: inference never needs them. */
static gboolean
alloc_grads (CleaveNet *net, GError **error)
{
  CleaveGraph *g = net->graph;

  for (int i = 0; i < net->n_nodes; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      if (net->grad[i] != NULL)
        continue;
      net->grad[i] = new_like_node (net, n, net->batch, error);
      if (net->grad[i] == NULL)
        return FALSE;
      if (net->n_consumers[i] > 1 && net->gtmp[i] == NULL)
        {
          net->gtmp[i] = new_like_node (net, n, net->batch, error);
          if (net->gtmp[i] == NULL)
            return FALSE;
        }
      if (net->site_of_node[i] >= 0 && net->own_grad[i] == NULL)
        {
          net->own_grad[i] = new_like_node (net, n, net->batch, error);
          if (net->own_grad[i] == NULL)
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
upload_param (CleaveNet *net, int i, GError **error)
{
  CleaveParam *p = net->graph->params->pdata[i];
  return cleave_tensor_upload (net->pvalue[i], p->data, cleave_param_numel (p), error);
}

CleaveNet *
cleave_net_new (CleaveGraph *graph, CleaveBackend *backend, GError **error)
{
  CleaveNet *net;

  g_return_val_if_fail (graph != NULL && backend != NULL, NULL);
  if (!graph->finalized && !cleave_graph_finalize (graph, error))
    return NULL;
  net = g_new0 (CleaveNet, 1);
  net->graph = graph;
  net->backend = cleave_backend_ref (backend);
  net->n_nodes = (int) graph->nodes->len;
  net->n_params = (int) graph->params->len;
  net->pvalue = g_new0 (CleaveTensor *, net->n_params);
  net->pgrad = g_new0 (CleaveTensor *, net->n_params);
  net->act = g_new0 (CleaveTensor *, net->n_nodes);
  net->own = g_new0 (CleaveTensor *, net->n_nodes);
  net->grad = g_new0 (CleaveTensor *, net->n_nodes);
  net->gtmp = g_new0 (CleaveTensor *, net->n_nodes);
  net->own_grad = g_new0 (CleaveTensor *, net->n_nodes);
  net->aux0 = g_new0 (CleaveTensor *, net->n_nodes);
  net->aux1 = g_new0 (CleaveTensor *, net->n_nodes);
  net->grad_written = g_new0 (gboolean, net->n_nodes);
  net->n_consumers = g_new0 (int, net->n_nodes);
  net->site_of_node = g_new (int, net->n_nodes);
  net->seed = 0x5eed;
  for (int i = 0; i < net->n_nodes; i++)
    {
      CleaveNode *n = graph->nodes->pdata[i];
      net->site_of_node[i] = -1;
      for (int k = 0; k < n->n_inputs; k++)
        net->n_consumers[n->inputs[k]]++;
    }
  for (guint s = 0; s < graph->sites->len; s++)
    net->site_of_node[g_array_index (graph->sites, CleaveMaskSite, s).node] = (int) s;
  net->in_fused = g_new0 (gboolean, net->n_nodes);
  net->own_rows = g_new0 (int, net->n_nodes);
  net->masks = g_new0 (CleaveTensor *, MAX (1, graph->sites->len));
  net->mask_grads = g_new0 (CleaveTensor *, MAX (1, graph->sites->len));

  for (int i = 0; i < net->n_params; i++)
    {
      CleaveParam *p = graph->params->pdata[i];
      net->pvalue[i] = cleave_tensor_new (backend, p->ndim, p->shape, error);
      if (net->pvalue[i] == NULL || !upload_param (net, i, error))
        {
          cleave_net_free (net);
          return NULL;
        }
    }
  if (!cleave_net_refresh_trainable (net, error))
    {
      cleave_net_free (net);
      return NULL;
    }
  return net;
}

void
cleave_net_free (CleaveNet *net)
{
  if (net == NULL)
    return;
  free_activations (net);
  free_tensor_array (net->pvalue, net->n_params);
  free_tensor_array (net->pgrad, net->n_params);
  free_tensor_array (net->mask_grads, net->graph->sites->len);
  g_free (net->pvalue);
  g_free (net->pgrad);
  g_free (net->act);
  g_free (net->own);
  g_free (net->grad);
  g_free (net->gtmp);
  g_free (net->own_grad);
  g_free (net->aux0);
  g_free (net->aux1);
  g_free (net->grad_written);
  g_free (net->n_consumers);
  g_free (net->site_of_node);
  g_free (net->masks);
  g_free (net->mask_grads);
  g_free (net->in_fused);
  g_free (net->own_rows);
  cleave_backend_unref (net->backend);
  g_clear_object (&net->cancellable);
  g_free (net);
}

void
cleave_net_set_cancellable (CleaveNet *net, GCancellable *cancellable)
{
  g_set_object (&net->cancellable, cancellable);
}

static gboolean
net_cancelled (CleaveNet *net, GError **error)
{
  return net->cancellable != NULL && g_cancellable_set_error_if_cancelled (net->cancellable, error);
}

CleaveGraph *
cleave_net_graph (CleaveNet *net)
{
  return net->graph;
}

CleaveBackend *
cleave_net_backend (CleaveNet *net)
{
  return net->backend;
}

void
cleave_net_set_seed (CleaveNet *net, guint64 seed)
{
  net->seed = seed;
}

CleaveTensor *
cleave_net_param (CleaveNet *net, int i)
{
  g_return_val_if_fail (i >= 0 && i < net->n_params, NULL);
  return net->pvalue[i];
}

CleaveTensor *
cleave_net_param_grad (CleaveNet *net, int i)
{
  g_return_val_if_fail (i >= 0 && i < net->n_params, NULL);
  return net->pgrad[i];
}

gboolean
cleave_net_refresh_trainable (CleaveNet *net, GError **error)
{
  for (int i = 0; i < net->n_params; i++)
    {
      CleaveParam *p = net->graph->params->pdata[i];
      if (p->trainable && net->pgrad[i] == NULL)
        {
          net->pgrad[i] = cleave_tensor_new (net->backend, p->ndim, p->shape, error);
          if (net->pgrad[i] == NULL)
            return FALSE;
        }
      else if (!p->trainable && net->pgrad[i] != NULL)
        {
          cleave_tensor_free (net->pgrad[i]);
          net->pgrad[i] = NULL;
        }
    }
  return TRUE;
}

gboolean
cleave_net_sync_to_graph (CleaveNet *net, GError **error)
{
  for (int i = 0; i < net->n_params; i++)
    {
      CleaveParam *p = net->graph->params->pdata[i];
      if (!cleave_tensor_download (net->pvalue[i], p->data, cleave_param_numel (p), error))
        return FALSE;
    }
  return TRUE;
}

gboolean
cleave_net_sync_from_graph (CleaveNet *net, GError **error)
{
  for (int i = 0; i < net->n_params; i++)
    if (!upload_param (net, i, error))
      return FALSE;
  net->eval_stats_valid = FALSE;
  return TRUE;
}

gboolean
cleave_net_set_masks (CleaveNet *net, CleaveTensor **masks, int groups, gboolean need_grad, GError **error)
{
  CleaveGraph *g = net->graph;
  int n_sites = (int) g->sites->len;

  free_tensor_array (net->mask_grads, n_sites);
  memset (net->mask_grads, 0, sizeof (gpointer) * MAX (1, n_sites));
  if (masks == NULL)
    {
      memset (net->masks, 0, sizeof (gpointer) * MAX (1, n_sites));
      net->mask_groups = 0;
      net->mask_need_grad = FALSE;
      return TRUE;
    }
  if (groups < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "mask groups must be positive");
      return FALSE;
    }
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = &g_array_index (g->sites, CleaveMaskSite, s);
      if (masks[s] == NULL || masks[s]->ndim != 2 || masks[s]->shape[0] != groups ||
          masks[s]->shape[1] != site->channels || masks[s]->buf->backend != net->backend)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "mask for layer '%s' must be [%d, %d] on this backend",
                       ((CleaveNode *) g->nodes->pdata[site->conv])->name, groups, site->channels);
          memset (net->masks, 0, sizeof (gpointer) * MAX (1, n_sites));
          return FALSE;
        }
    }
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = &g_array_index (g->sites, CleaveMaskSite, s);
      net->masks[s] = masks[s];
      if (need_grad)
        {
          net->mask_grads[s] = cleave_tensor_new_2d (net->backend, groups, site->channels, error);
          if (net->mask_grads[s] == NULL)
            return FALSE;
        }
    }
  net->mask_groups = groups;
  net->mask_need_grad = need_grad;
  return TRUE;
}

CleaveTensor *
cleave_net_mask_grad (CleaveNet *net, int site)
{
  g_return_val_if_fail (site >= 0 && site < (int) net->graph->sites->len, NULL);
  return net->mask_grads[site];
}

CleaveTensor *
cleave_net_output (CleaveNet *net)
{
  return net->act[net->n_nodes - 1];
}

CleaveTensor *
cleave_net_node_output (CleaveNet *net, int node)
{
  g_return_val_if_fail (node >= 0 && node < net->n_nodes, NULL);
  return net->act[node];
}

gboolean
cleave_net_download_output (CleaveNet *net, float *dst, GError **error)
{
  CleaveTensor *out = cleave_net_output (net);
  return cleave_tensor_download (out, dst, cleave_tensor_numel (out), error);
}

static CleaveTensor *
param_of (CleaveNet *net, const CleaveNode *n, CleaveParamSlot slot)
{
  return n->param[slot] >= 0 ? net->pvalue[n->param[slot]] : NULL;
}

static CleaveTensor *
grad_of (CleaveNet *net, const CleaveNode *n, CleaveParamSlot slot)
{
  return n->param[slot] >= 0 ? net->pgrad[n->param[slot]] : NULL;
}

static CleaveTensor *grad_target (CleaveNet *net, int in);
static gboolean grad_commit (CleaveNet *net, int in, GError **error);

/* A [N,C,...] tensor viewed as [N,C] (a global pool kept as (C,1,1), a
 * per-channel scale); free with cleave_tensor_free. */
static CleaveTensor *
as_rows (CleaveTensor *t)
{
  int shape[2] = { t->shape[0], t->ndim > 1 ? t->shape[1] : 1 };
  return cleave_tensor_reshape (t, 2, shape);
}

/* y = a·b elementwise, or a scaled per (sample, channel) by b (C,1,1): the
 * mask op with one group per sample. */
static gboolean
mul_forward (CleaveNet *net, const CleaveNode *n, CleaveTensor *a, CleaveTensor *y, GError **error)
{
  CleaveTensor *b = net->act[n->inputs[1]], *m;
  gboolean ok;

  if (cleave_tensor_same_shape (a, b))
    return cleave_mul (a, b, y, error);
  m = as_rows (b);
  ok = cleave_mask_forward (a, m, y, error);
  cleave_tensor_free (m);
  return ok;
}

/* The gradients of y = a·b: da = dy·b, db = dy·a (summed over H, W for a
 * per-channel b). */
static gboolean
mul_backward (CleaveNet *net, const CleaveNode *n, const gboolean *needs, CleaveTensor *dy, GError **error)
{
  int ia = n->inputs[0], ib = n->inputs[1];
  CleaveTensor *a = net->act[ia], *b = net->act[ib];
  CleaveTensor *da = needs[ia] ? grad_target (net, ia) : NULL;
  CleaveTensor *db = needs[ib] ? grad_target (net, ib) : NULL;
  gboolean ok = TRUE;

  if (da == NULL && db == NULL)
    return TRUE;
  if (cleave_tensor_same_shape (a, b))
    {
      if (da)
        ok = cleave_mul (dy, b, da, error);
      if (ok && db)
        ok = cleave_mul (dy, a, db, error);
    }
  else
    {
      CleaveTensor *m = as_rows (b), *dm = db ? as_rows (db) : NULL;
      ok = cleave_mask_backward (a, m, dy, da, dm, error);
      cleave_tensor_free (m);
      cleave_tensor_free (dm);
    }
  return ok && (!da || grad_commit (net, ia, error)) && (!db || grad_commit (net, ib, error));
}

static gboolean
forward_node (CleaveNet *net, int i, gboolean training, GError **error)
{
  CleaveNode *n = net->graph->nodes->pdata[i];
  CleaveTensor *x = n->n_inputs > 0 ? net->act[n->inputs[0]] : NULL;
  CleaveTensor *y = net->own[i];

  switch (n->op)
    {
    case CLEAVE_OP_INPUT:
    case CLEAVE_OP_FLATTEN:
      return TRUE;
    case CLEAVE_OP_CONV2D:
      {
        CleaveConvParams p = { n->stride, n->pad, n->groups };
        return cleave_conv2d_forward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), param_of (net, n, CLEAVE_PARAM_BIAS),
                                      y, &p, error);
      }
    case CLEAVE_OP_BATCHNORM2D:
      if (training)
        net->eval_stats_valid = FALSE;
      return cleave_batchnorm_forward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), param_of (net, n, CLEAVE_PARAM_BIAS),
                                       param_of (net, n, CLEAVE_PARAM_RUNNING_MEAN),
                                       param_of (net, n, CLEAVE_PARAM_RUNNING_VAR), y,
                                       training ? net->aux0[i] : NULL, training ? net->aux1[i] : NULL,
                                       training, n->momentum, n->eps, error);
    case CLEAVE_OP_RELU:
      return cleave_relu_forward (x, y, error);
    case CLEAVE_OP_SIGMOID:
      return cleave_sigmoid_forward (x, y, error);
    case CLEAVE_OP_CLIP:
      return cleave_clamp_forward (x, y, n->alpha, n->beta, n->clip_min, n->clip_max, error);
    case CLEAVE_OP_HARDSIGMOID:
      return cleave_clamp_forward (x, y, n->alpha, n->beta, 0.0f, 1.0f, error);
    case CLEAVE_OP_MAXPOOL2D:
      {
        CleavePoolParams p = { n->kernel, n->stride, n->pad, n->ceil_mode, FALSE };
        return cleave_maxpool_forward (x, y, &p, error);
      }
    case CLEAVE_OP_AVGPOOL2D:
      {
        CleavePoolParams p = { n->kernel, n->stride, n->pad, n->ceil_mode, n->exclude_pad };
        return cleave_avgpool_forward (x, y, &p, error);
      }
    case CLEAVE_OP_GLOBAL_AVGPOOL:
      {
        CleaveTensor *flat = as_rows (y);
        gboolean ok = cleave_global_avgpool_forward (x, flat, error);
        cleave_tensor_free (flat);
        return ok;
      }
    case CLEAVE_OP_MUL:
      return mul_forward (net, n, x, y, error);
    case CLEAVE_OP_CHANNEL_SHUFFLE:
      return cleave_channel_shuffle (x, y, n->groups, error);
    case CLEAVE_OP_SOFTMAX:
      return cleave_softmax_forward (x, y, error);
    case CLEAVE_OP_SLICE:
      return cleave_channel_copy_out (x, n->start, y, error);
    case CLEAVE_OP_LINEAR:
      return cleave_linear_forward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), param_of (net, n, CLEAVE_PARAM_BIAS),
                                    y, error);
    case CLEAVE_OP_DROPOUT:
      if (training && n->p > 0)
        return cleave_dropout_forward (x, y, net->aux0[i], n->p, net->seed++ * 0x9E3779B97F4A7C15ull, error);
      return cleave_tensor_copy (y, x, error);
    case CLEAVE_OP_ADD:
      return cleave_axpby (1.0f, x, 1.0f, net->act[n->inputs[1]], y, error);
    case CLEAVE_OP_CONCAT:
      {
        int offset = 0;
        for (int k = 0; k < n->n_inputs; k++)
          {
            CleaveTensor *src = net->act[n->inputs[k]];
            if (!cleave_channel_copy_in (src, y, offset, error))
              return FALSE;
            offset += src->shape[1];
          }
        return TRUE;
      }
    default:
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "layer '%s': unsupported op", n->name);
      return FALSE;
    }
}

/* Inference fusion: the last node of the chain conv @i → batchnorm [→ relu]
 * where each link is its predecessor's only consumer and no mask sits
 * inside the chain (a mask site at its end is fine: the mask is applied to
 * the fused output); @i itself when nothing fuses. */
static int
fused_chain_end (CleaveNet *net, int i)
{
  GPtrArray *nodes = net->graph->nodes;
  CleaveNode *c = nodes->pdata[i], *bn, *r;

  if (c->op != CLEAVE_OP_CONV2D || i + 1 >= net->n_nodes || net->site_of_node[i] >= 0 || net->n_consumers[i] != 1)
    return i;
  bn = nodes->pdata[i + 1];
  if (bn->op != CLEAVE_OP_BATCHNORM2D || bn->inputs[0] != i || bn->param[CLEAVE_PARAM_WEIGHT] < 0 ||
      bn->param[CLEAVE_PARAM_BIAS] < 0 || bn->param[CLEAVE_PARAM_RUNNING_MEAN] < 0 ||
      bn->param[CLEAVE_PARAM_RUNNING_VAR] < 0)
    return i;
  if (i + 2 >= net->n_nodes || net->site_of_node[i + 1] >= 0 || net->n_consumers[i + 1] != 1)
    return i + 1;
  r = nodes->pdata[i + 2];
  return r->op == CLEAVE_OP_RELU && r->inputs[0] == i + 1 ? i + 2 : i + 1;
}

static gboolean
forward_fused (CleaveNet *net, int i, int end, GError **error)
{
  CleaveNode *c = net->graph->nodes->pdata[i], *bn = net->graph->nodes->pdata[i + 1];
  CleaveConvParams p = { c->stride, c->pad, c->groups, end == i + 2 };

  return cleave_conv2d_bn_forward (net->act[c->inputs[0]], param_of (net, c, CLEAVE_PARAM_WEIGHT),
                                   param_of (net, c, CLEAVE_PARAM_BIAS), param_of (net, bn, CLEAVE_PARAM_WEIGHT),
                                   param_of (net, bn, CLEAVE_PARAM_BIAS),
                                   param_of (net, bn, CLEAVE_PARAM_RUNNING_MEAN),
                                   param_of (net, bn, CLEAVE_PARAM_RUNNING_VAR), bn->eps, net->own[end], &p, error);
}

/* Copies rows [0, rows) of @t over the rest of it (dimension 0): on the
 * device where the backend can, doubling the copied block each time;
 * otherwise through host memory. */
static gboolean
replicate_rows (CleaveNet *net, CleaveTensor *t, int rows, GError **error)
{
  CleaveBackend *b = net->backend;
  const gsize per = cleave_tensor_numel (t) / (gsize) t->shape[0], n = per * rows;
  const gsize total = per * (gsize) t->shape[0];
  g_autofree float *host = NULL;

  if (b->vtable->copy_within != NULL)
    {
      for (gsize done = n; done < total; done *= 2)
        if (!b->vtable->copy_within (b, t->buf->handle, done, 0, MIN (done, total - done), error))
          return FALSE;
      return TRUE;
    }
  host = g_try_new (float, n);
  if (host == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "replicating %zu floats", n);
      return FALSE;
    }
  if (!b->vtable->download (b, t->buf->handle, 0, host, n, error))
    return FALSE;
  for (int r = rows; r < t->shape[0]; r += rows)
    if (!b->vtable->upload (b, t->buf->handle, (gsize) r * per, host, MIN (n, (gsize) (t->shape[0] - r) * per),
                            error))
      return FALSE;
  return TRUE;
}

/* Runs nodes [i, end] (one node, or a fused chain) on the first @rows
 * images only: their inputs and outputs are swapped for views of those
 * rows, then the outputs written are copied over the other rows unless
 * @keep_rows (the last node's own[] then holds only those rows). */
static gboolean
forward_shared (CleaveNet *net, int i, int end, int rows, gboolean keep_rows, GError **error)
{
  CleaveNode *n = net->graph->nodes->pdata[i];
  CleaveTensor *saved_in[8], *saved_act[4], *saved_own[4];
  gboolean ok;
  int k, n_in = MIN (n->n_inputs, 8);

  g_return_val_if_fail (end - i < 4, FALSE);
  for (k = 0; k < n_in; k++)
    {
      saved_in[k] = net->act[n->inputs[k]];
      net->act[n->inputs[k]] = cleave_tensor_prefix (saved_in[k], rows);
    }
  for (k = i; k <= end; k++)
    {
      saved_act[k - i] = net->act[k];
      saved_own[k - i] = net->own[k];
      net->act[k] = cleave_tensor_prefix (saved_act[k - i], rows);
      net->own[k] = saved_own[k - i] == saved_act[k - i] ? net->act[k] : cleave_tensor_prefix (saved_own[k - i], rows);
    }
  ok = end > i ? forward_fused (net, i, end, error) : forward_node (net, i, FALSE, error);
  for (k = i; k <= end; k++)
    {
      if (net->own[k] != net->act[k])
        cleave_tensor_free (net->own[k]);
      cleave_tensor_free (net->act[k]);
      net->act[k] = saved_act[k - i];
      net->own[k] = saved_own[k - i];
    }
  for (k = n_in - 1; k >= 0; k--)
    {
      cleave_tensor_free (net->act[n->inputs[k]]);
      net->act[n->inputs[k]] = saved_in[k];
    }
  /* a fused chain wrote only its last node */
  if (ok && keep_rows)
    {
      net->own_rows[end] = rows;
      return TRUE;
    }
  return ok && replicate_rows (net, net->own[end], rows, error);
}

/* own[i] as the last forward wrote it: all rows, or a view of its first
 * own_rows[i] (free with cleave_tensor_free when it is not own[i]). */
static CleaveTensor *
own_written (CleaveNet *net, int i)
{
  return net->own_rows[i] > 0 ? cleave_tensor_prefix (net->own[i], net->own_rows[i]) : net->own[i];
}

/* Completes own[i] where the last forward wrote only its first rows, for
 * the paths that read it whole. */
static gboolean
own_complete (CleaveNet *net, int i, GError **error)
{
  int rows = net->own_rows[i];

  net->own_rows[i] = 0;
  return rows == 0 || replicate_rows (net, net->own[i], rows, error);
}

/* Whether every group's row of site @s's mask is the same (as when the
 * splitters start, with every kernel kept): copies of the input then stay
 * copies through the mask, and the layers after it can run once too. */
static gboolean
mask_uniform (CleaveNet *net, int s, gboolean *uniform, GError **error)
{
  const CleaveTensor *m = net->masks[s];
  const gsize c = (gsize) m->shape[1], n = c * (gsize) m->shape[0];
  g_autofree float *host = g_try_new (float, n);

  *uniform = FALSE;
  if (host == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "reading a mask of %zu floats", n);
      return FALSE;
    }
  if (!cleave_tensor_download (m, host, n, error))
    return FALSE;
  *uniform = memcmp (host, host + c, (n - c) * sizeof (float)) == 0;
  return TRUE;
}

/* @shared_rows > 0: the batch is copies of its first shared_rows images
 * (cleave_net_infer_repeated); nodes that see only unmasked data run on
 * those rows once. */
static gboolean
run_forward (CleaveNet *net, gboolean training, gboolean fuse, int shared_rows, GError **error)
{
  g_autofree gboolean *same = g_new0 (gboolean, net->n_nodes);   /* act[i] repeats its first rows */

  net->last_training = training;
  net->last_fused = FALSE;
  memset (net->in_fused, 0, sizeof (gboolean) * net->n_nodes);
  memset (net->own_rows, 0, sizeof (int) * net->n_nodes);
  fuse = fuse && !training && cleave_conv2d_bn_supported (net->backend);
  same[0] = shared_rows > 0 && shared_rows < net->batch;
  for (int i = 1; i < net->n_nodes; i++)
    {
      CleaveNode *n = net->graph->nodes->pdata[i];
      int s, end = fuse ? fused_chain_end (net, i) : i;
      gboolean shared = same[0] && n->op != CLEAVE_OP_FLATTEN && end - i < 4 && n->n_inputs <= 8;
      gboolean uniform = TRUE;   /* the mask at the end, if any, is the same in every group */

      if (net_cancelled (net, error))
        return FALSE;
      for (int k = 0; k < n->n_inputs && shared; k++)
        shared = same[n->inputs[k]];
      if (shared)
        {
          /* A conv → batchnorm → relu chain ending at a mask that differs
           * between groups: the mask forward and the one-pass backward
           * (fused_chain_backward) read the chain's output rows repeated, so
           * they are not copied. */
          int se = net->site_of_node[end];
          if (se >= 0 && net->masks[se] != NULL && !mask_uniform (net, se, &uniform, error))
            return FALSE;
          if (!forward_shared (net, i, end, shared_rows,
                               !uniform && end == i + 2 && cleave_mask_chain_backward_supported (net->backend), error))
            return FALSE;
        }
      else if (end > i)
        {
          if (!forward_fused (net, i, end, error))
            return FALSE;
        }
      else if (!forward_node (net, i, training, error))
        return FALSE;
      if (end > i)
        {
          net->last_fused = TRUE;
          for (int k = i; k <= end; k++)
            net->in_fused[k] = TRUE;
          i = end;
        }
      s = net->site_of_node[i];
      same[i] = shared && uniform;
      if (s >= 0)
        {
          if (net->masks[s] != NULL)
            {
              CleaveTensor *x = own_written (net, i);
              gboolean ok = cleave_mask_forward (x, net->masks[s], net->act[i], error);
              if (x != net->own[i])
                cleave_tensor_free (x);
              if (!ok)
                return FALSE;
            }
          else if (!cleave_tensor_copy (net->act[i], net->own[i], error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
check_input (CleaveNet *net, int batch, GError **error)
{
  if (batch < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "batch size %d must be positive", batch);
      return FALSE;
    }
  if (net->mask_groups > 0 && batch % net->mask_groups != 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "batch %d is not a multiple of the %d mask groups", batch, net->mask_groups);
      return FALSE;
    }
  return TRUE;
}

gboolean
cleave_net_forward (CleaveNet *net, const float *input, int batch, gboolean training, GError **error)
{
  CleaveGraph *g = net->graph;

  if (!check_input (net, batch, error) || !alloc_activations (net, batch, error))
    return FALSE;
  if (!cleave_tensor_upload (net->act[0], input, (gsize) batch * g->in_c * g->in_h * g->in_w, error))
    return FALSE;
  return run_forward (net, training, FALSE, 0, error);
}

gboolean
cleave_net_last_fused (CleaveNet *net)
{
  return net->last_fused;
}

gboolean
cleave_net_infer (CleaveNet *net, const float *input, int batch, GError **error)
{
  CleaveGraph *g = net->graph;

  if (!check_input (net, batch, error) || !alloc_activations (net, batch, error))
    return FALSE;
  if (!cleave_tensor_upload (net->act[0], input, (gsize) batch * g->in_c * g->in_h * g->in_w, error))
    return FALSE;
  return run_forward (net, FALSE, TRUE, 0, error);
}

gboolean
cleave_net_infer_repeated (CleaveNet *net, const float *input, int rows, int copies, GError **error)
{
  CleaveGraph *g = net->graph;
  CleaveTensor *head;
  gboolean ok;

  if (rows < 1 || copies < 1 || rows > G_MAXINT / copies)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%d copies of %d images", copies, rows);
      return FALSE;
    }
  if (!check_input (net, rows * copies, error) || !alloc_activations (net, rows * copies, error))
    return FALSE;
  head = cleave_tensor_prefix (net->act[0], rows);
  ok = cleave_tensor_upload (head, input, (gsize) rows * g->in_c * g->in_h * g->in_w, error);
  cleave_tensor_free (head);
  return ok && run_forward (net, FALSE, TRUE, rows, error);
}

gboolean
cleave_net_forward_tensor (CleaveNet *net, const CleaveTensor *input, gboolean training, GError **error)
{
  CleaveGraph *g = net->graph;

  if (input->ndim != 4 || input->shape[1] != g->in_c || input->shape[2] != g->in_h || input->shape[3] != g->in_w)
    {
      g_autofree char *s = cleave_tensor_shape_string (input);
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "input %s does not match the model's input [N, %d, %d, %d]", s, g->in_c, g->in_h, g->in_w);
      return FALSE;
    }
  if (!check_input (net, input->shape[0], error) || !alloc_activations (net, input->shape[0], error))
    return FALSE;
  if (!cleave_tensor_copy (net->act[0], input, error))
    return FALSE;
  return run_forward (net, training, FALSE, 0, error);
}

/* ---- backward ---- */

/* Where to write the gradient flowing into node @in: its grad buffer the
 * first time this pass, a scratch buffer (summed afterwards) later on. */
static CleaveTensor *
grad_target (CleaveNet *net, int in)
{
  return net->grad_written[in] ? net->gtmp[in] : net->grad[in];
}

static gboolean
grad_commit (CleaveNet *net, int in, GError **error)
{
  if (net->grad_written[in])
    return cleave_axpby (1.0f, net->grad[in], 1.0f, net->gtmp[in], net->grad[in], error);
  net->grad_written[in] = TRUE;
  return TRUE;
}

/* Eval-mode BN backward treats the running statistics as constants. */
static gboolean
ensure_eval_stats (CleaveNet *net, GError **error)
{
  CleaveGraph *g = net->graph;

  if (net->eval_stats_valid)
    return TRUE;
  for (int i = 0; i < net->n_nodes; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      int c = n->out_shape[0];
      g_autofree float *mean = NULL, *var = NULL;
      if (n->op != CLEAVE_OP_BATCHNORM2D)
        continue;
      mean = cleave_tensor_to_host (param_of (net, n, CLEAVE_PARAM_RUNNING_MEAN), error);
      var = mean ? cleave_tensor_to_host (param_of (net, n, CLEAVE_PARAM_RUNNING_VAR), error) : NULL;
      if (var == NULL)
        return FALSE;
      for (int k = 0; k < c; k++)
        var[k] = 1.0f / sqrtf (var[k] + n->eps);
      if (!cleave_tensor_upload (net->aux0[i], mean, c, error) ||
          !cleave_tensor_upload (net->aux1[i], var, c, error))
        return FALSE;
    }
  net->eval_stats_valid = TRUE;
  return TRUE;
}

static gboolean
backward_node (CleaveNet *net, int i, const gboolean *needs, CleaveTensor *dy, GError **error)
{
  CleaveNode *n = net->graph->nodes->pdata[i];
  int in0 = n->n_inputs > 0 ? n->inputs[0] : -1;
  CleaveTensor *x = in0 >= 0 ? net->act[in0] : NULL;
  CleaveTensor *dx = in0 >= 0 && needs[in0] ? grad_target (net, in0) : NULL;
  gboolean ok = TRUE;

  switch (n->op)
    {
    case CLEAVE_OP_INPUT:
      return TRUE;
    case CLEAVE_OP_CONV2D:
      {
        CleaveConvParams p = { n->stride, n->pad, n->groups };
        CleaveTensor *dw = grad_of (net, n, CLEAVE_PARAM_WEIGHT), *db = grad_of (net, n, CLEAVE_PARAM_BIAS);
        if (dx == NULL && dw == NULL && db == NULL)
          return TRUE;
        ok = cleave_conv2d_backward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), dy, dx, dw, db, &p, error);
        break;
      }
    case CLEAVE_OP_BATCHNORM2D:
      {
        CleaveTensor *dg = grad_of (net, n, CLEAVE_PARAM_WEIGHT), *dbeta = grad_of (net, n, CLEAVE_PARAM_BIAS);
        if (dx == NULL && dg == NULL && dbeta == NULL)
          return TRUE;
        if (!net->last_training && !ensure_eval_stats (net, error))
          return FALSE;
        ok = cleave_batchnorm_backward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), net->aux0[i], net->aux1[i],
                                        dy, dx, dg, dbeta, net->last_training, error);
        break;
      }
    case CLEAVE_OP_RELU:
      if (dx)
        ok = cleave_relu_backward (net->own[i], dy, dx, error);
      break;
    case CLEAVE_OP_SIGMOID:
      if (dx)
        ok = cleave_sigmoid_backward (net->own[i], dy, dx, error);
      break;
    case CLEAVE_OP_CLIP:
      if (dx)
        ok = cleave_clamp_backward (net->own[i], dy, dx, n->alpha, n->clip_min, n->clip_max, error);
      break;
    case CLEAVE_OP_HARDSIGMOID:
      if (dx)
        ok = cleave_clamp_backward (net->own[i], dy, dx, n->alpha, 0.0f, 1.0f, error);
      break;
    case CLEAVE_OP_MAXPOOL2D:
      if (dx)
        {
          CleavePoolParams p = { n->kernel, n->stride, n->pad, n->ceil_mode, FALSE };
          ok = cleave_maxpool_backward (x, dy, dx, &p, error);
        }
      break;
    case CLEAVE_OP_AVGPOOL2D:
      if (dx)
        {
          CleavePoolParams p = { n->kernel, n->stride, n->pad, n->ceil_mode, n->exclude_pad };
          ok = cleave_avgpool_backward (dy, dx, &p, error);
        }
      break;
    case CLEAVE_OP_GLOBAL_AVGPOOL:
      if (dx)
        {
          CleaveTensor *flat = as_rows (dy);
          ok = cleave_global_avgpool_backward (flat, dx, error);
          cleave_tensor_free (flat);
        }
      break;
    case CLEAVE_OP_MUL:
      return mul_backward (net, n, needs, dy, error);
    case CLEAVE_OP_SOFTMAX:
      if (dx)
        ok = cleave_softmax_backward (net->own[i], dy, dx, error);
      break;
    case CLEAVE_OP_CHANNEL_SHUFFLE:
      /* the inverse permutation is the shuffle with C/groups groups */
      if (dx)
        ok = cleave_channel_shuffle (dy, dx, dy->shape[1] / n->groups, error);
      break;
    case CLEAVE_OP_SLICE:
      if (dx)
        ok = cleave_tensor_fill (dx, 0.0f, error) && cleave_channel_copy_in (dy, dx, n->start, error);
      break;
    case CLEAVE_OP_LINEAR:
      {
        CleaveTensor *dw = grad_of (net, n, CLEAVE_PARAM_WEIGHT), *db = grad_of (net, n, CLEAVE_PARAM_BIAS);
        if (dx == NULL && dw == NULL && db == NULL)
          return TRUE;
        ok = cleave_linear_backward (x, param_of (net, n, CLEAVE_PARAM_WEIGHT), dy, dx, dw, db, error);
        break;
      }
    case CLEAVE_OP_FLATTEN:
      if (dx)
        {
          /* dx has the input's 4-d shape; the data layout is identical. */
          CleaveBackend *b = net->backend;
          CleaveTensor *flat = cleave_tensor_reshape (dx, dy->ndim, dy->shape);
          ok = b->vtable->copy (b, flat, dy, error);
          cleave_tensor_free (flat);
        }
      break;
    case CLEAVE_OP_DROPOUT:
      if (dx)
        ok = net->last_training && n->p > 0 ? cleave_mul (dy, net->aux0[i], dx, error)
                                            : cleave_tensor_copy (dx, dy, error);
      break;
    case CLEAVE_OP_ADD:
      {
        int in1 = n->inputs[1];
        if (dx && !(cleave_tensor_copy (dx, dy, error) && grad_commit (net, in0, error)))
          return FALSE;
        if (needs[in1])
          {
            CleaveTensor *dx1 = grad_target (net, in1);
            if (!cleave_tensor_copy (dx1, dy, error) || !grad_commit (net, in1, error))
              return FALSE;
          }
        return TRUE;
      }
    case CLEAVE_OP_CONCAT:
      {
        int offset = 0;
        for (int k = 0; k < n->n_inputs; k++)
          {
            int in = n->inputs[k];
            int c = net->act[in]->shape[1];
            if (needs[in])
              {
                CleaveTensor *t = grad_target (net, in);
                if (!cleave_channel_copy_out (dy, offset, t, error) || !grad_commit (net, in, error))
                  return FALSE;
              }
            offset += c;
          }
        return TRUE;
      }
    default:
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "layer '%s': unsupported op", n->name);
      return FALSE;
    }
  if (!ok)
    return FALSE;
  if (dx)
    return grad_commit (net, in0, error);
  return TRUE;
}

/* After cleave_net_infer, a mask site at the end of a fused conv →
 * batchnorm → relu chain: the mask, relu and batchnorm backward in one
 * pass (cleave_mask_chain_backward), straight into the conv output's
 * gradient. Returns the conv's node, -1 where this does not apply, -2 on
 * error. */
static int
fused_chain_backward (CleaveNet *net, int i, const gboolean *needs, GError **error)
{
  GPtrArray *nodes = net->graph->nodes;
  int s = net->site_of_node[i];
  CleaveNode *r = nodes->pdata[i], *bn;
  CleaveTensor *dm, *dx, *x;
  gboolean ok;

  if (!net->last_fused || !net->in_fused[i] || s < 0 || net->masks[s] == NULL || r->op != CLEAVE_OP_RELU
      || i < 3 || !net->in_fused[i - 1] || !net->in_fused[i - 2]
      || !cleave_mask_chain_backward_supported (net->backend))
    return -1;
  bn = nodes->pdata[i - 1];
  if (bn->op != CLEAVE_OP_BATCHNORM2D || r->inputs[0] != i - 1 || bn->inputs[0] != i - 2
      || ((CleaveNode *) nodes->pdata[i - 2])->op != CLEAVE_OP_CONV2D)
    return -1;
  if (!ensure_eval_stats (net, error))
    return -2;
  dm = net->mask_need_grad ? net->mask_grads[s] : NULL;
  /* the conv's output gradient only where something before it needs one
   * (not at the first layer of a frozen net: the image needs none) */
  dx = needs[i - 2] ? grad_target (net, i - 2) : NULL;
  if (dx == NULL && dm == NULL)
    return i - 2;
  x = own_written (net, i);
  ok = cleave_mask_chain_backward (x, net->masks[s], net->grad[i], TRUE, param_of (net, bn, CLEAVE_PARAM_WEIGHT),
                                   net->aux1[i - 1], dx, dm, error);
  if (x != net->own[i])
    cleave_tensor_free (x);
  if (!ok || (dx != NULL && !grad_commit (net, i - 2, error)))
    return -2;
  return i - 2;
}

gboolean
cleave_net_backward (CleaveNet *net, const CleaveTensor *doutput, GError **error)
{
  CleaveGraph *g = net->graph;
  int last = net->n_nodes - 1;
  g_autofree gboolean *needs = g_new0 (gboolean, net->n_nodes);

  if (net->batch == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "backward called before forward");
      return FALSE;
    }
  /* After cleave_net_infer the input and mask gradients still flow: a
   * chain's relu backward reads the chain's output (written), the eval-mode
   * batchnorm backward only scales, and the conv's input gradient needs only
   * the weights. Weight gradients would need the unwritten outputs. */
  for (int i = 1; net->last_fused && i < net->n_nodes; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      for (int s = 0; net->in_fused[i] && s < CLEAVE_N_PARAM_SLOTS; s++)
        if (n->param[s] >= 0 && net->pgrad[n->param[s]] != NULL)
          {
            g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                         "backward after an inference forward (cleave_net_infer): layer '%s' has trainable "
                         "parameters, whose gradients need the outputs that the fused layers did not keep; "
                         "run cleave_net_forward first", n->name);
            return FALSE;
          }
    }
  if (!cleave_tensor_same_shape (doutput, net->act[last]))
    {
      g_autofree char *a = cleave_tensor_shape_string (doutput);
      g_autofree char *b = cleave_tensor_shape_string (net->act[last]);
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "output gradient %s does not match the output %s", a, b);
      return FALSE;
    }
  /* needs[i]: some trainable parameter or mask at or before node i, so d/d act[i] is required. */
  for (int i = 1; i < net->n_nodes; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      for (int k = 0; k < n->n_inputs; k++)
        needs[i] |= needs[n->inputs[k]];
      for (int s = 0; s < CLEAVE_N_PARAM_SLOTS; s++)
        needs[i] |= n->param[s] >= 0 && net->pgrad[n->param[s]] != NULL;
      needs[i] |= net->site_of_node[i] >= 0 && net->mask_need_grad;
    }
  if (!alloc_grads (net, error))
    return FALSE;
  memset (net->grad_written, 0, sizeof (gboolean) * net->n_nodes);
  if (!cleave_tensor_copy (net->grad[last], doutput, error))
    return FALSE;
  net->grad_written[last] = TRUE;

  for (int i = last; i >= 1; i--)
    {
      int s = net->site_of_node[i], conv;
      CleaveTensor *dy = net->grad[i];
      if (!net->grad_written[i])
        continue;  /* nothing flows back through this node */
      if (net_cancelled (net, error))
        return FALSE;
      if ((conv = fused_chain_backward (net, i, needs, error)) >= 0)
        {
          i = conv + 1;   /* the relu and batchnorm are done; the loop goes on at the conv */
          continue;
        }
      if (conv == -2)
        return FALSE;
      if (!own_complete (net, i, error))
        return FALSE;
      if (s >= 0)
        {
          CleaveTensor *dm = net->mask_need_grad ? net->mask_grads[s] : NULL;
          if (net->masks[s] != NULL)
            {
              if (!cleave_mask_backward (net->own[i], net->masks[s], dy, net->own_grad[i], dm, error))
                return FALSE;
            }
          else if (!cleave_tensor_copy (net->own_grad[i], dy, error))
            return FALSE;
          dy = net->own_grad[i];
        }
      if (!backward_node (net, i, needs, dy, error))
        return FALSE;
    }
  return TRUE;
}
