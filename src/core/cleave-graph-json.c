/* cleave-graph-json.c: the architecture as JSON (docs/ARCHITECTURE-JSON.md). */
#include "cleave-graph-private.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <json-glib/json-glib.h>

char *
cleave_graph_to_json (const CleaveGraph *g)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "input");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, g->in_c);
  json_builder_add_int_value (b, g->in_h);
  json_builder_add_int_value (b, g->in_w);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "nodes");
  json_builder_begin_array (b);
  for (guint i = 1; i < g->nodes->len; i++)
    {
      CleaveNode *n = g->nodes->pdata[i];
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, n->name);
      json_builder_set_member_name (b, "op");
      json_builder_add_string_value (b, cleave_op_kind_to_string (n->op));
      json_builder_set_member_name (b, "inputs");
      json_builder_begin_array (b);
      for (int k = 0; k < n->n_inputs; k++)
        json_builder_add_string_value (b, ((CleaveNode *) g->nodes->pdata[n->inputs[k]])->name);
      json_builder_end_array (b);
#define INT_ATTR(key, val) do { json_builder_set_member_name (b, key); json_builder_add_int_value (b, val); } while (0)
      switch (n->op)
        {
        case CLEAVE_OP_CONV2D:
          INT_ATTR ("out_channels", n->out_channels);
          INT_ATTR ("kernel", n->kernel);
          INT_ATTR ("stride", n->stride);
          INT_ATTR ("pad", n->pad);
          INT_ATTR ("groups", n->groups);
          json_builder_set_member_name (b, "bias");
          json_builder_add_boolean_value (b, n->has_bias);
          break;
        case CLEAVE_OP_BATCHNORM2D:
          json_builder_set_member_name (b, "eps");
          json_builder_add_double_value (b, n->eps);
          json_builder_set_member_name (b, "momentum");
          json_builder_add_double_value (b, n->momentum);
          break;
#define BOOL_ATTR(key, val) do { json_builder_set_member_name (b, key); json_builder_add_boolean_value (b, val); } while (0)
#define NUM_ATTR(key, val) do { json_builder_set_member_name (b, key); json_builder_add_double_value (b, val); } while (0)
        case CLEAVE_OP_MAXPOOL2D:
        case CLEAVE_OP_AVGPOOL2D:
          INT_ATTR ("kernel", n->kernel);
          INT_ATTR ("stride", n->stride);
          INT_ATTR ("pad", n->pad);
          /* written only when set, so that older readers still open the common case */
          if (n->ceil_mode)
            BOOL_ATTR ("ceil_mode", TRUE);
          if (n->exclude_pad)
            BOOL_ATTR ("count_include_pad", FALSE);
          break;
        case CLEAVE_OP_GLOBAL_AVGPOOL:
          if (n->keepdims)
            BOOL_ATTR ("keepdims", TRUE);
          break;
        case CLEAVE_OP_CLIP:
          NUM_ATTR ("min", n->clip_min);
          NUM_ATTR ("max", n->clip_max);
          if (n->alpha != 1.f || n->beta != 0.f)
            {
              NUM_ATTR ("alpha", n->alpha);
              NUM_ATTR ("beta", n->beta);
            }
          break;
        case CLEAVE_OP_HARDSIGMOID:
          NUM_ATTR ("alpha", n->alpha);
          NUM_ATTR ("beta", n->beta);
          break;
        case CLEAVE_OP_CHANNEL_SHUFFLE:
          INT_ATTR ("groups", n->groups);
          break;
        case CLEAVE_OP_SLICE:
          INT_ATTR ("start", n->start);
          INT_ATTR ("channels", n->out_channels);
          break;
#undef BOOL_ATTR
#undef NUM_ATTR
        case CLEAVE_OP_LINEAR:
          INT_ATTR ("out_features", n->out_features);
          json_builder_set_member_name (b, "bias");
          json_builder_add_boolean_value (b, n->has_bias);
          break;
        case CLEAVE_OP_DROPOUT:
          json_builder_set_member_name (b, "p");
          json_builder_add_double_value (b, n->p);
          break;
        default:
          break;
        }
#undef INT_ATTR
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static gboolean
json_fail (GError **error, const char *where, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
json_fail (GError **error, const char *where, const char *fmt, ...)
{
  g_autofree char *prefix = g_strdup_printf ("architecture: %s", where);
  va_list ap;

  va_start (ap, fmt);
  cleave_invalid_file_valist (error, prefix, fmt, ap);
  va_end (ap);
  return FALSE;
}

/* Reads an optional integer member within [lo, hi]. */
static gboolean
get_int (JsonObject *o, const char *where, const char *key, int def, int lo, int hi, int *out, GError **error)
{
  JsonNode *m = json_object_get_member (o, key);
  gint64 v;
  if (m == NULL)
    {
      if (def < lo)
        return json_fail (error, where, "'%s' is required", key);
      *out = def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (m) || json_node_get_value_type (m) != G_TYPE_INT64)
    return json_fail (error, where, "'%s' must be an integer", key);
  v = json_node_get_int (m);
  if (v < lo || v > hi)
    return json_fail (error, where, "'%s' = %" G_GINT64_FORMAT " is outside [%d, %d]", key, v, lo, hi);
  *out = (int) v;
  return TRUE;
}

static gboolean
get_double (JsonObject *o, const char *where, const char *key, double def, double lo, double hi,
            float *out, GError **error)
{
  JsonNode *m = json_object_get_member (o, key);
  double v;
  if (m == NULL)
    {
      *out = (float) def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (m) ||
      (json_node_get_value_type (m) != G_TYPE_DOUBLE && json_node_get_value_type (m) != G_TYPE_INT64))
    return json_fail (error, where, "'%s' must be a number", key);
  v = json_node_get_double (m);
  if (!(v >= lo && v <= hi))
    return json_fail (error, where, "'%s' = %g is outside [%g, %g]", key, v, lo, hi);
  *out = (float) v;
  return TRUE;
}

static gboolean
get_bool (JsonObject *o, const char *where, const char *key, gboolean def, gboolean *out, GError **error)
{
  JsonNode *m = json_object_get_member (o, key);
  if (m == NULL)
    {
      *out = def;
      return TRUE;
    }
  if (!JSON_NODE_HOLDS_VALUE (m) || json_node_get_value_type (m) != G_TYPE_BOOLEAN)
    return json_fail (error, where, "'%s' must be true or false", key);
  *out = json_node_get_boolean (m);
  return TRUE;
}

/* The global pool and the elementwise and channel ops: clip, hardsigmoid,
 * mul, softmax, channel_shuffle, slice. */
static gboolean
parse_channel_op (CleaveGraph *g, JsonObject *o, const char *where, const char *name, CleaveOpKind op,
                  const int *inputs, int *out, GError **error)
{
  const int big = 1 << 20;
  int idx = -1;

  switch (op)
    {
    case CLEAVE_OP_GLOBAL_AVGPOOL:
      {
        gboolean keep = FALSE;
        if (!get_bool (o, where, "keepdims", FALSE, &keep, error))
          return FALSE;
        idx = cleave_graph_add_global_avgpool (g, name, inputs[0]);
        ((CleaveNode *) g->nodes->pdata[idx])->keepdims = keep;
        break;
      }
    case CLEAVE_OP_CLIP:
      {
        float lo = 0, hi = 0, a = 1, bt = 0;
        if (!get_double (o, where, "min", -G_MAXFLOAT, -G_MAXFLOAT, G_MAXFLOAT, &lo, error) ||
            !get_double (o, where, "max", G_MAXFLOAT, -G_MAXFLOAT, G_MAXFLOAT, &hi, error) ||
            !get_double (o, where, "alpha", 1, -G_MAXFLOAT, G_MAXFLOAT, &a, error) ||
            !get_double (o, where, "beta", 0, -G_MAXFLOAT, G_MAXFLOAT, &bt, error))
          return FALSE;
        if (lo > hi)
          return json_fail (error, where, "'min' %g is above 'max' %g", lo, hi);
        idx = cleave_graph_add_clip (g, name, inputs[0], lo, hi);
        ((CleaveNode *) g->nodes->pdata[idx])->alpha = a;
        ((CleaveNode *) g->nodes->pdata[idx])->beta = bt;
        break;
      }
    case CLEAVE_OP_HARDSIGMOID:
      {
        float a = 0, bt = 0;
        if (!get_double (o, where, "alpha", 0.2, -1e6, 1e6, &a, error) ||
            !get_double (o, where, "beta", 0.5, -1e6, 1e6, &bt, error))
          return FALSE;
        idx = cleave_graph_add_hardsigmoid (g, name, inputs[0], a, bt);
        break;
      }
    case CLEAVE_OP_MUL:
      idx = cleave_graph_add_mul (g, name, inputs[0], inputs[1]);
      break;
    case CLEAVE_OP_SOFTMAX:
      idx = cleave_graph_add_softmax (g, name, inputs[0]);
      break;
    case CLEAVE_OP_CHANNEL_SHUFFLE:
      {
        int gr = 0;
        if (!get_int (o, where, "groups", -1, 1, big, &gr, error))
          return FALSE;
        idx = cleave_graph_add_channel_shuffle (g, name, inputs[0], gr);
        break;
      }
    case CLEAVE_OP_SLICE:
      {
        int start = 0, count = 0;
        if (!get_int (o, where, "start", -1, 0, big, &start, error) ||
            !get_int (o, where, "channels", -1, 1, big, &count, error))
          return FALSE;
        idx = cleave_graph_add_slice (g, name, inputs[0], start, count);
        break;
      }
    default:
      break;
    }
  *out = idx;
  return TRUE;
}

/* The attributes Cleave writes for each op (cleave_graph_to_json). A graph
 * read from a Cleave file must have them all: there a missing one is damage,
 * and its default (pad 0, stride 1, …) would run a different network on the
 * same weights. Hand-written architecture files may leave them out. */
static gboolean
check_written_attributes (JsonObject *o, const char *where, CleaveOpKind op, GError **error)
{
  static const char *const conv[] = { "inputs", "out_channels", "kernel", "stride", "pad", "groups", "bias", NULL };
  static const char *const bn[] = { "inputs", "eps", "momentum", NULL };
  static const char *const pool[] = { "inputs", "kernel", "stride", "pad", NULL };
  static const char *const linear[] = { "inputs", "out_features", "bias", NULL };
  static const char *const dropout[] = { "inputs", "p", NULL };
  static const char *const other[] = { "inputs", NULL };
  const char *const *keys;

  switch (op)
    {
    case CLEAVE_OP_CONV2D: keys = conv; break;
    case CLEAVE_OP_BATCHNORM2D: keys = bn; break;
    case CLEAVE_OP_MAXPOOL2D: case CLEAVE_OP_AVGPOOL2D: keys = pool; break;
    case CLEAVE_OP_LINEAR: keys = linear; break;
    case CLEAVE_OP_DROPOUT: keys = dropout; break;
    default: keys = other; break;
    }
  for (int i = 0; keys[i]; i++)
    if (!json_object_has_member (o, keys[i]))
      return json_fail (error, where, "'%s' is missing (a Cleave file names every attribute)", keys[i]);
  return TRUE;
}

static gboolean
parse_node (CleaveGraph *g, JsonObject *o, int index, gboolean from_file, GError **error)
{
  g_autofree char *where = g_strdup_printf ("nodes[%d]", index);
  const char *name, *opname;
  CleaveOpKind op;
  JsonNode *inputs_node;
  int inputs[CLEAVE_MAX_INPUTS], n_inputs = 0, idx = -1;
  const int big = 1 << 20;

  name = cleave_json_string (json_object_get_member (o, "name"));
  opname = cleave_json_string (json_object_get_member (o, "op"));
  if (name == NULL || name[0] == 0)
    return json_fail (error, where, "'name' is missing or not a string");
  g_free (where);
  where = g_strdup_printf ("nodes[%d] '%s'", index, name);
  if (opname == NULL)
    return json_fail (error, where, "'op' is missing or not a string");
  op = cleave_op_kind_from_string (opname);
  if ((int) op < 0 || op == CLEAVE_OP_INPUT)
    return json_fail (error, where, "unknown op '%s'", opname);

  if (from_file && !check_written_attributes (o, where, op, error))
    return FALSE;
  inputs_node = json_object_get_member (o, "inputs");
  if (inputs_node == NULL)
    inputs[n_inputs++] = (int) g->nodes->len - 1;
  else
    {
      JsonArray *a;
      if (!JSON_NODE_HOLDS_ARRAY (inputs_node))
        return json_fail (error, where, "'inputs' must be a list of layer names");
      a = json_node_get_array (inputs_node);
      if (json_array_get_length (a) < 1 || json_array_get_length (a) > CLEAVE_MAX_INPUTS)
        return json_fail (error, where, "'inputs' must name 1 to %d layers", CLEAVE_MAX_INPUTS);
      for (guint k = 0; k < json_array_get_length (a); k++)
        {
          JsonNode *e = json_array_get_element (a, k);
          int found;
          if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
            return json_fail (error, where, "inputs[%u] must be a string", k);
          found = cleave_graph_find_node (g, json_node_get_string (e));
          if (found < 0)
            return json_fail (error, where, "inputs[%u] '%s' is not an earlier layer", k, json_node_get_string (e));
          inputs[n_inputs++] = found;
        }
    }
  if (op != CLEAVE_OP_CONCAT && op != CLEAVE_OP_ADD && op != CLEAVE_OP_MUL && n_inputs != 1)
    return json_fail (error, where, "takes exactly one input");
  if ((op == CLEAVE_OP_ADD || op == CLEAVE_OP_MUL) && n_inputs != 2)
    return json_fail (error, where, "%s takes exactly two inputs", opname);

  switch (op)
    {
    case CLEAVE_OP_CONV2D:
      {
        int oc = 0, k = 0, s = 0, p = 0, gr = 0;
        gboolean bias = FALSE;
        if (!get_int (o, where, "out_channels", -1, 1, big, &oc, error) ||
            !get_int (o, where, "kernel", 3, 1, 64, &k, error) ||
            !get_int (o, where, "stride", 1, 1, 64, &s, error) ||
            !get_int (o, where, "pad", 0, 0, 64, &p, error) ||
            !get_int (o, where, "groups", 1, 1, big, &gr, error) ||
            !get_bool (o, where, "bias", TRUE, &bias, error))
          return FALSE;
        idx = cleave_graph_add_conv2d (g, name, inputs[0], oc, k, s, p, gr, bias);
        break;
      }
    case CLEAVE_OP_BATCHNORM2D:
      {
        CleaveNode *n;
        idx = cleave_graph_add_batchnorm2d (g, name, inputs[0]);
        n = g->nodes->pdata[idx];
        if (!get_double (o, where, "eps", 1e-5, 1e-12, 1, &n->eps, error) ||
            !get_double (o, where, "momentum", 0.1, 0, 1, &n->momentum, error))
          return FALSE;
        break;
      }
    case CLEAVE_OP_MAXPOOL2D:
    case CLEAVE_OP_AVGPOOL2D:
      {
        int k = 0, s = 0, p = 0;
        gboolean ceil_mode = FALSE, include_pad = TRUE;
        if (!get_int (o, where, "kernel", 2, 1, 64, &k, error) ||
            !get_int (o, where, "stride", k, 1, 64, &s, error) ||
            !get_int (o, where, "pad", 0, 0, 32, &p, error) ||
            !get_bool (o, where, "ceil_mode", FALSE, &ceil_mode, error) ||
            !get_bool (o, where, "count_include_pad", TRUE, &include_pad, error))
          return FALSE;
        if (op == CLEAVE_OP_MAXPOOL2D && !include_pad)
          return json_fail (error, where, "'count_include_pad' applies to avgpool2d only");
        idx = op == CLEAVE_OP_MAXPOOL2D ? cleave_graph_add_maxpool2d (g, name, inputs[0], k, s, p)
                                        : cleave_graph_add_avgpool2d (g, name, inputs[0], k, s, p);
        ((CleaveNode *) g->nodes->pdata[idx])->ceil_mode = ceil_mode;
        ((CleaveNode *) g->nodes->pdata[idx])->exclude_pad = !include_pad;
        break;
      }
    case CLEAVE_OP_LINEAR:
      {
        int of = 0;
        gboolean bias = FALSE;
        if (!get_int (o, where, "out_features", -1, 1, big, &of, error) ||
            !get_bool (o, where, "bias", TRUE, &bias, error))
          return FALSE;
        idx = cleave_graph_add_linear (g, name, inputs[0], of, bias);
        break;
      }
    case CLEAVE_OP_DROPOUT:
      {
        float p = 0;
        if (!get_double (o, where, "p", 0.5, 0, 0.999, &p, error))
          return FALSE;
        idx = cleave_graph_add_dropout (g, name, inputs[0], p);
        break;
      }
    case CLEAVE_OP_RELU:
      idx = cleave_graph_add_relu (g, name, inputs[0]);
      break;
    case CLEAVE_OP_SIGMOID:
      idx = cleave_graph_add_sigmoid (g, name, inputs[0]);
      break;
    case CLEAVE_OP_GLOBAL_AVGPOOL:
    case CLEAVE_OP_CLIP:
    case CLEAVE_OP_HARDSIGMOID:
    case CLEAVE_OP_MUL:
    case CLEAVE_OP_SOFTMAX:
    case CLEAVE_OP_CHANNEL_SHUFFLE:
    case CLEAVE_OP_SLICE:
      if (!parse_channel_op (g, o, where, name, op, inputs, &idx, error))
        return FALSE;
      break;
    case CLEAVE_OP_FLATTEN:
      idx = cleave_graph_add_flatten (g, name, inputs[0]);
      break;
    case CLEAVE_OP_ADD:
      idx = cleave_graph_add_add (g, name, inputs[0], inputs[1]);
      break;
    case CLEAVE_OP_CONCAT:
      idx = cleave_graph_add_concat (g, name, inputs, n_inputs);
      break;
    default:
      break;
    }
  if (idx < 0)
    return json_fail (error, where, "could not be added");
  return TRUE;
}

static CleaveGraph *
graph_from_json (const char *json, gboolean shapes_only, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) local = NULL;
  JsonObject *root;
  JsonArray *input, *nodes;
  int shape[3];
  CleaveGraph *g;

  g_autofree char *wrapped = NULL;

  if (!cleave_json_integers_fit (json, strlen (json), &wrapped))
    {
      json_fail (error, "JSON", "integer %s does not fit in 64 bits", wrapped);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, json, -1, &local))
    {
      json_fail (error, "JSON", "%s", local->message);
      return NULL;
    }
  if (!cleave_json_root (parser, JSON_NODE_OBJECT))
    {
      json_fail (error, "root", "must be an object");
      return NULL;
    }
  root = json_node_get_object (json_parser_get_root (parser));
  if (!json_object_has_member (root, "input") || !JSON_NODE_HOLDS_ARRAY (json_object_get_member (root, "input")))
    {
      json_fail (error, "input", "must be a list [C, H, W]");
      return NULL;
    }
  input = json_object_get_array_member (root, "input");
  if (json_array_get_length (input) != 3)
    {
      json_fail (error, "input", "must have 3 entries [C, H, W]");
      return NULL;
    }
  for (int k = 0; k < 3; k++)
    {
      JsonNode *e = json_array_get_element (input, k);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64 ||
          json_node_get_int (e) < 1 || json_node_get_int (e) > 4096)
        {
          json_fail (error, "input", "entry %d must be an integer in [1, 4096]", k);
          return NULL;
        }
      shape[k] = (int) json_node_get_int (e);
    }
  if (!json_object_has_member (root, "nodes") || !JSON_NODE_HOLDS_ARRAY (json_object_get_member (root, "nodes")))
    {
      json_fail (error, "nodes", "must be a list of layers");
      return NULL;
    }
  nodes = json_object_get_array_member (root, "nodes");
  g = cleave_graph_new (shape[0], shape[1], shape[2]);
  for (guint i = 0; i < json_array_get_length (nodes); i++)
    {
      JsonNode *e = json_array_get_element (nodes, i);
      if (!JSON_NODE_HOLDS_OBJECT (e))
        {
          json_fail (error, "nodes", "entry %u must be an object", i);
          cleave_graph_free (g);
          return NULL;
        }
      if (!parse_node (g, json_node_get_object (e), (int) i, shapes_only, error))
        {
          cleave_graph_free (g);
          return NULL;
        }
    }
  g->shapes_only = shapes_only;
  if (!cleave_graph_finalize (g, error))
    {
      cleave_graph_free (g);
      return NULL;
    }
  g->shapes_only = FALSE;
  return g;
}

CleaveGraph *
cleave_graph_from_json (const char *json, GError **error)
{
  return graph_from_json (json, FALSE, error);
}

CleaveGraph *
cleave_graph_from_json_shapes (const char *json, GError **error)
{
  return graph_from_json (json, TRUE, error);
}
