/* cleave-graph.c: CNN structure, shape inference, parameters and mask sites. */
#include "cleave-graph-private.h"
#include "cleave-util-private.h"
#include "cleave-error.h"
#include "cleave-ops.h"

#include <math.h>
#include <string.h>

static const char *const op_names[CLEAVE_N_OPS] = {
  "input", "conv2d", "batchnorm2d", "relu", "maxpool2d", "avgpool2d", "global_avgpool",
  "linear", "dropout", "flatten", "add", "concat", "sigmoid", "clip", "hardsigmoid", "mul",
  "channel_shuffle", "slice", "softmax",
};

const char *
cleave_op_kind_to_string (CleaveOpKind op)
{
  g_return_val_if_fail (op >= 0 && op < CLEAVE_N_OPS, "?");
  return op_names[op];
}

CleaveOpKind
cleave_op_kind_from_string (const char *s)
{
  for (int i = 0; i < CLEAVE_N_OPS; i++)
    if (g_strcmp0 (s, op_names[i]) == 0)
      return (CleaveOpKind) i;
  return (CleaveOpKind) -1;
}

void
cleave_param_free (CleaveParam *p)
{
  if (p == NULL)
    return;
  g_free (p->name);
  g_free (p->data);
  g_free (p);
}

static void
node_free (CleaveNode *n)
{
  g_free (n->name);
  g_free (n);
}

static CleaveNode *
node_new (CleaveOpKind op, const char *name)
{
  CleaveNode *n = g_new0 (CleaveNode, 1);
  n->op = op;
  n->name = g_strdup (name);
  n->groups = 1;
  n->stride = 1;
  for (int i = 0; i < CLEAVE_N_PARAM_SLOTS; i++)
    n->param[i] = -1;
  return n;
}

CleaveGraph *
cleave_graph_new (int in_channels, int in_height, int in_width)
{
  CleaveGraph *g = g_new0 (CleaveGraph, 1);
  CleaveNode *input;

  g->in_c = in_channels;
  g->in_h = in_height;
  g->in_w = in_width;
  g->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) node_free);
  g->params = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_param_free);
  g->sites = g_array_new (FALSE, TRUE, sizeof (CleaveMaskSite));
  input = node_new (CLEAVE_OP_INPUT, "input");
  input->out_ndim = 3;
  input->out_shape[0] = in_channels;
  input->out_shape[1] = in_height;
  input->out_shape[2] = in_width;
  g_ptr_array_add (g->nodes, input);
  return g;
}

void
cleave_graph_free (CleaveGraph *g)
{
  if (g == NULL)
    return;
  g_ptr_array_unref (g->nodes);
  g_ptr_array_unref (g->params);
  g_array_unref (g->sites);
  g_free (g);
}

CleaveGraph *
cleave_graph_copy (const CleaveGraph *src)
{
  CleaveGraph *g = g_new0 (CleaveGraph, 1);

  g->in_c = src->in_c;
  g->in_h = src->in_h;
  g->in_w = src->in_w;
  g->finalized = src->finalized;
  g->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) node_free);
  g->params = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_param_free);
  for (guint i = 0; i < src->nodes->len; i++)
    {
      CleaveNode *n = g_memdup2 (src->nodes->pdata[i], sizeof (CleaveNode));
      n->name = g_strdup (n->name);
      g_ptr_array_add (g->nodes, n);
    }
  for (guint i = 0; i < src->params->len; i++)
    {
      CleaveParam *p = g_memdup2 (src->params->pdata[i], sizeof (CleaveParam));
      p->name = g_strdup (p->name);
      p->data = g_memdup2 (p->data, cleave_param_numel (p) * sizeof (float));
      g_ptr_array_add (g->params, p);
    }
  g->sites = g_array_copy (src->sites);
  return g;
}

int
cleave_graph_add_node (CleaveGraph *g, CleaveNode *n)
{
  g->finalized = FALSE;
  g_ptr_array_add (g->nodes, n);
  return (int) g->nodes->len - 1;
}

static int
add_unary (CleaveGraph *g, CleaveOpKind op, const char *name, int input)
{
  CleaveNode *n = node_new (op, name);
  g_return_val_if_fail (input >= 0 && input < (int) g->nodes->len, -1);
  n->inputs[0] = input;
  n->n_inputs = 1;
  return cleave_graph_add_node (g, n);
}

int
cleave_graph_add_conv2d (CleaveGraph *g, const char *name, int input, int out_channels,
                         int kernel, int stride, int pad, int groups, gboolean bias)
{
  int i = add_unary (g, CLEAVE_OP_CONV2D, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->out_channels = out_channels;
  n->kernel = kernel;
  n->stride = stride;
  n->pad = pad;
  n->groups = groups > 0 ? groups : 1;
  n->has_bias = bias;
  return i;
}

int
cleave_graph_add_batchnorm2d (CleaveGraph *g, const char *name, int input)
{
  int i = add_unary (g, CLEAVE_OP_BATCHNORM2D, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->eps = 1e-5f;
  n->momentum = 0.1f;
  return i;
}

int
cleave_graph_add_relu (CleaveGraph *g, const char *name, int input)
{
  return add_unary (g, CLEAVE_OP_RELU, name, input);
}

static int
add_pool (CleaveGraph *g, CleaveOpKind op, const char *name, int input, int kernel, int stride, int pad)
{
  int i = add_unary (g, op, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->kernel = kernel;
  n->stride = stride > 0 ? stride : kernel;
  n->pad = pad;
  return i;
}

int
cleave_graph_add_maxpool2d (CleaveGraph *g, const char *name, int input, int kernel, int stride, int pad)
{
  return add_pool (g, CLEAVE_OP_MAXPOOL2D, name, input, kernel, stride, pad);
}

int
cleave_graph_add_avgpool2d (CleaveGraph *g, const char *name, int input, int kernel, int stride, int pad)
{
  return add_pool (g, CLEAVE_OP_AVGPOOL2D, name, input, kernel, stride, pad);
}

int
cleave_graph_add_global_avgpool (CleaveGraph *g, const char *name, int input)
{
  return add_unary (g, CLEAVE_OP_GLOBAL_AVGPOOL, name, input);
}

int
cleave_graph_add_linear (CleaveGraph *g, const char *name, int input, int out_features, gboolean bias)
{
  int i = add_unary (g, CLEAVE_OP_LINEAR, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->out_features = out_features;
  n->has_bias = bias;
  return i;
}

int
cleave_graph_add_dropout (CleaveGraph *g, const char *name, int input, float p)
{
  int i = add_unary (g, CLEAVE_OP_DROPOUT, name, input);
  ((CleaveNode *) g->nodes->pdata[i])->p = p;
  return i;
}

int
cleave_graph_add_flatten (CleaveGraph *g, const char *name, int input)
{
  return add_unary (g, CLEAVE_OP_FLATTEN, name, input);
}

int
cleave_graph_add_sigmoid (CleaveGraph *g, const char *name, int input)
{
  return add_unary (g, CLEAVE_OP_SIGMOID, name, input);
}

int
cleave_graph_add_clip (CleaveGraph *g, const char *name, int input, float min, float max)
{
  int i = add_unary (g, CLEAVE_OP_CLIP, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->clip_min = min;
  n->clip_max = max;
  n->alpha = 1.0f;
  n->beta = 0.0f;
  return i;
}

int
cleave_graph_add_scale (CleaveGraph *g, const char *name, int input, float alpha, float beta)
{
  int i = cleave_graph_add_clip (g, name, input, -G_MAXFLOAT, G_MAXFLOAT);
  CleaveNode *n = g->nodes->pdata[i];
  n->alpha = alpha;
  n->beta = beta;
  return i;
}

int
cleave_graph_add_hardsigmoid (CleaveGraph *g, const char *name, int input, float alpha, float beta)
{
  int i = add_unary (g, CLEAVE_OP_HARDSIGMOID, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->alpha = alpha;
  n->beta = beta;
  return i;
}

int
cleave_graph_add_softmax (CleaveGraph *g, const char *name, int input)
{
  return add_unary (g, CLEAVE_OP_SOFTMAX, name, input);
}

int
cleave_graph_add_channel_shuffle (CleaveGraph *g, const char *name, int input, int groups)
{
  int i = add_unary (g, CLEAVE_OP_CHANNEL_SHUFFLE, name, input);
  ((CleaveNode *) g->nodes->pdata[i])->groups = groups;
  return i;
}

int
cleave_graph_add_slice (CleaveGraph *g, const char *name, int input, int start, int count)
{
  int i = add_unary (g, CLEAVE_OP_SLICE, name, input);
  CleaveNode *n = g->nodes->pdata[i];
  n->start = start;
  n->out_channels = count;
  return i;
}

static int
add_binary (CleaveGraph *g, CleaveOpKind op, const char *name, int a, int b)
{
  int i = add_unary (g, op, name, a);
  CleaveNode *n = g->nodes->pdata[i];
  g_return_val_if_fail (b >= 0 && b < i, -1);
  n->inputs[1] = b;
  n->n_inputs = 2;
  return i;
}

int
cleave_graph_add_mul (CleaveGraph *g, const char *name, int a, int b)
{
  return add_binary (g, CLEAVE_OP_MUL, name, a, b);
}

int
cleave_graph_add_add (CleaveGraph *g, const char *name, int a, int b)
{
  return add_binary (g, CLEAVE_OP_ADD, name, a, b);
}

int
cleave_graph_add_concat (CleaveGraph *g, const char *name, const int *inputs, int n_inputs)
{
  CleaveNode *n = node_new (CLEAVE_OP_CONCAT, name);
  g_return_val_if_fail (n_inputs >= 1 && n_inputs <= CLEAVE_MAX_INPUTS, -1);
  for (int k = 0; k < n_inputs; k++)
    {
      g_return_val_if_fail (inputs[k] >= 0 && inputs[k] < (int) g->nodes->len, -1);
      n->inputs[k] = inputs[k];
    }
  n->n_inputs = n_inputs;
  return cleave_graph_add_node (g, n);
}

/* ---- accessors ---- */

int
cleave_graph_n_nodes (const CleaveGraph *g)
{
  return (int) g->nodes->len;
}

CleaveNode *
cleave_graph_node (const CleaveGraph *g, int i)
{
  g_return_val_if_fail (i >= 0 && i < (int) g->nodes->len, NULL);
  return g->nodes->pdata[i];
}

int
cleave_graph_find_node (const CleaveGraph *g, const char *name)
{
  for (guint i = 0; i < g->nodes->len; i++)
    if (g_strcmp0 (((CleaveNode *) g->nodes->pdata[i])->name, name) == 0)
      return (int) i;
  return -1;
}

int
cleave_graph_output (const CleaveGraph *g)
{
  return (int) g->nodes->len - 1;
}

void
cleave_graph_input_shape (const CleaveGraph *g, int *c, int *h, int *w)
{
  if (c) *c = g->in_c;
  if (h) *h = g->in_h;
  if (w) *w = g->in_w;
}

int
cleave_graph_n_outputs (const CleaveGraph *g)
{
  CleaveNode *n = g->nodes->pdata[g->nodes->len - 1];
  if (n->out_ndim == 1)
    return n->out_shape[0];
  return n->out_shape[0] * n->out_shape[1] * n->out_shape[2];
}

int
cleave_graph_n_params (const CleaveGraph *g)
{
  return (int) g->params->len;
}

CleaveParam *
cleave_graph_param (const CleaveGraph *g, int i)
{
  g_return_val_if_fail (i >= 0 && i < (int) g->params->len, NULL);
  return g->params->pdata[i];
}

int
cleave_graph_find_param (const CleaveGraph *g, const char *name)
{
  for (guint i = 0; i < g->params->len; i++)
    if (g_strcmp0 (((CleaveParam *) g->params->pdata[i])->name, name) == 0)
      return (int) i;
  return -1;
}

gsize
cleave_param_numel (const CleaveParam *p)
{
  gsize n = 1;
  for (int i = 0; i < p->ndim; i++)
    n *= (gsize) p->shape[i];
  return n;
}

int
cleave_graph_n_mask_sites (const CleaveGraph *g)
{
  return (int) g->sites->len;
}

const CleaveMaskSite *
cleave_graph_mask_site (const CleaveGraph *g, int i)
{
  g_return_val_if_fail (i >= 0 && i < (int) g->sites->len, NULL);
  return &g_array_index (g->sites, CleaveMaskSite, i);
}

int
cleave_graph_total_kernels (const CleaveGraph *g)
{
  int total = 0;
  for (guint i = 0; i < g->sites->len; i++)
    total += g_array_index (g->sites, CleaveMaskSite, i).channels;
  return total;
}

/* ---- finalize: shapes, parameters, mask sites ---- */

static gboolean
fail_node (GError **error, const CleaveNode *n, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
fail_node (GError **error, const CleaveNode *n, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "layer '%s' (%s): %s",
               n->name, cleave_op_kind_to_string (n->op), msg);
  return FALSE;
}

/* Elements of a shape, or -1 past CLEAVE_GRAPH_MAX_NUMEL (or when a dimension is not positive). */
static gint64
shape_numel (int ndim, const int *shape)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] < 1)
        return -1;
      n *= shape[i];
      if (n > CLEAVE_GRAPH_MAX_NUMEL)
        return -1;
    }
  return n;
}

static char *
shape_string (int ndim, const int *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, i ? ", %d" : "%d", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* Creates the parameter if missing; if present (e.g. loaded), checks its shape.
 * Sizes are checked against the limits before anything is allocated. */
static gboolean
ensure_param (CleaveGraph *g, CleaveNode *n, CleaveParamSlot slot, const char *suffix,
              int ndim, const int *shape, gboolean is_buffer, GError **error)
{
  g_autofree char *name = g_strconcat (n->name, ".", suffix, NULL);
  int idx = n->param[slot] >= 0 ? n->param[slot] : cleave_graph_find_param (g, name);
  gint64 numel = shape_numel (ndim, shape);
  CleaveParam *p;

  if (idx >= 0)
    {
      p = g->params->pdata[idx];
      gboolean ok = p->ndim == ndim;
      for (int i = 0; ok && i < ndim; i++)
        ok = p->shape[i] == shape[i];
      if (!ok)
        return fail_node (error, n, "parameter '%s' has the wrong shape", p->name);
      n->param[slot] = idx;
      return TRUE;
    }
  if (numel < 0 || numel > g->numel_left)
    {
      g_autofree char *s = shape_string (ndim, shape);
      return fail_node (error, n, "parameter '%s' %s is too large (limits: %" G_GINT64_FORMAT
                        " elements, %" G_GINT64_FORMAT " for all parameters)",
                        name, s, CLEAVE_GRAPH_MAX_NUMEL, CLEAVE_GRAPH_MAX_TOTAL_NUMEL);
    }
  g->numel_left -= numel;
  p = g_new0 (CleaveParam, 1);
  p->ndim = ndim;
  memcpy (p->shape, shape, sizeof (int) * ndim);
  if (!g->shapes_only && (p->data = g_try_new0 (float, numel)) == NULL)
    {
      g_autofree char *size = g_format_size ((guint64) numel * sizeof (float));
      g_free (p);
      return fail_node (error, n, "cannot allocate %s for parameter '%s'", size, name);
    }
  p->name = g_steal_pointer (&name);
  p->is_buffer = is_buffer;
  p->trainable = !is_buffer;
  if (slot == CLEAVE_PARAM_RUNNING_VAR && p->data)
    for (gint64 i = 0; i < numel; i++)
      p->data[i] = 1.0f;
  g_ptr_array_add (g->params, p);
  n->param[slot] = (int) g->params->len - 1;
  return TRUE;
}

/* Shapes of the elementwise and channel ops: activations, dropout, add,
 * concat, mul, softmax, channel_shuffle and slice. */
static gboolean
infer_channel_op (CleaveGraph *g, CleaveNode *n, const CleaveNode *in, GError **error)
{
  int c = in->out_shape[0];

  switch (n->op)
    {
    case CLEAVE_OP_RELU:
    case CLEAVE_OP_SIGMOID:
    case CLEAVE_OP_DROPOUT:
    case CLEAVE_OP_CLIP:
    case CLEAVE_OP_HARDSIGMOID:
      if (n->op == CLEAVE_OP_DROPOUT && (n->p < 0 || n->p >= 1))
        return fail_node (error, n, "dropout probability %g is outside [0, 1)", n->p);
      if (n->op == CLEAVE_OP_CLIP && !(n->clip_min <= n->clip_max))
        return fail_node (error, n, "min %g is above max %g", n->clip_min, n->clip_max);
      if ((n->op == CLEAVE_OP_HARDSIGMOID || n->op == CLEAVE_OP_CLIP) && !(isfinite (n->alpha) && isfinite (n->beta)))
        return fail_node (error, n, "alpha %g and beta %g must be finite", n->alpha, n->beta);
      n->out_ndim = in->out_ndim;
      memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
      return TRUE;

    case CLEAVE_OP_ADD:
      {
        CleaveNode *b = g->nodes->pdata[n->inputs[1]];
        if (n->n_inputs != 2)
          return fail_node (error, n, "needs exactly 2 inputs");
        if (in->out_ndim != b->out_ndim || memcmp (in->out_shape, b->out_shape, sizeof (int) * in->out_ndim) != 0)
          return fail_node (error, n, "inputs '%s' and '%s' have different shapes", in->name, b->name);
        n->out_ndim = in->out_ndim;
        memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
        return TRUE;
      }

    case CLEAVE_OP_CONCAT:
      {
        gint64 total = 0;
        for (int k = 0; k < n->n_inputs; k++)
          {
            CleaveNode *x = g->nodes->pdata[n->inputs[k]];
            if (x->out_ndim != in->out_ndim ||
                (x->out_ndim == 3 && (x->out_shape[1] != in->out_shape[1] || x->out_shape[2] != in->out_shape[2])))
              return fail_node (error, n, "input '%s' does not match the spatial size of '%s'", x->name, in->name);
            total += x->out_shape[0];
          }
        if (total * (in->out_ndim == 3 ? (gint64) in->out_shape[1] * in->out_shape[2] : 1) > CLEAVE_GRAPH_MAX_NUMEL)
          return fail_node (error, n, "%" G_GINT64_FORMAT " concatenated channels are too large", total);
        n->out_ndim = in->out_ndim;
        memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
        n->out_shape[0] = (int) total;
        return TRUE;
      }

    case CLEAVE_OP_MUL:
      {
        CleaveNode *b = g->nodes->pdata[n->inputs[1]];
        gboolean same = in->out_ndim == b->out_ndim
                        && memcmp (in->out_shape, b->out_shape, sizeof (int) * in->out_ndim) == 0;
        gboolean per_channel = in->out_ndim == 3 && b->out_ndim == 3 && b->out_shape[0] == c
                               && b->out_shape[1] == 1 && b->out_shape[2] == 1;
        if (n->n_inputs != 2)
          return fail_node (error, n, "needs exactly 2 inputs");
        if (!same && !per_channel)
          return fail_node (error, n, "input '%s' is neither the shape of '%s' nor one value per channel (C,1,1)",
                            b->name, in->name);
        n->out_ndim = in->out_ndim;
        memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
        return TRUE;
      }

    case CLEAVE_OP_SOFTMAX:
      if (in->out_ndim != 1)
        return fail_node (error, n, "needs a 2-d (N,F) input");
      n->out_ndim = 1;
      n->out_shape[0] = in->out_shape[0];
      return TRUE;

    case CLEAVE_OP_CHANNEL_SHUFFLE:
      if (in->out_ndim != 3)
        return fail_node (error, n, "needs a 4-d input");
      if (n->groups < 1 || c % n->groups)
        return fail_node (error, n, "groups %d does not divide its %d channels", n->groups, c);
      n->out_ndim = 3;
      memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
      return TRUE;

    case CLEAVE_OP_SLICE:
      {
        int have = in->out_shape[0];
        if (n->start < 0 || n->out_channels < 1 || n->start > have - n->out_channels)
          return fail_node (error, n, "channels [%d, %d) are outside its input's %d", n->start,
                            n->start + n->out_channels, have);
        n->out_ndim = in->out_ndim;
        memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
        n->out_shape[0] = n->out_channels;
        return TRUE;
      }

    default:
      return fail_node (error, n, "unknown operation");
    }
}

static gboolean
infer_node (CleaveGraph *g, int idx, CleaveNode *n, GError **error)
{
  CleaveNode *in = n->n_inputs > 0 ? g->nodes->pdata[n->inputs[0]] : NULL;
  int c = 0, h = 0, w = 0;

  for (int k = 0; k < n->n_inputs; k++)
    if (n->inputs[k] < 0 || n->inputs[k] >= idx)
      return fail_node (error, n, "input %d refers to a later or missing layer", k);
  if (n->op != CLEAVE_OP_INPUT && n->n_inputs < 1)
    return fail_node (error, n, "has no input");
  if (in && in->out_ndim == 3)
    {
      c = in->out_shape[0];
      h = in->out_shape[1];
      w = in->out_shape[2];
    }

  switch (n->op)
    {
    case CLEAVE_OP_INPUT:
      return fail_node (error, n, "only the first layer may be the input");

    case CLEAVE_OP_CONV2D:
      {
        int oh, ow;
        if (in->out_ndim != 3)
          return fail_node (error, n, "needs a 4-d (N,C,H,W) input");
        if (n->kernel < 1 || n->stride < 1 || n->pad < 0 || n->out_channels < 1 || n->groups < 1)
          return fail_node (error, n, "kernel, stride, out_channels and groups must be positive, pad non-negative");
        if (c % n->groups || n->out_channels % n->groups)
          return fail_node (error, n, "groups %d does not divide channels %d→%d", n->groups, c, n->out_channels);
        if (n->in_channels && n->in_channels != c)
          return fail_node (error, n, "declares %d input channels, its input has %d", n->in_channels, c);
        oh = (h + 2 * n->pad - n->kernel) / n->stride + 1;
        ow = (w + 2 * n->pad - n->kernel) / n->stride + 1;
        if (h + 2 * n->pad < n->kernel || w + 2 * n->pad < n->kernel)
          return fail_node (error, n, "kernel %d is larger than its padded %d×%d input", n->kernel, h, w);
        n->in_channels = c;
        n->out_ndim = 3;
        n->out_shape[0] = n->out_channels;
        n->out_shape[1] = oh;
        n->out_shape[2] = ow;
        {
          int ws[4] = { n->out_channels, c / n->groups, n->kernel, n->kernel };
          int bs[1] = { n->out_channels };
          if (!ensure_param (g, n, CLEAVE_PARAM_WEIGHT, "weight", 4, ws, FALSE, error))
            return FALSE;
          if (n->has_bias && !ensure_param (g, n, CLEAVE_PARAM_BIAS, "bias", 1, bs, FALSE, error))
            return FALSE;
        }
        return TRUE;
      }

    case CLEAVE_OP_BATCHNORM2D:
      {
        int s[1] = { c };
        if (in->out_ndim != 3)
          return fail_node (error, n, "needs a 4-d input");
        if (n->eps <= 0)
          n->eps = 1e-5f;
        n->out_ndim = 3;
        memcpy (n->out_shape, in->out_shape, sizeof n->out_shape);
        n->in_channels = n->out_channels = c;
        return ensure_param (g, n, CLEAVE_PARAM_WEIGHT, "weight", 1, s, FALSE, error) &&
               ensure_param (g, n, CLEAVE_PARAM_BIAS, "bias", 1, s, FALSE, error) &&
               ensure_param (g, n, CLEAVE_PARAM_RUNNING_MEAN, "running_mean", 1, s, TRUE, error) &&
               ensure_param (g, n, CLEAVE_PARAM_RUNNING_VAR, "running_var", 1, s, TRUE, error);
      }

    case CLEAVE_OP_RELU:
    case CLEAVE_OP_SIGMOID:
    case CLEAVE_OP_DROPOUT:
    case CLEAVE_OP_CLIP:
    case CLEAVE_OP_HARDSIGMOID:
      return infer_channel_op (g, n, in, error);

    case CLEAVE_OP_MAXPOOL2D:
    case CLEAVE_OP_AVGPOOL2D:
      if (in->out_ndim != 3)
        return fail_node (error, n, "needs a 4-d input");
      if (n->kernel < 1 || n->stride < 1 || n->pad < 0 || n->pad * 2 > n->kernel)
        return fail_node (error, n, "kernel %d, stride %d, pad %d are invalid", n->kernel, n->stride, n->pad);
      if (h + 2 * n->pad < n->kernel || w + 2 * n->pad < n->kernel)
        return fail_node (error, n, "window %d is larger than its %d×%d input", n->kernel, h, w);
      n->out_ndim = 3;
      n->out_shape[0] = c;
      n->out_shape[1] = cleave_pool_out_size (h, n->kernel, n->stride, n->pad, n->ceil_mode);
      n->out_shape[2] = cleave_pool_out_size (w, n->kernel, n->stride, n->pad, n->ceil_mode);
      return TRUE;

    case CLEAVE_OP_GLOBAL_AVGPOOL:
      if (in->out_ndim != 3)
        return fail_node (error, n, "needs a 4-d input");
      n->out_ndim = n->keepdims ? 3 : 1;
      n->out_shape[0] = c;
      n->out_shape[1] = n->out_shape[2] = n->keepdims ? 1 : 0;
      return TRUE;

    case CLEAVE_OP_MUL:
    case CLEAVE_OP_SOFTMAX:
    case CLEAVE_OP_CHANNEL_SHUFFLE:
    case CLEAVE_OP_SLICE:
      return infer_channel_op (g, n, in, error);

    case CLEAVE_OP_FLATTEN:
      if (in->out_ndim == 3 && (gint64) c * h * w > CLEAVE_GRAPH_MAX_NUMEL)
        return fail_node (error, n, "%d×%d×%d features are too large", c, h, w);
      n->out_ndim = 1;
      n->out_shape[0] = in->out_ndim == 3 ? c * h * w : in->out_shape[0];
      return TRUE;

    case CLEAVE_OP_LINEAR:
      {
        int f = in->out_ndim == 1 ? in->out_shape[0] : -1;
        if (f < 0)
          return fail_node (error, n, "needs a 2-d (N,F) input: add a flatten layer before it");
        if (n->out_features < 1)
          return fail_node (error, n, "out_features must be positive");
        if (n->in_features && n->in_features != f)
          return fail_node (error, n, "declares %d input features, its input has %d", n->in_features, f);
        n->in_features = f;
        n->out_ndim = 1;
        n->out_shape[0] = n->out_features;
        {
          int ws[2] = { n->out_features, f };
          int bs[1] = { n->out_features };
          if (!ensure_param (g, n, CLEAVE_PARAM_WEIGHT, "weight", 2, ws, FALSE, error))
            return FALSE;
          if (n->has_bias && !ensure_param (g, n, CLEAVE_PARAM_BIAS, "bias", 1, bs, FALSE, error))
            return FALSE;
        }
        return TRUE;
      }

    case CLEAVE_OP_ADD:
    case CLEAVE_OP_CONCAT:
      return infer_channel_op (g, n, in, error);

    default:
      return fail_node (error, n, "unknown operation");
    }
}

static int
n_consumers (const CleaveGraph *g, int idx, int *only)
{
  int count = 0;
  for (guint i = idx + 1; i < g->nodes->len; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      for (int k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] == idx)
          {
            count++;
            *only = (int) i;
          }
    }
  return count;
}

/* The conv whose kernels are the channels of node @idx's output, following
 * channel-preserving layers backwards; -1 when none (input, concat, linear). */
static int
channel_source_site (const CleaveGraph *g, const int *site_of_node, int idx)
{
  while (idx > 0)
    {
      CleaveNode *n = g->nodes->pdata[idx];
      if (site_of_node[idx] >= 0)
        return site_of_node[idx];
      switch (n->op)
        {
        case CLEAVE_OP_BATCHNORM2D:
        case CLEAVE_OP_RELU:
        case CLEAVE_OP_MAXPOOL2D:
        case CLEAVE_OP_AVGPOOL2D:
        case CLEAVE_OP_DROPOUT:
        case CLEAVE_OP_SIGMOID:
        case CLEAVE_OP_CLIP:
        case CLEAVE_OP_HARDSIGMOID:
        case CLEAVE_OP_MUL:
        case CLEAVE_OP_ADD:
        case CLEAVE_OP_CONV2D:
          idx = n->inputs[0];
          if (n->op == CLEAVE_OP_CONV2D)
            return -1;
          break;
        default:
          return -1;
        }
    }
  return -1;
}

static int
site_root (GArray *sites, int s)
{
  while (g_array_index (sites, CleaveMaskSite, s).tie != s)
    s = g_array_index (sites, CleaveMaskSite, s).tie;
  return s;
}

static void
compute_mask_sites (CleaveGraph *g)
{
  g_autofree int *site_of_node = g_new (int, g->nodes->len);

  g_array_set_size (g->sites, 0);
  for (guint i = 0; i < g->nodes->len; i++)
    site_of_node[i] = -1;
  for (guint i = 0; i < g->nodes->len; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      CleaveMaskSite s;
      int cur = (int) i, next = -1;

      if (n->op != CLEAVE_OP_CONV2D)
        continue;
      /* Walk conv → [bn] → [relu] while each has a single consumer. */
      while (n_consumers (g, cur, &next) == 1)
        {
          CleaveNode *m = g->nodes->pdata[next];
          if (m->op == CLEAVE_OP_BATCHNORM2D && ((CleaveNode *) g->nodes->pdata[cur])->op == CLEAVE_OP_CONV2D)
            cur = next;
          else if (m->op == CLEAVE_OP_RELU || (m->op == CLEAVE_OP_CLIP && m->clip_min == 0.f && m->alpha == 1.f && m->beta == 0.f))
            {
              cur = next;
              break;
            }
          else
            break;
        }
      s.conv = (int) i;
      s.node = cur;
      s.channels = n->out_channels;
      s.tie = (int) g->sites->len;
      site_of_node[cur] = s.tie;
      g_array_append_val (g->sites, s);
    }
  /* Tied masks: the operands of a residual add carry the same channels; a
   * squeeze-excitation's scale (a mul) belongs to the channel it scales;
   * a depthwise kernel lives or dies with its input channel. */
  for (guint i = 0; i < g->nodes->len; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      int a = -1, b = -1;
      if (n->op == CLEAVE_OP_ADD || n->op == CLEAVE_OP_MUL)
        {
          a = channel_source_site (g, site_of_node, n->inputs[0]);
          b = channel_source_site (g, site_of_node, n->inputs[1]);
        }
      else if (n->op == CLEAVE_OP_CONV2D && n->groups > 1 && n->groups == n->in_channels
               && n->groups == n->out_channels)
        {
          a = channel_source_site (g, site_of_node, n->inputs[0]);
          for (guint s = 0; s < g->sites->len; s++)
            if (g_array_index (g->sites, CleaveMaskSite, s).conv == (int) i)
              b = (int) s;
        }
      if (a >= 0 && b >= 0 && g_array_index (g->sites, CleaveMaskSite, a).channels
                                 == g_array_index (g->sites, CleaveMaskSite, b).channels)
        {
          int ra = site_root (g->sites, a), rb = site_root (g->sites, b);
          int lo = MIN (ra, rb), hi = MAX (ra, rb);
          g_array_index (g->sites, CleaveMaskSite, hi).tie = lo;
        }
    }
  for (guint s = 0; s < g->sites->len; s++)
    g_array_index (g->sites, CleaveMaskSite, s).tie = site_root (g->sites, (int) s);
}

gboolean
cleave_graph_finalize (CleaveGraph *g, GError **error)
{
  GHashTable *names = g_hash_table_new (g_str_hash, g_str_equal);
  gboolean ok = TRUE;

  if (g->in_c < 1 || g->in_h < 1 || g->in_w < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "input shape %d×%d×%d is invalid", g->in_c, g->in_h, g->in_w);
      g_hash_table_unref (names);
      return FALSE;
    }
  if (g->nodes->len < 2)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the graph has no layers");
      g_hash_table_unref (names);
      return FALSE;
    }
  g->numel_left = CLEAVE_GRAPH_MAX_TOTAL_NUMEL;
  for (guint i = 0; i < g->params->len; i++)
    g->numel_left -= (gint64) cleave_param_numel (g->params->pdata[i]);
  for (guint i = 0; i < g->nodes->len && ok; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      if (n->name == NULL || n->name[0] == 0)
        {
          g_free (n->name);
          n->name = g_strdup_printf ("%s_%u", cleave_op_kind_to_string (n->op), i);
        }
      if (g_hash_table_contains (names, n->name))
        {
          g_autofree char *old = n->name;
          n->name = g_strdup_printf ("%s_%u", old, i);
        }
      g_hash_table_add (names, n->name);
      if (i > 0)
        ok = infer_node (g, (int) i, n, error);
      if (ok && shape_numel (n->out_ndim, n->out_shape) < 0)
        {
          g_autofree char *shape = shape_string (n->out_ndim, n->out_shape);
          ok = fail_node (error, n, "output %s per image is too large (limit %" G_GINT64_FORMAT " elements)",
                          shape, CLEAVE_GRAPH_MAX_NUMEL);
        }
    }
  g_hash_table_unref (names);
  if (!ok)
    return FALSE;
  compute_mask_sites (g);
  g->finalized = TRUE;
  return TRUE;
}

gboolean
cleave_graph_check_values (const CleaveGraph *g, const char *file, GError **error)
{
  for (guint i = 0; i < g->params->len; i++)
    {
      const CleaveParam *p = g->params->pdata[i];
      gboolean var = g_str_has_suffix (p->name, ".running_var");
      gsize n = cleave_param_numel (p);
      for (gsize k = 0; k < n; k++)
        {
          if (!isfinite (p->data[k]))
            return cleave_invalid_file (error, file, "tensor '%s': value %" G_GSIZE_FORMAT " is %g, not finite",
                                        p->name, k, p->data[k]);
          if (var && p->data[k] < 0)
            return cleave_invalid_file (error, file, "tensor '%s': value %" G_GSIZE_FORMAT " is %g, a negative variance",
                                        p->name, k, p->data[k]);
        }
    }
  return TRUE;
}

/* ---- initialisation and counting ---- */

static float
uniform (GRand *r, float bound)
{
  return (float) g_rand_double_range (r, -bound, bound);
}

void
cleave_graph_init_params (CleaveGraph *g, guint64 seed)
{
  GRand *r = g_rand_new_with_seed ((guint32) (seed ^ (seed >> 32)));
  for (guint i = 0; i < g->nodes->len; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      CleaveParam *w = n->param[CLEAVE_PARAM_WEIGHT] >= 0 ? g->params->pdata[n->param[CLEAVE_PARAM_WEIGHT]] : NULL;
      CleaveParam *b = n->param[CLEAVE_PARAM_BIAS] >= 0 ? g->params->pdata[n->param[CLEAVE_PARAM_BIAS]] : NULL;
      if (n->op == CLEAVE_OP_CONV2D || n->op == CLEAVE_OP_LINEAR)
        {
          int fan_in = n->op == CLEAVE_OP_CONV2D ? (n->in_channels / n->groups) * n->kernel * n->kernel : n->in_features;
          /* kaiming_uniform(a=√5) reduces to a bound of 1/√fan_in. */
          float bound = 1.0f / sqrtf ((float) fan_in);
          for (gsize k = 0; k < cleave_param_numel (w); k++)
            w->data[k] = uniform (r, bound);
          if (b)
            for (gsize k = 0; k < cleave_param_numel (b); k++)
              b->data[k] = uniform (r, bound);
        }
      else if (n->op == CLEAVE_OP_BATCHNORM2D)
        {
          CleaveParam *m = g->params->pdata[n->param[CLEAVE_PARAM_RUNNING_MEAN]];
          CleaveParam *v = g->params->pdata[n->param[CLEAVE_PARAM_RUNNING_VAR]];
          for (int k = 0; k < n->out_channels; k++)
            {
              w->data[k] = 1.0f;
              b->data[k] = 0.0f;
              m->data[k] = 0.0f;
              v->data[k] = 1.0f;
            }
        }
    }
  g_rand_free (r);
}

void
cleave_graph_set_trainable (CleaveGraph *g, gboolean trainable)
{
  for (guint i = 0; i < g->params->len; i++)
    {
      CleaveParam *p = g->params->pdata[i];
      p->trainable = trainable && !p->is_buffer;
    }
}

guint64
cleave_graph_count_params (const CleaveGraph *g)
{
  guint64 total = 0;
  for (guint i = 0; i < g->params->len; i++)
    {
      CleaveParam *p = g->params->pdata[i];
      if (!p->is_buffer)
        total += cleave_param_numel (p);
    }
  return total;
}

guint64
cleave_graph_node_flops (const CleaveGraph *g, int idx)
{
  CleaveNode *n = g->nodes->pdata[idx];
  guint64 out = n->out_ndim == 3 ? (guint64) n->out_shape[0] * n->out_shape[1] * n->out_shape[2]
                                 : (guint64) n->out_shape[0];
  switch (n->op)
    {
    case CLEAVE_OP_CONV2D:
      return 2 * out * (guint64) (n->in_channels / n->groups) * n->kernel * n->kernel;
    case CLEAVE_OP_LINEAR:
      return 2 * out * (guint64) n->in_features;
    case CLEAVE_OP_MAXPOOL2D:
    case CLEAVE_OP_AVGPOOL2D:
      return out * (guint64) n->kernel * n->kernel;
    case CLEAVE_OP_BATCHNORM2D:
      return 2 * out;
    case CLEAVE_OP_GLOBAL_AVGPOOL:
      {
        CleaveNode *in = g->nodes->pdata[n->inputs[0]];
        return (guint64) in->out_shape[0] * in->out_shape[1] * in->out_shape[2];
      }
    case CLEAVE_OP_RELU:
    case CLEAVE_OP_ADD:
    case CLEAVE_OP_SIGMOID:
    case CLEAVE_OP_CLIP:
    case CLEAVE_OP_MUL:
      return out;
    case CLEAVE_OP_HARDSIGMOID:
      return 2 * out;
    case CLEAVE_OP_SOFTMAX:
      return 3 * out;
    default:
      return 0;
    }
}

guint64
cleave_graph_count_flops (const CleaveGraph *g)
{
  guint64 total = 0;
  for (guint i = 1; i < g->nodes->len; i++)
    total += cleave_graph_node_flops (g, (int) i);
  return total;
}
