/* cleave-onnx-export.c: protobuf encoding of ONNX models, and the builder
 * that turns CleaveGraphs (one or several, as branches) into one ONNX graph.
 *
 * The builder accumulates a CleaveOnnxModel (the same structure the decoder
 * produces), so encode → parse round trips are testable field by field. */
#include "config.h"
#include "cleave-onnx.h"
#include "cleave-error.h"
#include "cleave-file.h"

#include <string.h>

#define EXPORT_OPSET 13
#define EXPORT_IR_VERSION 7   /* the IR version that goes with opset 13 */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static void
put_varint (GByteArray *b, guint64 v)
{
  guint8 tmp[10];
  int n = 0;

  do
    {
      tmp[n] = v & 0x7f;
      v >>= 7;
      if (v)
        tmp[n] |= 0x80;
      n++;
    }
  while (v);
  g_byte_array_append (b, tmp, n);
}

static void
put_tag (GByteArray *b, guint field, guint wire)
{
  put_varint (b, ((guint64) field << 3) | wire);
}

static void
put_int (GByteArray *b, guint field, gint64 v)
{
  put_tag (b, field, WT_VARINT);
  put_varint (b, (guint64) v);
}

static void
put_bytes (GByteArray *b, guint field, const void *data, gsize len)
{
  put_tag (b, field, WT_LEN);
  put_varint (b, len);
  g_byte_array_append (b, data, len);
}

static void
put_string (GByteArray *b, guint field, const char *s)
{
  if (s)
    put_bytes (b, field, s, strlen (s));
}

static void
put_float (GByteArray *b, guint field, float f)
{
  guint32 u;
  guint8 le[4];

  memcpy (&u, &f, 4);
  for (int k = 0; k < 4; k++)
    le[k] = u >> (8 * k);
  put_tag (b, field, WT_I32);
  g_byte_array_append (b, le, 4);
}

/* Appends @sub as a length-delimited field and frees it. */
static void
put_msg (GByteArray *b, guint field, GByteArray *sub)
{
  put_bytes (b, field, sub->data, sub->len);
  g_byte_array_unref (sub);
}

static void
put_packed_ints (GByteArray *b, guint field, const gint64 *v, int n)
{
  GByteArray *sub = g_byte_array_new ();

  for (int k = 0; k < n; k++)
    put_varint (sub, (guint64) v[k]);
  put_msg (b, field, sub);
}

static GByteArray *
encode_tensor (const CleaveOnnxTensor *t)
{
  GByteArray *b = g_byte_array_new ();

  if (t->ndim > 0)
    put_packed_ints (b, 1, t->dims, t->ndim);
  put_int (b, 2, t->data_type);
  put_string (b, 8, t->name);
  if (t->f)
    {
      GByteArray *raw = g_byte_array_sized_new (t->numel * 4);
      for (gsize k = 0; k < t->numel; k++)
        {
          guint32 u;
          guint8 le[4];
          memcpy (&u, &t->f[k], 4);
          for (int j = 0; j < 4; j++)
            le[j] = u >> (8 * j);
          g_byte_array_append (raw, le, 4);
        }
      put_msg (b, 9, raw);
    }
  else if (t->i)
    {
      GByteArray *raw = g_byte_array_sized_new (t->numel * 8);
      for (gsize k = 0; k < t->numel; k++)
        {
          guint64 u = (guint64) t->i[k];
          guint8 le[8];
          for (int j = 0; j < 8; j++)
            le[j] = u >> (8 * j);
          g_byte_array_append (raw, le, 8);
        }
      put_msg (b, 9, raw);
    }
  return b;
}

static GByteArray *
encode_attr (const CleaveOnnxAttr *a)
{
  GByteArray *b = g_byte_array_new ();

  put_string (b, 1, a->name);
  put_int (b, 20, a->type);
  switch (a->type)
    {
    case CLEAVE_ONNX_ATTR_FLOAT:  put_float (b, 2, a->f); break;
    case CLEAVE_ONNX_ATTR_INT:    put_int (b, 3, a->i); break;
    case CLEAVE_ONNX_ATTR_STRING: put_string (b, 4, a->s ? a->s : ""); break;
    case CLEAVE_ONNX_ATTR_TENSOR: if (a->t) put_msg (b, 5, encode_tensor (a->t)); break;
    case CLEAVE_ONNX_ATTR_FLOATS:
      for (int k = 0; k < a->n_floats; k++)
        put_float (b, 7, a->floats[k]);
      break;
    case CLEAVE_ONNX_ATTR_INTS:   put_packed_ints (b, 8, a->ints, a->n_ints); break;
    default: break;
    }
  return b;
}

static GByteArray *
encode_node (const CleaveOnnxNode *n)
{
  GByteArray *b = g_byte_array_new ();

  for (int k = 0; k < n->n_inputs; k++)
    put_string (b, 1, n->inputs[k]);
  for (int k = 0; k < n->n_outputs; k++)
    put_string (b, 2, n->outputs[k]);
  if (n->name && *n->name)
    put_string (b, 3, n->name);
  put_string (b, 4, n->op_type);
  for (int k = 0; k < n->n_attrs; k++)
    put_msg (b, 5, encode_attr (&n->attrs[k]));
  if (n->domain && *n->domain)
    put_string (b, 7, n->domain);
  return b;
}

static GByteArray *
encode_value_info (const CleaveOnnxValueInfo *vi)
{
  GByteArray *b = g_byte_array_new ();
  GByteArray *tensor = g_byte_array_new ();
  GByteArray *type = g_byte_array_new ();

  put_string (b, 1, vi->name);
  if (vi->elem_type)
    put_int (tensor, 1, vi->elem_type);
  if (vi->ndim >= 0)
    {
      GByteArray *shape = g_byte_array_new ();
      for (int k = 0; k < vi->ndim; k++)
        {
          GByteArray *dim = g_byte_array_new ();
          if (vi->dim_params[k])
            put_string (dim, 2, vi->dim_params[k]);
          else if (vi->dims[k] >= 0)
            put_int (dim, 1, vi->dims[k]);
          put_msg (shape, 1, dim);
        }
      put_msg (tensor, 2, shape);
    }
  put_msg (type, 1, tensor);
  put_msg (b, 2, type);
  return b;
}

GBytes *
cleave_onnx_model_encode (const CleaveOnnxModel *m)
{
  GByteArray *b = g_byte_array_new ();
  GByteArray *g = g_byte_array_new ();
  GByteArray *opset = g_byte_array_new ();

  put_int (b, 1, m->ir_version ? m->ir_version : EXPORT_IR_VERSION);
  put_string (b, 2, m->producer_name);
  put_string (b, 3, m->producer_version);

  for (guint k = 0; k < m->nodes->len; k++)
    put_msg (g, 1, encode_node (m->nodes->pdata[k]));
  put_string (g, 2, m->graph_name ? m->graph_name : "cleave");
  for (guint k = 0; k < m->initializers->len; k++)
    put_msg (g, 5, encode_tensor (m->initializers->pdata[k]));
  for (guint k = 0; k < m->inputs->len; k++)
    put_msg (g, 11, encode_value_info (m->inputs->pdata[k]));
  for (guint k = 0; k < m->outputs->len; k++)
    put_msg (g, 12, encode_value_info (m->outputs->pdata[k]));
  put_msg (b, 7, g);

  put_string (opset, 1, "");
  put_int (opset, 2, m->opset ? m->opset : EXPORT_OPSET);
  put_msg (b, 8, opset);
  return g_byte_array_free_to_bytes (b);
}

/* ---- builder ---- */

struct _CleaveOnnxBuilder {
  CleaveOnnxModel *m;
  GHashTable *names;     /* value, initializer and node names in use */
};

CleaveOnnxBuilder *
cleave_onnx_builder_new (const char *graph_name)
{
  CleaveOnnxBuilder *b = g_new0 (CleaveOnnxBuilder, 1);

  b->m = cleave_onnx_model_new ();
  b->m->ir_version = EXPORT_IR_VERSION;
  b->m->opset = EXPORT_OPSET;
  b->m->producer_name = g_strdup ("cleave");
  b->m->producer_version = g_strdup (PACKAGE_VERSION);
  b->m->graph_name = g_strdup (graph_name ? graph_name : "cleave");
  b->names = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return b;
}

void
cleave_onnx_builder_free (CleaveOnnxBuilder *b)
{
  if (!b)
    return;
  cleave_onnx_model_free (b->m);
  g_hash_table_unref (b->names);
  g_free (b);
}

/* A name not used yet, based on @base; recorded as used. */
static char *
unique_name (CleaveOnnxBuilder *b, const char *base)
{
  char *name = g_strdup (base);

  for (int i = 1; g_hash_table_contains (b->names, name); i++)
    {
      g_free (name);
      name = g_strdup_printf ("%s_%d", base, i);
    }
  g_hash_table_add (b->names, g_strdup (name));
  return name;
}

const char *
cleave_onnx_builder_add_input (CleaveOnnxBuilder *b, const char *name, int c, int h, int w)
{
  CleaveOnnxValueInfo *vi = g_new0 (CleaveOnnxValueInfo, 1);

  vi->name = unique_name (b, name);
  vi->elem_type = CLEAVE_ONNX_FLOAT;
  vi->ndim = 4;
  vi->dims[0] = -1;
  vi->dim_params[0] = g_strdup ("N");
  vi->dims[1] = c;
  vi->dims[2] = h;
  vi->dims[3] = w;
  g_ptr_array_add (b->m->inputs, vi);
  return vi->name;
}

void
cleave_onnx_builder_add_output (CleaveOnnxBuilder *b, const char *value, int elem_type, int ndim, const gint64 *dims)
{
  CleaveOnnxValueInfo *vi = g_new0 (CleaveOnnxValueInfo, 1);

  g_return_if_fail (ndim <= CLEAVE_ONNX_MAX_DIMS);
  vi->name = g_strdup (value);
  vi->elem_type = elem_type;
  vi->ndim = ndim;
  for (int k = 0; k < ndim; k++)
    {
      vi->dims[k] = dims[k];
      if (dims[k] < 0)
        vi->dim_params[k] = g_strdup ("N");
    }
  g_ptr_array_add (b->m->outputs, vi);
}

static const char *
add_init (CleaveOnnxBuilder *b, const char *name, int ndim, const gint64 *dims, const float *f, const gint64 *i)
{
  CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);
  gsize n = 1;

  g_return_val_if_fail (ndim <= CLEAVE_ONNX_MAX_DIMS, NULL);
  for (int k = 0; k < ndim; k++)
    n *= dims[k];
  t->name = unique_name (b, name);
  t->ndim = ndim;
  if (ndim > 0)
    memcpy (t->dims, dims, ndim * sizeof (gint64));
  t->numel = n;
  if (f)
    {
      t->data_type = CLEAVE_ONNX_FLOAT;
      t->f = g_memdup2 (f, MAX (n, 1) * sizeof (float));
    }
  else
    {
      t->data_type = CLEAVE_ONNX_INT64;
      t->i = g_memdup2 (i, MAX (n, 1) * sizeof (gint64));
    }
  g_ptr_array_add (b->m->initializers, t);
  return t->name;
}

const char *
cleave_onnx_builder_add_initializer (CleaveOnnxBuilder *b, const char *name, int ndim, const gint64 *dims, const float *data)
{
  return add_init (b, name, ndim, dims, data, NULL);
}

const char *
cleave_onnx_builder_add_initializer_i64 (CleaveOnnxBuilder *b, const char *name, int ndim, const gint64 *dims, const gint64 *data)
{
  return add_init (b, name, ndim, dims, NULL, data);
}

int
cleave_onnx_builder_add_node (CleaveOnnxBuilder *b, const char *op_type, const char *name,
                              const char *const *inputs, int n_inputs)
{
  CleaveOnnxNode *n = g_new0 (CleaveOnnxNode, 1);

  n->name = unique_name (b, name ? name : op_type);
  n->op_type = g_strdup (op_type);
  n->domain = g_strdup ("");
  n->n_inputs = n_inputs;
  n->inputs = g_new0 (char *, n_inputs + 1);
  for (int k = 0; k < n_inputs; k++)
    n->inputs[k] = g_strdup (inputs[k] ? inputs[k] : "");
  g_autofree char *out = g_strdup_printf ("%s_output_0", n->name);
  n->n_outputs = 1;
  n->outputs = g_new0 (char *, 2);
  n->outputs[0] = unique_name (b, out);
  g_ptr_array_add (b->m->nodes, n);
  return b->m->nodes->len - 1;
}

const char *
cleave_onnx_builder_node_output (CleaveOnnxBuilder *b, int node)
{
  g_return_val_if_fail (node >= 0 && (guint) node < b->m->nodes->len, NULL);
  return ((CleaveOnnxNode *) b->m->nodes->pdata[node])->outputs[0];
}

static CleaveOnnxAttr *
new_attr (CleaveOnnxBuilder *b, int node, const char *name, CleaveOnnxAttrType type)
{
  CleaveOnnxNode *n = b->m->nodes->pdata[node];

  n->attrs = g_renew (CleaveOnnxAttr, n->attrs, n->n_attrs + 1);
  CleaveOnnxAttr *a = &n->attrs[n->n_attrs++];
  memset (a, 0, sizeof *a);
  a->name = g_strdup (name);
  a->type = type;
  return a;
}

void
cleave_onnx_builder_set_int (CleaveOnnxBuilder *b, int node, const char *attr, gint64 v)
{
  new_attr (b, node, attr, CLEAVE_ONNX_ATTR_INT)->i = v;
}

void
cleave_onnx_builder_set_float (CleaveOnnxBuilder *b, int node, const char *attr, float v)
{
  new_attr (b, node, attr, CLEAVE_ONNX_ATTR_FLOAT)->f = v;
}

void
cleave_onnx_builder_set_ints (CleaveOnnxBuilder *b, int node, const char *attr, const gint64 *v, int n)
{
  CleaveOnnxAttr *a = new_attr (b, node, attr, CLEAVE_ONNX_ATTR_INTS);

  a->n_ints = n;
  a->ints = g_memdup2 (v, MAX (n, 1) * sizeof (gint64));
}

const char *
cleave_onnx_builder_add_normalize (CleaveOnnxBuilder *b, const char *input, int n_channels,
                                   const float *mean, const float *std, const char *prefix)
{
  gint64 dims[4] = { 1, n_channels, 1, 1 };
  g_autofree float *inv = g_new (float, n_channels);
  g_autofree char *mname = g_strdup_printf ("%snormalize.mean", prefix ? prefix : "");
  g_autofree char *sname = g_strdup_printf ("%snormalize.std", prefix ? prefix : "");
  g_autofree char *sub = g_strdup_printf ("/%snormalize/Sub", prefix ? prefix : "");
  g_autofree char *div = g_strdup_printf ("/%snormalize/Div", prefix ? prefix : "");

  const char *m = cleave_onnx_builder_add_initializer (b, mname, 4, dims, mean);
  const char *s = cleave_onnx_builder_add_initializer (b, sname, 4, dims, std);
  const char *in1[2] = { input, m };
  int n1 = cleave_onnx_builder_add_node (b, "Sub", sub, in1, 2);
  const char *in2[2] = { cleave_onnx_builder_node_output (b, n1), s };
  int n2 = cleave_onnx_builder_add_node (b, "Div", div, in2, 2);
  return cleave_onnx_builder_node_output (b, n2);
}

static const char *
param_init (CleaveOnnxBuilder *b, const CleaveGraph *g, const CleaveNode *node, CleaveParamSlot slot, const char *prefix)
{
  if (node->param[slot] < 0)
    return NULL;
  const CleaveParam *p = cleave_graph_param (g, node->param[slot]);
  gint64 dims[CLEAVE_MAX_DIMS];
  for (int k = 0; k < p->ndim; k++)
    dims[k] = p->shape[k];
  g_autofree char *name = g_strdup_printf ("%s%s", prefix, p->name);
  return cleave_onnx_builder_add_initializer (b, name, p->ndim, dims, p->data);
}

static void
set_window (CleaveOnnxBuilder *b, int n, int kernel, int stride, int pad)
{
  gint64 k2[2] = { kernel, kernel }, s2[2] = { stride, stride }, p4[4] = { pad, pad, pad, pad };

  cleave_onnx_builder_set_ints (b, n, "kernel_shape", k2, 2);
  cleave_onnx_builder_set_ints (b, n, "strides", s2, 2);
  cleave_onnx_builder_set_ints (b, n, "pads", p4, 4);
}

/* alpha·x + beta as Mul and Add by scalars. */
static const char *
add_scale (CleaveOnnxBuilder *b, const CleaveNode *node, const char *x, const char *prefix)
{
  gint64 none[1] = { 0 };
  g_autofree char *an = g_strdup_printf ("%s%s.alpha", prefix, node->name);
  g_autofree char *bn = g_strdup_printf ("%s%s.beta", prefix, node->name);
  g_autofree char *mn = g_strdup_printf ("/%s%s/Mul", prefix, node->name);
  g_autofree char *dn = g_strdup_printf ("/%s%s/Add", prefix, node->name);
  const char *in1[2] = { x, cleave_onnx_builder_add_initializer (b, an, 0, none, &node->alpha) };
  int n1 = cleave_onnx_builder_add_node (b, "Mul", mn, in1, 2);
  const char *in2[2] = { cleave_onnx_builder_node_output (b, n1), cleave_onnx_builder_add_initializer (b, bn, 0, none, &node->beta) };
  int n2 = cleave_onnx_builder_add_node (b, "Add", dn, in2, 2);
  return cleave_onnx_builder_node_output (b, n2);
}

/* A channel shuffle as PyTorch writes it: Reshape to [N,g,C/g,H,W],
 * Transpose of axes 1 and 2, Reshape back to [N,C,H,W]. */
static const char *
add_channel_shuffle (CleaveOnnxBuilder *b, const CleaveNode *node, const char *x, const char *prefix)
{
  const int c = node->out_shape[0], h = node->out_shape[1], w = node->out_shape[2];
  gint64 five[5] = { 0, node->groups, c / node->groups, h, w }, four[4] = { 0, c, h, w }, perm[5] = { 0, 2, 1, 3, 4 };
  gint64 d5[1] = { 5 }, d4[1] = { 4 };
  g_autofree char *s5 = g_strdup_printf ("%s%s.shape5", prefix, node->name);
  g_autofree char *s4 = g_strdup_printf ("%s%s.shape4", prefix, node->name);
  g_autofree char *r1 = g_strdup_printf ("/%s%s/Reshape", prefix, node->name);
  g_autofree char *tr = g_strdup_printf ("/%s%s/Transpose", prefix, node->name);
  g_autofree char *r2 = g_strdup_printf ("/%s%s/Reshape_1", prefix, node->name);
  const char *in1[2] = { x, cleave_onnx_builder_add_initializer_i64 (b, s5, 1, d5, five) };
  int n1 = cleave_onnx_builder_add_node (b, "Reshape", r1, in1, 2);
  const char *in2[1] = { cleave_onnx_builder_node_output (b, n1) };
  int n2 = cleave_onnx_builder_add_node (b, "Transpose", tr, in2, 1);
  cleave_onnx_builder_set_ints (b, n2, "perm", perm, 5);
  const char *in3[2] = { cleave_onnx_builder_node_output (b, n2), cleave_onnx_builder_add_initializer_i64 (b, s4, 1, d4, four) };
  int n3 = cleave_onnx_builder_add_node (b, "Reshape", r2, in3, 2);
  return cleave_onnx_builder_node_output (b, n3);
}

/* The constant inputs of Clip (its bounds, after the affine part, if any)
 * and Slice (starts, ends, axes); returns the op, or NULL for a clip that
 * is only its affine part (in[0] is then that). */
static const char *
constant_inputs (CleaveOnnxBuilder *b, const CleaveNode *node, const char **in, int *n_in, const char *prefix)
{
  if (node->op == CLEAVE_OP_SLICE)
    {
      gint64 one[1] = { 1 }, start[1] = { node->start }, end[1] = { node->start + node->out_channels };
      g_autofree char *sn = g_strdup_printf ("%s%s.starts", prefix, node->name);
      g_autofree char *en = g_strdup_printf ("%s%s.ends", prefix, node->name);
      g_autofree char *an = g_strdup_printf ("%s%s.axes", prefix, node->name);
      in[1] = cleave_onnx_builder_add_initializer_i64 (b, sn, 1, one, start);
      in[2] = cleave_onnx_builder_add_initializer_i64 (b, en, 1, one, end);
      in[3] = cleave_onnx_builder_add_initializer_i64 (b, an, 1, one, one);
      *n_in = 4;
      return "Slice";
    }
  gint64 none[1] = { 0 };
  g_autofree char *lo = g_strdup_printf ("%s%s.min", prefix, node->name);
  g_autofree char *hi = g_strdup_printf ("%s%s.max", prefix, node->name);
  if (node->alpha != 1.f || node->beta != 0.f)
    in[0] = add_scale (b, node, in[0], prefix);
  if (node->clip_min == -G_MAXFLOAT && node->clip_max == G_MAXFLOAT)
    return NULL;
  in[1] = cleave_onnx_builder_add_initializer (b, lo, 0, none, &node->clip_min);
  in[2] = cleave_onnx_builder_add_initializer (b, hi, 0, none, &node->clip_max);
  *n_in = 3;
  return "Clip";
}

const char *
cleave_onnx_builder_add_graph (CleaveOnnxBuilder *b, const CleaveGraph *g, const char *input,
                               const char *prefix, GError **error)
{
  int nn = cleave_graph_n_nodes (g);
  g_autofree const char **val = g_new0 (const char *, nn);

  prefix = prefix ? prefix : "";
  for (int i = 0; i < nn; i++)
    {
      const CleaveNode *node = cleave_graph_node (g, i);
      const char *in[CLEAVE_MAX_INPUTS + 4] = { 0 };
      const char *op = NULL;
      int n_in = 1, k;

      if (node->op == CLEAVE_OP_INPUT)
        {
          val[i] = input;
          continue;
        }
      if (node->out_ndim == 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "ONNX export: graph is not finalized (node '%s' has no shape)", node->name);
          return NULL;
        }
      for (k = 0; k < node->n_inputs; k++)
        in[k] = val[node->inputs[k]];
      switch (node->op)
        {
        case CLEAVE_OP_CONV2D:
          op = "Conv";
          in[1] = param_init (b, g, node, CLEAVE_PARAM_WEIGHT, prefix);
          in[2] = param_init (b, g, node, CLEAVE_PARAM_BIAS, prefix);
          n_in = in[2] ? 3 : 2;
          break;
        case CLEAVE_OP_BATCHNORM2D:
          op = "BatchNormalization";
          for (int s = 0; s < 4; s++)
            in[1 + s] = param_init (b, g, node, (CleaveParamSlot) s, prefix);
          n_in = 5;
          break;
        case CLEAVE_OP_RELU:           op = "Relu"; break;
        case CLEAVE_OP_SIGMOID:        op = "Sigmoid"; break;
        case CLEAVE_OP_MAXPOOL2D:      op = "MaxPool"; break;
        case CLEAVE_OP_AVGPOOL2D:      op = "AveragePool"; break;
        case CLEAVE_OP_GLOBAL_AVGPOOL: op = "GlobalAveragePool"; break;
        case CLEAVE_OP_FLATTEN:        op = "Flatten"; break;
        case CLEAVE_OP_LINEAR:
          op = "Gemm";
          in[1] = param_init (b, g, node, CLEAVE_PARAM_WEIGHT, prefix);
          in[2] = param_init (b, g, node, CLEAVE_PARAM_BIAS, prefix);
          n_in = in[2] ? 3 : 2;
          break;
        case CLEAVE_OP_ADD:            op = "Add"; n_in = 2; break;
        case CLEAVE_OP_MUL:            op = "Mul"; n_in = 2; break;
        case CLEAVE_OP_CONCAT:         op = "Concat"; n_in = node->n_inputs; break;
        case CLEAVE_OP_HARDSIGMOID:    op = "HardSigmoid"; break;
        case CLEAVE_OP_SOFTMAX:        op = "Softmax"; break;
        case CLEAVE_OP_CLIP:
        case CLEAVE_OP_SLICE:
          /* a clip without bounds is its affine part only */
          if ((op = constant_inputs (b, node, in, &n_in, prefix)) == NULL)
            {
              val[i] = in[0];
              continue;
            }
          break;
        case CLEAVE_OP_CHANNEL_SHUFFLE:
          val[i] = add_channel_shuffle (b, node, in[0], prefix);
          continue;
        case CLEAVE_OP_DROPOUT:
          val[i] = in[0];   /* inference graph: dropout is the identity */
          continue;
        default:
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "ONNX export: node '%s': op %s has no ONNX mapping",
                       node->name, cleave_op_kind_to_string (node->op));
          return NULL;
        }
      for (k = 0; k < n_in; k++)
        if (!in[k])
          {
            g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "ONNX export: node '%s' lacks input %d",
                         node->name, k);
            return NULL;
          }
      g_autofree char *nname = g_strdup_printf ("/%s%s/%s", prefix, node->name, op);
      int n = cleave_onnx_builder_add_node (b, op, nname, in, n_in);
      switch (node->op)
        {
        case CLEAVE_OP_CONV2D:
          {
            gint64 one[2] = { 1, 1 };
            set_window (b, n, node->kernel, node->stride, node->pad);
            cleave_onnx_builder_set_ints (b, n, "dilations", one, 2);
            cleave_onnx_builder_set_int (b, n, "group", node->groups > 0 ? node->groups : 1);
          }
          break;
        case CLEAVE_OP_BATCHNORM2D:
          cleave_onnx_builder_set_float (b, n, "epsilon", node->eps);
          cleave_onnx_builder_set_float (b, n, "momentum", 1.f - node->momentum);
          break;
        case CLEAVE_OP_MAXPOOL2D:
          set_window (b, n, node->kernel, node->stride, node->pad);
          if (node->ceil_mode)
            cleave_onnx_builder_set_int (b, n, "ceil_mode", 1);
          break;
        case CLEAVE_OP_AVGPOOL2D:
          set_window (b, n, node->kernel, node->stride, node->pad);
          cleave_onnx_builder_set_int (b, n, "count_include_pad", !node->exclude_pad);
          if (node->ceil_mode)
            cleave_onnx_builder_set_int (b, n, "ceil_mode", 1);
          break;
        case CLEAVE_OP_SOFTMAX:
          cleave_onnx_builder_set_int (b, n, "axis", 1);
          break;
        case CLEAVE_OP_HARDSIGMOID:
          cleave_onnx_builder_set_float (b, n, "alpha", node->alpha);
          cleave_onnx_builder_set_float (b, n, "beta", node->beta);
          break;
        case CLEAVE_OP_LINEAR:
          cleave_onnx_builder_set_int (b, n, "transB", 1);
          break;
        case CLEAVE_OP_FLATTEN:
        case CLEAVE_OP_CONCAT:
          cleave_onnx_builder_set_int (b, n, "axis", 1);
          break;
        default:
          break;
        }
      val[i] = cleave_onnx_builder_node_output (b, n);
      if (node->op == CLEAVE_OP_GLOBAL_AVGPOOL && node->out_ndim == 1)
        {
          /* ONNX keeps [N,C,1,1]; Cleave's global pool yields [N,C] */
          g_autofree char *fname = g_strdup_printf ("/%s%s/Flatten", prefix, node->name);
          const char *fin[1] = { val[i] };
          int f = cleave_onnx_builder_add_node (b, "Flatten", fname, fin, 1);
          cleave_onnx_builder_set_int (b, f, "axis", 1);
          val[i] = cleave_onnx_builder_node_output (b, f);
        }
    }
  return val[cleave_graph_output (g)];
}

const CleaveOnnxModel *
cleave_onnx_builder_model (CleaveOnnxBuilder *b)
{
  return b->m;
}

GBytes *
cleave_onnx_builder_to_bytes (CleaveOnnxBuilder *b)
{
  return cleave_onnx_model_encode (b->m);
}

gboolean
cleave_onnx_builder_save (CleaveOnnxBuilder *b, const char *path, GError **error)
{
  g_autoptr (GBytes) bytes = cleave_onnx_builder_to_bytes (b);
  gsize len;
  const char *data = g_bytes_get_data (bytes, &len);

  return cleave_file_replace (path, data, len, 0644, error);
}

/* Renames a value everywhere (node outputs and inputs) so the graph output can
 * carry a fixed name such as "logits". */
static void
rename_value (CleaveOnnxBuilder *b, const char *from, const char *to)
{
  g_autofree char *old = g_strdup (from);

  for (guint k = 0; k < b->m->nodes->len; k++)
    {
      CleaveOnnxNode *n = b->m->nodes->pdata[k];
      for (int i = 0; i < n->n_inputs; i++)
        if (g_str_equal (n->inputs[i], old))
          g_free (n->inputs[i]), n->inputs[i] = g_strdup (to);
      for (int i = 0; i < n->n_outputs; i++)
        if (g_str_equal (n->outputs[i], old))
          g_free (n->outputs[i]), n->outputs[i] = g_strdup (to);
    }
  g_hash_table_add (b->names, g_strdup (to));
}

gboolean
cleave_onnx_export_graph (const CleaveGraph *g, const float *mean, const float *std,
                          const char *path, GError **error)
{
  g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new ("cleave");
  int c, h, w;

  g_return_val_if_fail ((mean == NULL) == (std == NULL), FALSE);
  cleave_graph_input_shape (g, &c, &h, &w);
  const char *x = cleave_onnx_builder_add_input (b, "input", c, h, w);
  if (mean)
    x = cleave_onnx_builder_add_normalize (b, x, c, mean, std, "");
  const char *out = cleave_onnx_builder_add_graph (b, g, x, "", error);
  if (!out)
    return FALSE;
  if (g_str_equal (out, x))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "ONNX export: the graph has no layers");
      return FALSE;
    }
  rename_value (b, out, "logits");
  gint64 dims[2] = { -1, cleave_graph_n_outputs (g) };
  cleave_onnx_builder_add_output (b, "logits", CLEAVE_ONNX_FLOAT, 2, dims);
  return cleave_onnx_builder_save (b, path, error);
}
