/* cleave-onnx.c: protobuf decoding of ONNX models, and import into a CleaveGraph.
 *
 * The decoder reads only the onnx.proto fields a CNN needs and skips the rest.
 * A length is never trusted: every length-delimited field is checked against
 * the bytes left in its enclosing message before anything is read or
 * allocated, repeated fields grow only as bytes are consumed, and tensor
 * payloads are checked against their dims before conversion. */
#include "cleave-onnx.h"
#include "cleave-error.h"
#include "cleave-graph-private.h"
#include "cleave-ops.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define PB_MAX_DEPTH 16
/* Far above any CNN here, low enough that numel * 8 cannot overflow. */
#define ONNX_MAX_NUMEL ((gint64) 1 << 34)

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
  const guint8 *p;
  const guint8 *end;
  int depth;
  const char *file;
} PbReader;

static gboolean G_GNUC_PRINTF (4, 5)
pb_fail (GError **error, const char *file, const char *ctx, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s: %s", file, ctx, msg);
  return FALSE;
}

static gboolean
pb_varint (PbReader *r, guint64 *out, const char *ctx, GError **error)
{
  guint64 v = 0;

  *out = 0;
  for (int shift = 0; shift < 70; shift += 7)
    {
      if (r->p >= r->end)
        return pb_fail (error, r->file, ctx, "truncated varint");
      guint8 b = *r->p++;
      if (shift == 63 && (b & 0x7e))
        return pb_fail (error, r->file, ctx, "varint longer than 64 bits");
      v |= (guint64) (b & 0x7f) << shift;
      if (!(b & 0x80))
        {
          *out = v;
          return TRUE;
        }
    }
  return pb_fail (error, r->file, ctx, "varint longer than 10 bytes");
}

static gboolean
pb_tag (PbReader *r, guint *field, guint *wire, const char *ctx, GError **error)
{
  guint64 key = 0;

  *field = 0;
  *wire = 0;
  if (!pb_varint (r, &key, ctx, error))
    return FALSE;
  if ((key >> 3) == 0 || (key >> 3) > 536870911)
    return pb_fail (error, r->file, ctx, "invalid field number %" G_GUINT64_FORMAT, key >> 3);
  *field = key >> 3;
  *wire = key & 7;
  return TRUE;
}

static gboolean
pb_fixed (PbReader *r, int nbytes, guint64 *out, const char *ctx, GError **error)
{
  guint64 v = 0;

  *out = 0;
  if (r->end - r->p < nbytes)
    return pb_fail (error, r->file, ctx, "truncated %d-bit value", nbytes * 8);
  for (int k = 0; k < nbytes; k++)
    v |= (guint64) r->p[k] << (8 * k);
  r->p += nbytes;
  *out = v;
  return TRUE;
}

/* A length-delimited field: the sub-reader covers exactly its bytes. */
static gboolean
pb_len (PbReader *r, PbReader *sub, const char *ctx, GError **error)
{
  guint64 len = 0;

  if (!pb_varint (r, &len, ctx, error))
    return FALSE;
  if (len > (guint64) (r->end - r->p))
    return pb_fail (error, r->file, ctx, "length %" G_GUINT64_FORMAT " exceeds the %" G_GSIZE_FORMAT " remaining bytes",
                    len, (gsize) (r->end - r->p));
  if (r->depth + 1 > PB_MAX_DEPTH)
    return pb_fail (error, r->file, ctx, "messages nested deeper than %d", PB_MAX_DEPTH);
  sub->p = r->p;
  sub->end = r->p + len;
  sub->depth = r->depth + 1;
  sub->file = r->file;
  r->p += len;
  return TRUE;
}

static gboolean
pb_skip (PbReader *r, guint wire, const char *ctx, GError **error)
{
  guint64 v;
  PbReader sub;

  switch (wire)
    {
    case WT_VARINT: return pb_varint (r, &v, ctx, error);
    case WT_I64:    return pb_fixed (r, 8, &v, ctx, error);
    case WT_I32:    return pb_fixed (r, 4, &v, ctx, error);
    case WT_LEN:    return pb_len (r, &sub, ctx, error);
    default:
      return pb_fail (error, r->file, ctx, "unsupported wire type %u", wire);
    }
}

static gboolean
pb_expect (PbReader *r, guint field, guint wire, guint want, const char *ctx, GError **error)
{
  if (wire != want)
    return pb_fail (error, r->file, ctx, "field %u has wire type %u, expected %u", field, wire, want);
  return TRUE;
}

static gboolean
pb_string (PbReader *r, char **out, const char *ctx, GError **error)
{
  PbReader sub;

  if (!pb_len (r, &sub, ctx, error))
    return FALSE;
  g_free (*out);
  *out = g_strndup ((const char *) sub.p, sub.end - sub.p);
  return TRUE;
}

/* Repeated int64: packed (one LEN field) or one varint per element. */
static gboolean
pb_ints (PbReader *r, guint wire, GArray *arr, const char *ctx, GError **error)
{
  guint64 v;

  if (wire == WT_VARINT)
    {
      if (!pb_varint (r, &v, ctx, error))
        return FALSE;
      gint64 s = (gint64) v;
      g_array_append_val (arr, s);
      return TRUE;
    }
  if (wire != WT_LEN)
    return pb_fail (error, r->file, ctx, "repeated integer with wire type %u", wire);
  PbReader sub;
  if (!pb_len (r, &sub, ctx, error))
    return FALSE;
  while (sub.p < sub.end)
    {
      if (!pb_varint (&sub, &v, ctx, error))
        return FALSE;
      gint64 s = (gint64) v;
      g_array_append_val (arr, s);
    }
  return TRUE;
}

/* Repeated fixed-width values (float: 4 bytes, double: 8), packed or not; stored as raw bits. */
static gboolean
pb_fixeds (PbReader *r, guint wire, int nbytes, GArray *arr, const char *ctx, GError **error)
{
  guint64 v;
  guint want = nbytes == 4 ? WT_I32 : WT_I64;

  if (wire == want)
    {
      if (!pb_fixed (r, nbytes, &v, ctx, error))
        return FALSE;
      g_array_append_val (arr, v);
      return TRUE;
    }
  if (wire != WT_LEN)
    return pb_fail (error, r->file, ctx, "repeated %d-bit value with wire type %u", nbytes * 8, wire);
  PbReader sub;
  if (!pb_len (r, &sub, ctx, error))
    return FALSE;
  if ((sub.end - sub.p) % nbytes != 0)
    return pb_fail (error, r->file, ctx, "packed %d-bit array of %" G_GSIZE_FORMAT " bytes",
                    nbytes * 8, (gsize) (sub.end - sub.p));
  gsize n = (sub.end - sub.p) / nbytes;
  if (n == 0)
    return TRUE;
  g_array_set_size (arr, arr->len + n);
  guint64 *dst = &g_array_index (arr, guint64, arr->len - n);
  for (gsize k = 0; k < n; k++)
    pb_fixed (&sub, nbytes, &dst[k], ctx, NULL);
  return TRUE;
}

static float
bits_to_float (guint32 u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static double
bits_to_double (guint64 u)
{
  double d;
  memcpy (&d, &u, 8);
  return d;
}

static float
half_to_float (guint16 h)
{
  guint32 sign = (guint32) (h >> 15) << 31;
  int exp = (h >> 10) & 0x1f;
  guint32 mant = h & 0x3ff;
  guint32 u;

  if (exp == 0)
    {
      float f = ldexpf ((float) mant, -24);
      return sign ? -f : f;
    }
  if (exp == 31)
    u = sign | 0x7f800000u | (mant << 13);
  else
    u = sign | ((guint32) (exp - 15 + 127) << 23) | (mant << 13);
  return bits_to_float (u);
}

static int
dtype_size (int dt)
{
  switch (dt)
    {
    case CLEAVE_ONNX_FLOAT: case CLEAVE_ONNX_INT32: return 4;
    case CLEAVE_ONNX_DOUBLE: case CLEAVE_ONNX_INT64: return 8;
    case CLEAVE_ONNX_FLOAT16: return 2;
    case CLEAVE_ONNX_INT8: case CLEAVE_ONNX_UINT8: case CLEAVE_ONNX_BOOL: return 1;
    default: return 0;
    }
}

static char *
dims_to_string (const gint64 *dims, int ndim)
{
  GString *s = g_string_new ("[");
  for (int k = 0; k < ndim; k++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, k ? "," : "", dims[k]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

void
cleave_onnx_tensor_free (CleaveOnnxTensor *t)
{
  if (!t)
    return;
  g_free (t->name);
  g_free (t->f);
  g_free (t->i);
  g_free (t);
}

static CleaveOnnxTensor *
parse_tensor (PbReader *r, const char *ctx, GError **error)
{
  g_autoptr (GArray) dims = g_array_new (FALSE, FALSE, sizeof (gint64));
  g_autoptr (GArray) fdata = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) ddata = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) i32data = g_array_new (FALSE, FALSE, sizeof (gint64));
  g_autoptr (GArray) i64data = g_array_new (FALSE, FALSE, sizeof (gint64));
  const guint8 *raw = NULL;
  gsize raw_len = 0;
  gboolean has_raw = FALSE;
  guint64 v;
  int data_type = 0;
  gint64 location = 0;
  g_autofree char *name = NULL;

  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;

      if (!pb_tag (r, &field, &wire, ctx, error))
        return NULL;
      switch (field)
        {
        case 1:
          if (!pb_ints (r, wire, dims, ctx, error))
            return NULL;
          break;
        case 2:
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return NULL;
          data_type = (int) v;
          break;
        case 4:
          if (!pb_fixeds (r, wire, 4, fdata, ctx, error))
            return NULL;
          break;
        case 5:
          if (!pb_ints (r, wire, i32data, ctx, error))
            return NULL;
          break;
        case 7:
          if (!pb_ints (r, wire, i64data, ctx, error))
            return NULL;
          break;
        case 8:
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_string (r, &name, ctx, error))
            return NULL;
          break;
        case 9:
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error))
            return NULL;
          raw = sub.p;
          raw_len = sub.end - sub.p;
          has_raw = TRUE;
          break;
        case 10:
          if (!pb_fixeds (r, wire, 8, ddata, ctx, error))
            return NULL;
          break;
        case 14:
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return NULL;
          location = (gint64) v;
          break;
        default:
          if (!pb_skip (r, wire, ctx, error))
            return NULL;
        }
    }

  g_autofree char *where = name ? g_strdup_printf ("%s '%s'", ctx, name) : g_strdup (ctx);
  if (location != 0)
    return pb_fail (error, r->file, where, "external data is not supported (save the model with the weights inside)"), NULL;
  if (dims->len > CLEAVE_ONNX_MAX_DIMS)
    return pb_fail (error, r->file, where, "%u dims (at most %d supported)", dims->len, CLEAVE_ONNX_MAX_DIMS), NULL;

  gint64 numel = 1;
  for (guint k = 0; k < dims->len; k++)
    {
      gint64 d = g_array_index (dims, gint64, k);
      if (d < 0)
        return pb_fail (error, r->file, where, "dims[%u] is negative (%" G_GINT64_FORMAT ")", k, d), NULL;
      if (d > 0 && numel > ONNX_MAX_NUMEL / d)
        return pb_fail (error, r->file, where, "dims describe more than %" G_GINT64_FORMAT " elements", ONNX_MAX_NUMEL), NULL;
      numel *= d;
    }

  g_autofree char *dstr = dims_to_string ((const gint64 *) dims->data, dims->len);
  int esize = dtype_size (data_type);
  CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);
  /* unnamed like nodes and values: "" (the importer looks names up) */
  t->name = name ? g_steal_pointer (&name) : g_strdup ("");
  t->data_type = data_type;
  t->ndim = dims->len;
  if (dims->len)
    memcpy (t->dims, dims->data, dims->len * sizeof (gint64));
  t->numel = numel;

  if (esize == 0)
    {
      /* strings, complex...: kept without data; the importer rejects them if used */
      return t;
    }

  gboolean is_float = data_type == CLEAVE_ONNX_FLOAT || data_type == CLEAVE_ONNX_DOUBLE || data_type == CLEAVE_ONNX_FLOAT16;
  if (has_raw)
    {
      if ((gint64) raw_len / esize < numel || raw_len != (gsize) numel * esize)
        {
          pb_fail (error, r->file, where, "raw_data is %" G_GSIZE_FORMAT " bytes, dims %s need %" G_GINT64_FORMAT,
                   raw_len, dstr, numel * esize);
          cleave_onnx_tensor_free (t);
          return NULL;
        }
    }
  else
    {
      GArray *src; const char *fname;
      switch (data_type)
        {
        case CLEAVE_ONNX_FLOAT:  src = fdata; fname = "float_data"; break;
        case CLEAVE_ONNX_DOUBLE: src = ddata; fname = "double_data"; break;
        case CLEAVE_ONNX_INT64:  src = i64data; fname = "int64_data"; break;
        default:                 src = i32data; fname = "int32_data"; break;
        }
      if ((gint64) src->len != numel)
        {
          pb_fail (error, r->file, where, "%s has %u values, dims %s need %" G_GINT64_FORMAT,
                   fname, src->len, dstr, numel);
          cleave_onnx_tensor_free (t);
          return NULL;
        }
    }

  if (is_float)
    t->f = g_new (float, numel ? numel : 1);
  else
    t->i = g_new (gint64, numel ? numel : 1);

  for (gint64 k = 0; k < numel; k++)
    {
      if (has_raw)
        {
          const guint8 *q = raw + k * esize;
          guint64 u = 0;
          for (int b = 0; b < esize; b++)
            u |= (guint64) q[b] << (8 * b);
          switch (data_type)
            {
            case CLEAVE_ONNX_FLOAT:   t->f[k] = bits_to_float ((guint32) u); break;
            case CLEAVE_ONNX_DOUBLE:  t->f[k] = (float) bits_to_double (u); break;
            case CLEAVE_ONNX_FLOAT16: t->f[k] = half_to_float ((guint16) u); break;
            case CLEAVE_ONNX_INT64:   t->i[k] = (gint64) u; break;
            case CLEAVE_ONNX_INT32:   t->i[k] = (gint32) (guint32) u; break;
            case CLEAVE_ONNX_INT8:    t->i[k] = (gint8) (guint8) u; break;
            default:                  t->i[k] = (gint64) u; break;
            }
        }
      else
        {
          switch (data_type)
            {
            case CLEAVE_ONNX_FLOAT:   t->f[k] = bits_to_float ((guint32) g_array_index (fdata, guint64, k)); break;
            case CLEAVE_ONNX_DOUBLE:  t->f[k] = (float) bits_to_double (g_array_index (ddata, guint64, k)); break;
            case CLEAVE_ONNX_FLOAT16: t->f[k] = half_to_float ((guint16) g_array_index (i32data, gint64, k)); break;
            case CLEAVE_ONNX_INT64:   t->i[k] = g_array_index (i64data, gint64, k); break;
            default:                  t->i[k] = (gint32) g_array_index (i32data, gint64, k); break;
            }
        }
    }
  return t;
}

static void
attr_clear (CleaveOnnxAttr *a)
{
  g_free (a->name);
  g_free (a->s);
  cleave_onnx_tensor_free (a->t);
  g_free (a->floats);
  g_free (a->ints);
}

static gboolean
parse_attr (PbReader *r, CleaveOnnxAttr *a, const char *ctx, GError **error)
{
  g_autoptr (GArray) floats = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GArray) ints = g_array_new (FALSE, FALSE, sizeof (gint64));
  gboolean seen_f = FALSE, seen_i = FALSE, seen_s = FALSE, seen_g = FALSE, seen_strings = FALSE;
  guint64 v;

  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;

      if (!pb_tag (r, &field, &wire, ctx, error))
        return FALSE;
      switch (field)
        {
        case 1:
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_string (r, &a->name, ctx, error))
            return FALSE;
          break;
        case 20:
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return FALSE;
          a->type = (CleaveOnnxAttrType) (int) v;
          break;
        case 2:
          if (!pb_expect (r, field, wire, WT_I32, ctx, error) || !pb_fixed (r, 4, &v, ctx, error))
            return FALSE;
          a->f = bits_to_float ((guint32) v);
          seen_f = TRUE;
          break;
        case 3:
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return FALSE;
          a->i = (gint64) v;
          seen_i = TRUE;
          break;
        case 4:
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_string (r, &a->s, ctx, error))
            return FALSE;
          seen_s = TRUE;
          break;
        case 5:
          {
            if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error))
              return FALSE;
            g_autofree char *c2 = g_strdup_printf ("%s.t", ctx);
            CleaveOnnxTensor *t = parse_tensor (&sub, c2, error);
            if (!t)
              return FALSE;
            cleave_onnx_tensor_free (a->t);
            a->t = t;
          }
          break;
        case 6: case 11:
          /* subgraphs (If/Loop) are never supported: record that one was there */
          if (!pb_skip (r, wire, ctx, error))
            return FALSE;
          seen_g = TRUE;
          break;
        case 7:
          if (!pb_fixeds (r, wire, 4, floats, ctx, error))
            return FALSE;
          break;
        case 8:
          if (!pb_ints (r, wire, ints, ctx, error))
            return FALSE;
          break;
        case 9:
          if (!pb_skip (r, wire, ctx, error))
            return FALSE;
          seen_strings = TRUE;
          break;
        default:
          if (!pb_skip (r, wire, ctx, error))
            return FALSE;
        }
    }
  if (!a->name)
    a->name = g_strdup ("");
  if (floats->len > 0)
    {
      a->n_floats = floats->len;
      a->floats = g_new (float, floats->len);
      for (guint k = 0; k < floats->len; k++)
        a->floats[k] = bits_to_float ((guint32) g_array_index (floats, guint64, k));
    }
  if (ints->len > 0)
    {
      a->n_ints = ints->len;
      a->ints = (gint64 *) g_memdup2 (ints->data, ints->len * sizeof (gint64));
    }
  if (a->type == CLEAVE_ONNX_ATTR_UNDEFINED)
    {
      /* IR < 3 writers may leave the type out */
      if (seen_f) a->type = CLEAVE_ONNX_ATTR_FLOAT;
      else if (seen_i) a->type = CLEAVE_ONNX_ATTR_INT;
      else if (seen_s) a->type = CLEAVE_ONNX_ATTR_STRING;
      else if (a->t) a->type = CLEAVE_ONNX_ATTR_TENSOR;
      else if (seen_g) a->type = CLEAVE_ONNX_ATTR_GRAPH;
      else if (a->n_floats) a->type = CLEAVE_ONNX_ATTR_FLOATS;
      else if (a->n_ints) a->type = CLEAVE_ONNX_ATTR_INTS;
      else if (seen_strings) a->type = CLEAVE_ONNX_ATTR_STRINGS;
    }
  return TRUE;
}

static void
node_free (CleaveOnnxNode *n)
{
  if (!n)
    return;
  g_free (n->name);
  g_free (n->op_type);
  g_free (n->domain);
  for (int k = 0; k < n->n_inputs; k++)
    g_free (n->inputs[k]);
  g_free (n->inputs);
  for (int k = 0; k < n->n_outputs; k++)
    g_free (n->outputs[k]);
  g_free (n->outputs);
  for (int k = 0; k < n->n_attrs; k++)
    attr_clear (&n->attrs[k]);
  g_free (n->attrs);
  g_free (n);
}

static gboolean
parse_node (PbReader *r, CleaveOnnxNode *n, const char *ctx, GError **error)
{
  g_autoptr (GPtrArray) inputs = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) outputs = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) attrs = g_array_new (FALSE, TRUE, sizeof (CleaveOnnxAttr));
  gboolean ok = TRUE;

  while (ok && r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;
      char *s = NULL;

      if (!pb_tag (r, &field, &wire, ctx, error))
        {
          ok = FALSE;
          break;
        }
      switch (field)
        {
        case 1: case 2:
          ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_string (r, &s, ctx, error);
          if (ok)
            g_ptr_array_add (field == 1 ? inputs : outputs, s);
          break;
        case 3:
          ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_string (r, &n->name, ctx, error);
          break;
        case 4:
          ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_string (r, &n->op_type, ctx, error);
          break;
        case 7:
          ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_string (r, &n->domain, ctx, error);
          break;
        case 5:
          {
            CleaveOnnxAttr a = { 0 };
            g_autofree char *c2 = g_strdup_printf ("%s.attribute[%u]", ctx, attrs->len);
            ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_len (r, &sub, ctx, error);
            if (ok)
              ok = parse_attr (&sub, &a, c2, error);
            if (ok)
              g_array_append_val (attrs, a);
            else
              attr_clear (&a);
          }
          break;
        default:
          ok = pb_skip (r, wire, ctx, error);
        }
    }

  n->n_inputs = inputs->len;
  g_ptr_array_add (inputs, NULL);
  n->inputs = (char **) g_ptr_array_steal (inputs, NULL);
  n->n_outputs = outputs->len;
  g_ptr_array_add (outputs, NULL);
  n->outputs = (char **) g_ptr_array_steal (outputs, NULL);
  n->n_attrs = attrs->len;
  n->attrs = (CleaveOnnxAttr *) (void *) g_array_steal (attrs, NULL);
  if (!n->name) n->name = g_strdup ("");
  if (!n->op_type) n->op_type = g_strdup ("");
  if (!n->domain) n->domain = g_strdup ("");
  return ok;
}

static void
value_info_free (CleaveOnnxValueInfo *vi)
{
  if (!vi)
    return;
  g_free (vi->name);
  for (int k = 0; k < CLEAVE_ONNX_MAX_DIMS; k++)
    g_free (vi->dim_params[k]);
  g_free (vi);
}

static gboolean
parse_dim (PbReader *r, CleaveOnnxValueInfo *vi, const char *ctx, GError **error)
{
  int k = vi->ndim;
  guint64 v;

  if (k >= CLEAVE_ONNX_MAX_DIMS)
    return pb_fail (error, r->file, ctx, "more than %d dims", CLEAVE_ONNX_MAX_DIMS);
  vi->dims[k] = -1;
  vi->ndim++;
  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      if (!pb_tag (r, &field, &wire, ctx, error))
        return FALSE;
      if (field == 1)
        {
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return FALSE;
          vi->dims[k] = (gint64) v;
        }
      else if (field == 2)
        {
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_string (r, &vi->dim_params[k], ctx, error))
            return FALSE;
        }
      else if (!pb_skip (r, wire, ctx, error))
        return FALSE;
    }
  return TRUE;
}

/* TypeProto → Tensor → TensorShapeProto → Dimension, one level per call. */
static gboolean
parse_type (PbReader *r, CleaveOnnxValueInfo *vi, int level, const char *ctx, GError **error)
{
  guint64 v;

  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;

      if (!pb_tag (r, &field, &wire, ctx, error))
        return FALSE;
      if (level == 0 && field == 1)          /* TypeProto.tensor_type */
        {
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error)
              || !parse_type (&sub, vi, 1, ctx, error))
            return FALSE;
        }
      else if (level == 1 && field == 1)     /* Tensor.elem_type */
        {
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return FALSE;
          vi->elem_type = (int) v;
        }
      else if (level == 1 && field == 2)     /* Tensor.shape */
        {
          vi->ndim = 0;
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error)
              || !parse_type (&sub, vi, 2, ctx, error))
            return FALSE;
        }
      else if (level == 2 && field == 1)     /* TensorShapeProto.dim */
        {
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error)
              || !parse_dim (&sub, vi, ctx, error))
            return FALSE;
        }
      else if (!pb_skip (r, wire, ctx, error))
        return FALSE;
    }
  return TRUE;
}

static CleaveOnnxValueInfo *
parse_value_info (PbReader *r, const char *ctx, GError **error)
{
  CleaveOnnxValueInfo *vi = g_new0 (CleaveOnnxValueInfo, 1);

  vi->ndim = -1;
  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;
      gboolean ok;

      if (!pb_tag (r, &field, &wire, ctx, error))
        goto fail;
      if (field == 1)
        ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_string (r, &vi->name, ctx, error);
      else if (field == 2)
        ok = pb_expect (r, field, wire, WT_LEN, ctx, error) && pb_len (r, &sub, ctx, error)
             && parse_type (&sub, vi, 0, ctx, error);
      else
        ok = pb_skip (r, wire, ctx, error);
      if (!ok)
        goto fail;
    }
  if (!vi->name)
    vi->name = g_strdup ("");
  return vi;

fail:
  value_info_free (vi);
  return NULL;
}

static gboolean
parse_graph (PbReader *r, CleaveOnnxModel *m, GError **error)
{
  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      PbReader sub;
      g_autofree char *ctx = NULL;

      if (!pb_tag (r, &field, &wire, "graph", error))
        return FALSE;
      switch (field)
        {
        case 1:
          {
            ctx = g_strdup_printf ("graph.node[%u]", m->nodes->len);
            CleaveOnnxNode *n = g_new0 (CleaveOnnxNode, 1);
            if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error)
                || !parse_node (&sub, n, ctx, error))
              {
                node_free (n);
                return FALSE;
              }
            g_ptr_array_add (m->nodes, n);
          }
          break;
        case 2:
          if (!pb_expect (r, field, wire, WT_LEN, "graph.name", error) || !pb_string (r, &m->graph_name, "graph.name", error))
            return FALSE;
          break;
        case 5:
          {
            ctx = g_strdup_printf ("graph.initializer[%u]", m->initializers->len);
            if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error))
              return FALSE;
            CleaveOnnxTensor *t = parse_tensor (&sub, ctx, error);
            if (!t)
              return FALSE;
            g_ptr_array_add (m->initializers, t);
          }
          break;
        case 11: case 12:
          {
            GPtrArray *arr = field == 11 ? m->inputs : m->outputs;
            ctx = g_strdup_printf ("graph.%s[%u]", field == 11 ? "input" : "output", arr->len);
            if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_len (r, &sub, ctx, error))
              return FALSE;
            CleaveOnnxValueInfo *vi = parse_value_info (&sub, ctx, error);
            if (!vi)
              return FALSE;
            g_ptr_array_add (arr, vi);
          }
          break;
        default:
          if (!pb_skip (r, wire, "graph", error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
parse_opset (PbReader *r, CleaveOnnxModel *m, const char *ctx, GError **error)
{
  g_autofree char *domain = NULL;
  gint64 version = 0;
  guint64 v;

  while (r->p < r->end)
    {
      guint field = 0, wire = 0;
      if (!pb_tag (r, &field, &wire, ctx, error))
        return FALSE;
      if (field == 1)
        {
          if (!pb_expect (r, field, wire, WT_LEN, ctx, error) || !pb_string (r, &domain, ctx, error))
            return FALSE;
        }
      else if (field == 2)
        {
          if (!pb_expect (r, field, wire, WT_VARINT, ctx, error) || !pb_varint (r, &v, ctx, error))
            return FALSE;
          version = (gint64) v;
        }
      else if (!pb_skip (r, wire, ctx, error))
        return FALSE;
    }
  if (!domain || !*domain || g_str_equal (domain, "ai.onnx"))
    m->opset = version;
  return TRUE;
}

CleaveOnnxModel *
cleave_onnx_model_new (void)
{
  CleaveOnnxModel *m = g_new0 (CleaveOnnxModel, 1);

  m->nodes = g_ptr_array_new_with_free_func ((GDestroyNotify) node_free);
  m->initializers = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_onnx_tensor_free);
  m->inputs = g_ptr_array_new_with_free_func ((GDestroyNotify) value_info_free);
  m->outputs = g_ptr_array_new_with_free_func ((GDestroyNotify) value_info_free);
  return m;
}

void
cleave_onnx_model_free (CleaveOnnxModel *m)
{
  if (!m)
    return;
  g_free (m->producer_name);
  g_free (m->producer_version);
  g_free (m->graph_name);
  g_ptr_array_unref (m->nodes);
  g_ptr_array_unref (m->initializers);
  g_ptr_array_unref (m->inputs);
  g_ptr_array_unref (m->outputs);
  g_free (m);
}

CleaveOnnxModel *
cleave_onnx_model_parse (const guint8 *data, gsize size, const char *display_name, GError **error)
{
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_new ();
  PbReader r = { data, data + size, 0, display_name ? display_name : "model.onnx" };
  gboolean have_graph = FALSE;
  guint64 v;
  guint n_opsets = 0;

  if (size == 0)
    return pb_fail (error, r.file, "model", "file is empty"), NULL;
  while (r.p < r.end)
    {
      guint field = 0, wire = 0;
      PbReader sub;

      if (!pb_tag (&r, &field, &wire, "model", error))
        return NULL;
      switch (field)
        {
        case 1:
          if (!pb_expect (&r, field, wire, WT_VARINT, "model.ir_version", error) || !pb_varint (&r, &v, "model.ir_version", error))
            return NULL;
          m->ir_version = (gint64) v;
          break;
        case 2:
          if (!pb_expect (&r, field, wire, WT_LEN, "model.producer_name", error)
              || !pb_string (&r, &m->producer_name, "model.producer_name", error))
            return NULL;
          break;
        case 3:
          if (!pb_expect (&r, field, wire, WT_LEN, "model.producer_version", error)
              || !pb_string (&r, &m->producer_version, "model.producer_version", error))
            return NULL;
          break;
        case 7:
          if (!pb_expect (&r, field, wire, WT_LEN, "model.graph", error) || !pb_len (&r, &sub, "model.graph", error)
              || !parse_graph (&sub, m, error))
            return NULL;
          have_graph = TRUE;
          break;
        case 8:
          {
            g_autofree char *ctx = g_strdup_printf ("model.opset_import[%u]", n_opsets++);
            if (!pb_expect (&r, field, wire, WT_LEN, ctx, error) || !pb_len (&r, &sub, ctx, error)
                || !parse_opset (&sub, m, ctx, error))
              return NULL;
          }
          break;
        default:
          if (!pb_skip (&r, wire, "model", error))
            return NULL;
        }
    }
  if (!have_graph)
    return pb_fail (error, r.file, "model.graph", "missing (not an ONNX model?)"), NULL;
  return g_steal_pointer (&m);
}

CleaveOnnxModel *
cleave_onnx_model_load (const char *path, GError **error)
{
  g_autoptr (GMappedFile) mf = NULL;
  g_autofree char *base = g_path_get_basename (path);
  GError *local = NULL;

  mf = g_mapped_file_new (path, FALSE, &local);
  if (!mf)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: %s", path, local->message);
      g_error_free (local);
      return NULL;
    }
  return cleave_onnx_model_parse ((const guint8 *) g_mapped_file_get_contents (mf),
                                  g_mapped_file_get_length (mf), base, error);
}

const CleaveOnnxAttr *
cleave_onnx_node_find_attr (const CleaveOnnxNode *n, const char *name)
{
  for (int k = 0; k < n->n_attrs; k++)
    if (g_str_equal (n->attrs[k].name, name))
      return &n->attrs[k];
  return NULL;
}

/* ==== import: ONNX graph → CleaveGraph ====
 *
 * Nodes are interpreted in file order (ONNX requires topological order) into
 * a list of Cleave-level layers with host parameters and per-sample shapes.
 * Constants, small integer shape computations (Shape → Gather → Unsqueeze →
 * Concat → Reshape, as x.view(x.size(0), -1) exports) and per-channel affine
 * constants are evaluated on the way; only then is the CleaveGraph built, so
 * that folds (MatMul + Add → linear with bias, Mul/Add after a conv) can still
 * change a layer after it was created. */

#define SYM_BATCH G_MININT64

typedef struct {
  CleaveOpKind op;
  const CleaveOnnxNode *src;
  char *hint;                  /* module name from an initializer ("conv1"), or NULL */
  char *name;
  int inputs[CLEAVE_MAX_INPUTS];
  int n_inputs;
  int out_channels, kernel, stride, pad, groups, out_features;
  gboolean has_bias;
  gboolean ceil_mode, exclude_pad;   /* pools */
  float eps, momentum, p;
  float alpha, beta;           /* hardsigmoid */
  float clip_min, clip_max;    /* clip */
  int start;                   /* slice: first channel (out_channels channels) */
  float *weight, *bias, *rmean, *rvar;
  gsize n_weight;
  int ndim, c, h, w;           /* per-sample output shape (ONNX semantics): (c,h,w) or (c) */
  int cidx;                    /* index in the CleaveGraph */
} Layer;

/* V_SHUFFLE5: a layer's [N,C,H,W] output reshaped to [N,g,C/g,H,W];
 * V_SHUFFLE5T: that, with axes 1 and 2 transposed. Reshaped back to
 * [N,C,H,W] it is a channel shuffle; nothing else may read them. */
typedef enum { V_LAYER, V_CONST, V_AFFINE, V_SHUFFLE5, V_SHUFFLE5T } ValueKind;

typedef struct {
  ValueKind kind;
  int layer;
  gboolean direct;             /* the producing layer's own output, not an alias */
  int pad;                     /* V_LAYER: pending zero padding (Pad before a pool or conv) */
  int groups;                  /* V_SHUFFLE5, V_SHUFFLE5T: g */
  CleaveOnnxTensor *t;         /* V_CONST, owned */
  float *a, *b;                /* V_AFFINE: a·x + b per input channel */
  int norm_layer;              /* V_AFFINE: the layer made for a second normalisation, 0 until then */
} Value;

typedef struct {
  const CleaveOnnxModel *m;
  const char *file;
  GHashTable *values;          /* name → Value* (borrowed from all_values) */
  GPtrArray *all_values;
  GHashTable *uses;            /* name → number of consumers (graph outputs count) */
  GArray *layers;
  int in_c, in_h, in_w;
  gint64 in_batch;             /* -1 when symbolic */
  float *norm_a, *norm_b;
  gboolean softmax;
  GPtrArray *outputs;          /* the graph outputs read as the classification (names, borrowed) */
} Import;

static void
value_free (Value *v)
{
  cleave_onnx_tensor_free (v->t);
  g_free (v->a);
  g_free (v->b);
  g_free (v);
}

static CleaveOnnxTensor *
tensor_dup (const CleaveOnnxTensor *t)
{
  CleaveOnnxTensor *d = g_memdup2 (t, sizeof *t);
  gsize n = t->numel ? t->numel : 1;

  d->name = g_strdup (t->name);
  d->f = t->f ? g_memdup2 (t->f, n * sizeof (float)) : NULL;
  d->i = t->i ? g_memdup2 (t->i, n * sizeof (gint64)) : NULL;
  return d;
}

static gboolean G_GNUC_PRINTF (5, 6)
node_error (Import *imp, const CleaveOnnxNode *n, int code, GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CLEAVE_ERROR, code, "%s: node '%s' (%s): %s", imp->file, n->name, n->op_type, msg);
  return FALSE;
}

#define UNSUPPORTED(imp, n, error, ...) node_error (imp, n, CLEAVE_ERROR_UNSUPPORTED, error, __VA_ARGS__)
#define INVALID(imp, n, error, ...) node_error (imp, n, CLEAVE_ERROR_INVALID_FILE, error, __VA_ARGS__)

static Value *
value_new (Import *imp, ValueKind kind)
{
  Value *v = g_new0 (Value, 1);
  v->kind = kind;
  g_ptr_array_add (imp->all_values, v);
  return v;
}

static void
set_value (Import *imp, const char *name, Value *v)
{
  g_hash_table_insert (imp->values, (gpointer) name, v);
}

static Value *
layer_value (Import *imp, const char *name, int layer, gboolean direct)
{
  Value *v = value_new (imp, V_LAYER);
  v->layer = layer;
  v->direct = direct;
  set_value (imp, name, v);
  return v;
}

static Value *
const_value (Import *imp, const char *name, CleaveOnnxTensor *t)
{
  Value *v = value_new (imp, V_CONST);
  v->t = t;
  set_value (imp, name, v);
  return v;
}

static int
n_uses (Import *imp, const char *name)
{
  return GPOINTER_TO_INT (g_hash_table_lookup (imp->uses, name));
}

static Layer *
layer_at (Import *imp, int k)
{
  return &g_array_index (imp->layers, Layer, k);
}

static int
layer_add (Import *imp, CleaveOpKind op, const CleaveOnnxNode *src, const int *inputs, int n_inputs)
{
  Layer l = { 0 };

  l.op = op;
  l.src = src;
  l.n_inputs = n_inputs;
  for (int k = 0; k < n_inputs; k++)
    l.inputs[k] = inputs[k];
  l.cidx = -1;
  g_array_append_val (imp->layers, l);
  return imp->layers->len - 1;
}

static void
layer_clear (Layer *l)
{
  g_free (l->hint);
  g_free (l->name);
  g_free (l->weight);
  g_free (l->bias);
  g_free (l->rmean);
  g_free (l->rvar);
}

/* Input k of @n; NULL (no error) when it is an omitted optional input. */
static Value *
get_input (Import *imp, const CleaveOnnxNode *n, int k, gboolean required, GError **error)
{
  if (k >= n->n_inputs || !*n->inputs[k])
    {
      if (required)
        INVALID (imp, n, error, "input %d is missing", k);
      return NULL;
    }
  Value *v = g_hash_table_lookup (imp->values, n->inputs[k]);
  if (!v)
    INVALID (imp, n, error, "input '%s' is not produced by any earlier node or initializer", n->inputs[k]);
  return v;
}

/* The graph input under a second normalisation a·x + b (a composition of
 * module sets from differently normalised models): the input arrives
 * normalised by the first one, a1·x + b1, so this layer applies
 * (a/a1)·x' + b − a·b1/a1 per channel, as an eval-mode batchnorm with
 * statistics 0 and 1 − ε, ε = 2⁻¹⁷ (so that var + ε is exactly 1). */
static int
renormalize (Import *imp, const CleaveOnnxNode *n, Value *v, GError **error)
{
  const float eps = 1.f / 131072.f;
  int in0 = 0;

  if (v->norm_layer > 0)
    return v->norm_layer;
  for (int c = 0; c < imp->in_c; c++)
    if (imp->norm_a[c] == 0.f || !isfinite (v->a[c] / imp->norm_a[c]))
      {
        UNSUPPORTED (imp, n, error, "the graph input is used with two normalisations, one scaling channel %d by %g",
                     c, imp->norm_a[c]);
        return -1;
      }
  int l = layer_add (imp, CLEAVE_OP_BATCHNORM2D, n, &in0, 1);
  Layer *L = layer_at (imp, l);
  int ch = imp->in_c;
  L->out_channels = ch;
  L->eps = eps;
  L->momentum = 0.1f;
  L->n_weight = ch;
  L->weight = g_new (float, ch);
  L->bias = g_new (float, ch);
  L->rmean = g_new0 (float, ch);
  L->rvar = g_new (float, ch);
  for (int c = 0; c < ch; c++)
    {
      L->weight[c] = v->a[c] / imp->norm_a[c];
      L->bias[c] = v->b[c] - L->weight[c] * imp->norm_b[c];
      L->rvar[c] = 1.f - eps;
    }
  L->ndim = 3; L->c = ch; L->h = imp->in_h; L->w = imp->in_w;
  L->hint = g_strdup ("normalize");
  v->norm_layer = l;
  return l;
}

/* The layer a value is, materialising the input normalisation if it is the
 * (affinely transformed) graph input. */
static int
as_layer (Import *imp, const CleaveOnnxNode *n, Value *v, int k, GError **error)
{
  if (v->kind == V_LAYER && v->pad)
    {
      UNSUPPORTED (imp, n, error, "input %d ('%s') comes from a Pad, which is supported only before Conv and AveragePool",
                   k, n->inputs[k]);
      return -1;
    }
  if (v->kind == V_LAYER)
    return v->layer;
  if (v->kind == V_SHUFFLE5 || v->kind == V_SHUFFLE5T)
    {
      UNSUPPORTED (imp, n, error, "input %d ('%s') is a 5-d view [N,%d,C/%d,H,W] of a tensor; only a Transpose "
                   "of its axes 1 and 2 and a Reshape back to [N,C,H,W] (a channel shuffle) are supported on it",
                   k, n->inputs[k], v->groups, v->groups);
      return -1;
    }
  if (v->kind == V_CONST)
    {
      UNSUPPORTED (imp, n, error, "input %d ('%s') is a constant where Cleave needs a computed tensor", k, n->inputs[k]);
      return -1;
    }
  if (!imp->norm_a)
    {
      imp->norm_a = g_memdup2 (v->a, imp->in_c * sizeof (float));
      imp->norm_b = g_memdup2 (v->b, imp->in_c * sizeof (float));
    }
  else if (memcmp (imp->norm_a, v->a, imp->in_c * sizeof (float)) || memcmp (imp->norm_b, v->b, imp->in_c * sizeof (float)))
    return renormalize (imp, n, v, error);
  return 0;
}

static int
input_layer (Import *imp, const CleaveOnnxNode *n, int k, GError **error)
{
  Value *v = get_input (imp, n, k, TRUE, error);
  return v ? as_layer (imp, n, v, k, error) : -1;
}

/* Input 0 of a node that can absorb a preceding zero Pad into its own pads. */
static int
input_layer_padded (Import *imp, const CleaveOnnxNode *n, int *pad, GError **error)
{
  Value *v = get_input (imp, n, 0, TRUE, error);

  *pad = 0;
  if (!v)
    return -1;
  if (v->kind == V_LAYER && v->pad)
    {
      *pad = v->pad;
      return v->layer;
    }
  return as_layer (imp, n, v, 0, error);
}

static const CleaveOnnxTensor *
input_const (Import *imp, const CleaveOnnxNode *n, int k, gboolean required, gboolean want_float, GError **error)
{
  GError *local = NULL;
  Value *v = get_input (imp, n, k, required, &local);

  if (!v)
    {
      if (local)
        g_propagate_error (error, local);
      return NULL;
    }
  if (v->kind != V_CONST)
    {
      UNSUPPORTED (imp, n, error, "input %d ('%s') must be a constant (initializer) for Cleave", k, n->inputs[k]);
      return NULL;
    }
  if (want_float && !v->t->f)
    {
      INVALID (imp, n, error, "input %d ('%s') has data type %d, expected float", k, n->inputs[k], v->t->data_type);
      return NULL;
    }
  if (!want_float && !v->t->i)
    {
      INVALID (imp, n, error, "input %d ('%s') has data type %d, expected an integer type", k, n->inputs[k], v->t->data_type);
      return NULL;
    }
  return v->t;
}

/* Every attribute must be one this op's import understands. */
static gboolean
check_attrs (Import *imp, const CleaveOnnxNode *n, const char *const *known, GError **error)
{
  for (int k = 0; k < n->n_attrs; k++)
    if (!known || !g_strv_contains (known, n->attrs[k].name))
      return UNSUPPORTED (imp, n, error, "attribute '%s' is not supported", n->attrs[k].name);
  return TRUE;
}

static gboolean
attr_int (Import *imp, const CleaveOnnxNode *n, const char *name, gint64 def, gint64 *out, GError **error)
{
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, name);

  *out = def;
  if (!a)
    return TRUE;
  if (a->type != CLEAVE_ONNX_ATTR_INT)
    return INVALID (imp, n, error, "attribute '%s' has type %d, expected INT", name, a->type);
  *out = a->i;
  return TRUE;
}

static gboolean
attr_float (Import *imp, const CleaveOnnxNode *n, const char *name, float def, float *out, GError **error)
{
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, name);

  *out = def;
  if (!a)
    return TRUE;
  if (a->type != CLEAVE_ONNX_ATTR_FLOAT)
    return INVALID (imp, n, error, "attribute '%s' has type %d, expected FLOAT", name, a->type);
  *out = a->f;
  return TRUE;
}

/* An INTS attribute whose values must all be equal (square kernels,
 * symmetric pads): returns that value, or @def when absent. */
static gboolean
attr_uniform (Import *imp, const CleaveOnnxNode *n, const char *name, int want_len, gint64 def, gint64 *out, GError **error)
{
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, name);

  *out = def;
  if (!a)
    return TRUE;
  if (a->type != CLEAVE_ONNX_ATTR_INTS)
    return INVALID (imp, n, error, "attribute '%s' has type %d, expected INTS", name, a->type);
  if (a->n_ints != want_len)
    return UNSUPPORTED (imp, n, error, "attribute '%s' has %d values (only 2-D, %d values, supported)", name, a->n_ints, want_len);
  for (int k = 1; k < a->n_ints; k++)
    if (a->ints[k] != a->ints[0])
      {
        g_autofree char *s = dims_to_string (a->ints, a->n_ints);
        return UNSUPPORTED (imp, n, error, "attribute '%s' = %s is not supported (Cleave needs equal values)", name, s);
      }
  if (a->ints[0] < 0 || a->ints[0] > 1 << 20)
    return INVALID (imp, n, error, "attribute '%s' has value %" G_GINT64_FORMAT, name, a->ints[0]);
  *out = a->ints[0];
  return TRUE;
}

static gboolean
check_auto_pad (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, "auto_pad");

  if (a && a->s && !g_str_equal (a->s, "NOTSET") && !g_str_equal (a->s, "VALID"))
    return UNSUPPORTED (imp, n, error, "attribute 'auto_pad' = %s is not supported (use explicit pads)", a->s);
  return TRUE;
}

static gboolean
check_unused_outputs (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  for (int k = 1; k < n->n_outputs; k++)
    if (*n->outputs[k] && n_uses (imp, n->outputs[k]) > 0)
      return UNSUPPORTED (imp, n, error, "output %d ('%s') is used; only the first output is supported", k, n->outputs[k]);
  return TRUE;
}

static gboolean
need_spatial (Import *imp, const CleaveOnnxNode *n, int l, GError **error)
{
  if (l >= 0 && layer_at (imp, l)->ndim != 3)
    return INVALID (imp, n, error, "input is a flat [N,F] tensor, expected [N,C,H,W]");
  return l >= 0;
}

static gboolean
need_flat (Import *imp, const CleaveOnnxNode *n, int l, GError **error)
{
  if (l >= 0 && layer_at (imp, l)->ndim != 1)
    return UNSUPPORTED (imp, n, error, "input is a [N,C,H,W] tensor, expected [N,F] (add a Flatten)");
  return l >= 0;
}

/* Per-channel values of a constant broadcast against [N,C,H,W] (ndim 3) or
 * [N,F] (ndim 1): scalars, [C,1,1], [1,C,1,1], [F], [1,F]. */
static gboolean
per_channel (const CleaveOnnxTensor *t, int layer_ndim, int c, float *out)
{
  if (!t->f)
    return FALSE;
  if (t->numel == 1)
    {
      for (int k = 0; k < c; k++)
        out[k] = t->f[0];
      return TRUE;
    }
  if ((gsize) c != t->numel)
    return FALSE;
  int trailing = layer_ndim == 3 ? 2 : 0;   /* the 1s after the channel axis */
  if (t->ndim < 1 + trailing || t->ndim > layer_ndim + 1)
    return FALSE;
  for (int k = 0; k < t->ndim; k++)
    {
      int from_end = t->ndim - 1 - k;
      if (from_end == trailing ? t->dims[k] != c : t->dims[k] != 1)
        return FALSE;
    }
  memcpy (out, t->f, c * sizeof (float));
  return TRUE;
}

/* y = s·x + t per channel applied to a layer's output, folded into its
 * parameters (conv, linear, batchnorm). */
static gboolean
fold_affine (Import *imp, const CleaveOnnxNode *n, Layer *l, const float *s, const float *t, GError **error)
{
  int ch = l->op == CLEAVE_OP_LINEAR ? l->out_features : l->out_channels;

  if (l->op == CLEAVE_OP_BATCHNORM2D)
    {
      for (int o = 0; o < ch; o++)
        {
          l->weight[o] *= s[o];
          l->bias[o] = s[o] * l->bias[o] + t[o];
        }
      return TRUE;
    }
  if (l->op != CLEAVE_OP_CONV2D && l->op != CLEAVE_OP_LINEAR)
    return UNSUPPORTED (imp, n, error, "an elementwise constant after a %s layer cannot be represented in Cleave",
                        cleave_op_kind_to_string (l->op));
  gsize per = l->n_weight / ch;
  gboolean any_t = FALSE;
  for (int o = 0; o < ch; o++)
    any_t |= t[o] != 0.f;
  if (!l->has_bias && any_t)
    {
      l->has_bias = TRUE;
      l->bias = g_new0 (float, ch);
    }
  for (int o = 0; o < ch; o++)
    {
      for (gsize k = 0; k < per; k++)
        l->weight[o * per + k] *= s[o];
      if (l->has_bias)
        l->bias[o] = s[o] * l->bias[o] + t[o];
    }
  return TRUE;
}

static const char *const *
known_attrs (const char *op)
{
  static const char *const conv[] = { "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides", NULL };
  static const char *const bn[] = { "epsilon", "momentum", "training_mode", "spatial", NULL };
  static const char *const maxpool[] = { "auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides", NULL };
  static const char *const avgpool[] = { "auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides", NULL };
  static const char *const gemm[] = { "alpha", "beta", "transA", "transB", NULL };
  static const char *const axis[] = { "axis", NULL };
  static const char *const reshape[] = { "allowzero", NULL };
  static const char *const dropout[] = { "ratio", "seed", "is_test", NULL };
  static const char *const constant[] = { "value", "value_float", "value_floats", "value_int", "value_ints", NULL };
  static const char *const unsqueeze[] = { "axes", NULL };
  static const char *const reduce[] = { "axes", "keepdims", NULL };
  static const char *const pad[] = { "mode", "pads", "value", NULL };
  static const char *const clip[] = { "min", "max", NULL };
  static const char *const hardsigmoid[] = { "alpha", "beta", NULL };
  static const char *const split[] = { "axis", "split", NULL };
  static const char *const slice[] = { "starts", "ends", "axes", NULL };
  static const char *const transpose[] = { "perm", NULL };
  static const char *const cast[] = { "to", "saturate", NULL };
  static const char *const none[] = { NULL };
  static const struct { const char *op; const char *const *attrs; } table[] = {
    { "Conv", conv }, { "BatchNormalization", bn }, { "MaxPool", maxpool }, { "AveragePool", avgpool },
    { "Gemm", gemm }, { "Flatten", axis }, { "Concat", axis }, { "Softmax", axis }, { "Gather", axis },
    { "Reshape", reshape }, { "Dropout", dropout }, { "Constant", constant }, { "Unsqueeze", unsqueeze },
    { "ReduceMean", reduce }, { "Pad", pad }, { "Clip", clip }, { "HardSigmoid", hardsigmoid },
    { "Split", split }, { "Slice", slice }, { "Transpose", transpose }, { "Cast", cast },
  };
  for (gsize k = 0; k < G_N_ELEMENTS (table); k++)
    if (g_str_equal (table[k].op, op))
      return table[k].attrs;
  return none;
}

static gboolean
conv_out (int in, int k, int s, int p, int *out)
{
  if (s <= 0 || in + 2 * p < k)
    return FALSE;
  *out = (in + 2 * p - k) / s + 1;
  return TRUE;
}

/* A conv's square kernel k and padding p. A kh×kw kernel with padding
 * (ph, pw) (Inception's 1×7 and 7×1) is embedded in the middle of a k×k one,
 * k = max(kh, kw), the other rows or columns zero, where one padding p then
 * reads the same input cells: p = ph + (k − kh)/2 = pw + (k − kw)/2. It
 * gives the same outputs for k/max(1, min(kh, kw)) times the multiply-adds;
 * *square is that weight (NULL when the kernel is square already). */
static gboolean
conv_window (Import *imp, const CleaveOnnxNode *n, const CleaveOnnxTensor *w, gint64 *k, gint64 *p, float **square,
             GError **error)
{
  const CleaveOnnxAttr *pads = cleave_onnx_node_find_attr (n, "pads");
  const CleaveOnnxAttr *ks = cleave_onnx_node_find_attr (n, "kernel_shape");
  gint64 kh = w->dims[2], kw = w->dims[3], ph = 0, pw = 0;

  *square = NULL;
  if (ks && (ks->type != CLEAVE_ONNX_ATTR_INTS || ks->n_ints != 2 || ks->ints[0] != kh || ks->ints[1] != kw))
    return INVALID (imp, n, error, "attribute 'kernel_shape' does not match the weight's dims");
  if (kh == kw)
    {
      *k = kh;
      return attr_uniform (imp, n, "pads", 4, 0, p, error);
    }
  if (pads && (pads->type != CLEAVE_ONNX_ATTR_INTS || pads->n_ints != 4))
    return INVALID (imp, n, error, "attribute 'pads' is not 4 integers");
  if (pads)
    ph = pads->ints[0], pw = pads->ints[1];
  *k = MAX (kh, kw);
  *p = ph + (*k - kh) / 2;
  if (kh < 1 || kw < 1 || *k > 64 || ph < 0 || pw < 0 || ph > 64 || pw > 64
      || (pads && (pads->ints[2] != ph || pads->ints[3] != pw)) || (*k - kh) % 2 || (*k - kw) % 2
      || pw + (*k - kw) / 2 != *p)
    {
      g_autofree char *d = pads ? dims_to_string (pads->ints, 4) : g_strdup ("[0,0,0,0]");
      return UNSUPPORTED (imp, n, error, "a %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " kernel with attribute 'pads' = %s "
                          "is not supported (Cleave's kernels are square: a rectangular one needs the same padding "
                          "once centred in a square)", kh, kw, d);
    }
  gsize planes = (gsize) w->dims[0] * w->dims[1];
  gint64 r0 = (*k - kh) / 2, c0 = (*k - kw) / 2;
  *square = g_new0 (float, planes * *k * *k);
  for (gsize q = 0; q < planes; q++)
    for (gint64 r = 0; r < kh; r++)
      memcpy (*square + (q * *k + r0 + r) * *k + c0, w->f + (q * kh + r) * kw, kw * sizeof (float));
  return TRUE;
}

static gboolean
import_conv (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 group, k = 0, s, p = 0, dil;
  int extra_pad;
  int x = input_layer_padded (imp, n, &extra_pad, error);

  if (!need_spatial (imp, n, x, error))
    return FALSE;
  const CleaveOnnxTensor *w = input_const (imp, n, 1, TRUE, TRUE, error);
  if (!w)
    return FALSE;
  GError *local = NULL;
  const CleaveOnnxTensor *b = input_const (imp, n, 2, FALSE, TRUE, &local);
  if (local)
    return g_propagate_error (error, local), FALSE;
  g_autofree float *square = NULL;
  if (!check_auto_pad (imp, n, error)
      || !attr_int (imp, n, "group", 1, &group, error)
      || !attr_uniform (imp, n, "dilations", 2, 1, &dil, error)
      || !attr_uniform (imp, n, "strides", 2, 1, &s, error))
    return FALSE;
  if (dil != 1)
    return UNSUPPORTED (imp, n, error, "attribute 'dilations' = %" G_GINT64_FORMAT " is not supported (only 1)", dil);
  if (w->ndim != 4)
    {
      g_autofree char *d = dims_to_string (w->dims, w->ndim);
      return UNSUPPORTED (imp, n, error, "weight '%s' has dims %s (Cleave needs [O,I/g,kh,kw])", n->inputs[1], d);
    }
  if (!conv_window (imp, n, w, &k, &p, &square, error))
    return FALSE;
  p += extra_pad;
  Layer *in = layer_at (imp, x);
  gint64 o = w->dims[0];
  if (group < 1 || in->c % group != 0 || o % group != 0 || w->dims[1] * group != in->c)
    return INVALID (imp, n, error, "weight '%s' [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",..] with group %" G_GINT64_FORMAT
                    " does not fit an input of %d channels", n->inputs[1], o, w->dims[1], group, in->c);
  if (b && b->numel != (gsize) o)
    return INVALID (imp, n, error, "bias '%s' has %" G_GSIZE_FORMAT " values, expected %" G_GINT64_FORMAT, n->inputs[2], b->numel, o);
  int oh, ow;
  if (!conv_out (in->h, k, s, p, &oh) || !conv_out (in->w, k, s, p, &ow))
    return INVALID (imp, n, error, "kernel %" G_GINT64_FORMAT " does not fit the %dx%d input", k, in->h, in->w);

  int l = layer_add (imp, CLEAVE_OP_CONV2D, n, &x, 1);
  Layer *L = layer_at (imp, l);
  L->out_channels = o;
  L->kernel = k;
  L->stride = s;
  L->pad = p;
  L->groups = group;
  L->n_weight = square ? (gsize) o * w->dims[1] * k * k : w->numel;
  L->weight = square ? g_steal_pointer (&square) : g_memdup2 (w->f, w->numel * sizeof (float));
  L->has_bias = b != NULL;
  L->bias = b ? g_memdup2 (b->f, o * sizeof (float)) : NULL;
  L->ndim = 3; L->c = o; L->h = oh; L->w = ow;
  if (g_str_has_suffix (n->inputs[1], ".weight"))
    L->hint = g_strndup (n->inputs[1], strlen (n->inputs[1]) - 7);
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}

static gboolean
import_bn (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 training, spatial;
  float eps, momentum;
  int x = input_layer (imp, n, 0, error);
  const CleaveOnnxTensor *t[4];

  if (!need_spatial (imp, n, x, error))
    return FALSE;
  int c = layer_at (imp, x)->c;
  for (int k = 0; k < 4; k++)
    {
      t[k] = input_const (imp, n, k + 1, TRUE, TRUE, error);
      if (!t[k])
        return FALSE;
      if (t[k]->numel != (gsize) c)
        return INVALID (imp, n, error, "input '%s' has %" G_GSIZE_FORMAT " values, expected %d", n->inputs[k + 1], t[k]->numel, c);
    }
  if (!attr_float (imp, n, "epsilon", 1e-5f, &eps, error)
      || !attr_float (imp, n, "momentum", 0.9f, &momentum, error)
      || !attr_int (imp, n, "training_mode", 0, &training, error)
      || !attr_int (imp, n, "spatial", 1, &spatial, error)
      || !check_unused_outputs (imp, n, error))
    return FALSE;
  /* The ranges a stored Cleave graph accepts; eps ≤ 0 or inf would divide by
   * zero or zero the layer's output. */
  if (!(eps >= 1e-12f && eps <= 1.f))
    return INVALID (imp, n, error, "attribute 'epsilon' = %g is outside [1e-12, 1]", (double) eps);
  if (!(momentum >= 0.f && momentum <= 1.f))
    return INVALID (imp, n, error, "attribute 'momentum' = %g is outside [0, 1]", (double) momentum);
  if (training != 0)
    return UNSUPPORTED (imp, n, error, "attribute 'training_mode' = 1 is not supported");
  if (spatial != 1)
    return UNSUPPORTED (imp, n, error, "attribute 'spatial' = 0 is not supported");

  int l = layer_add (imp, CLEAVE_OP_BATCHNORM2D, n, &x, 1);
  Layer *L = layer_at (imp, l), *in = layer_at (imp, x);
  L->out_channels = c;
  L->eps = eps;
  L->momentum = 1.f - momentum;   /* ONNX keeps the old value's weight, PyTorch the new one's */
  L->n_weight = c;
  L->weight = g_memdup2 (t[0]->f, c * sizeof (float));
  L->bias = g_memdup2 (t[1]->f, c * sizeof (float));
  L->rmean = g_memdup2 (t[2]->f, c * sizeof (float));
  L->rvar = g_memdup2 (t[3]->f, c * sizeof (float));
  L->ndim = 3; L->c = c; L->h = in->h; L->w = in->w;
  if (g_str_has_suffix (n->inputs[1], ".weight"))
    L->hint = g_strndup (n->inputs[1], strlen (n->inputs[1]) - 7);
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}

static gboolean
import_pool (Import *imp, const CleaveOnnxNode *n, gboolean is_max, GError **error)
{
  gint64 k, s, p, ceil_mode, dil = 1, storage = 0, include_pad = 0;
  int extra_pad = 0;
  int x = is_max ? input_layer (imp, n, 0, error) : input_layer_padded (imp, n, &extra_pad, error);

  if (!need_spatial (imp, n, x, error))
    return FALSE;
  if (!check_auto_pad (imp, n, error)
      || !attr_uniform (imp, n, "kernel_shape", 2, -1, &k, error)
      || !attr_uniform (imp, n, "pads", 4, 0, &p, error)
      || !attr_int (imp, n, "ceil_mode", 0, &ceil_mode, error)
      || !check_unused_outputs (imp, n, error))
    return FALSE;
  if (k < 1)
    return INVALID (imp, n, error, "attribute 'kernel_shape' is missing");
  if (!attr_uniform (imp, n, "strides", 2, 1, &s, error))
    return FALSE;
  if (is_max && (!attr_uniform (imp, n, "dilations", 2, 1, &dil, error)
                 || !attr_int (imp, n, "storage_order", 0, &storage, error)))
    return FALSE;
  if (!is_max && !attr_int (imp, n, "count_include_pad", 0, &include_pad, error))
    return FALSE;
  if (dil != 1)
    return UNSUPPORTED (imp, n, error, "attribute 'dilations' = %" G_GINT64_FORMAT " is not supported (only 1)", dil);
  /* The zeros of a Pad node are input cells, counted by any average pool:
   * they merge with the pool's own pads only where those are counted too. */
  gboolean exclude = !is_max && p > 0 && !include_pad;
  if (exclude && extra_pad > 0)
    return UNSUPPORTED (imp, n, error, "attribute 'count_include_pad' = 0 after a Pad node is not supported");
  p += extra_pad;
  if (2 * p > k)
    return INVALID (imp, n, error, "pads %" G_GINT64_FORMAT " exceed half the kernel %" G_GINT64_FORMAT, p, k);

  Layer *in = layer_at (imp, x);
  if (in->h + 2 * p < k || in->w + 2 * p < k || s < 1)
    return INVALID (imp, n, error, "kernel %" G_GINT64_FORMAT " does not fit the %dx%d input", k, in->h, in->w);
  int oh = cleave_pool_out_size (in->h, k, s, p, ceil_mode != 0);
  int ow = cleave_pool_out_size (in->w, k, s, p, ceil_mode != 0);
  int c = in->c;
  int l = layer_add (imp, is_max ? CLEAVE_OP_MAXPOOL2D : CLEAVE_OP_AVGPOOL2D, n, &x, 1);
  Layer *L = layer_at (imp, l);
  L->kernel = k;
  L->stride = s;
  L->pad = p;
  L->ceil_mode = ceil_mode != 0;
  L->exclude_pad = exclude;
  L->ndim = 3; L->c = c; L->h = oh; L->w = ow;
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}

static int
add_simple (Import *imp, const CleaveOnnxNode *n, CleaveOpKind op, int x)
{
  Layer in = *layer_at (imp, x);
  int l = layer_add (imp, op, n, &x, 1);
  Layer *L = layer_at (imp, l);

  L->ndim = in.ndim; L->c = in.c; L->h = in.h; L->w = in.w;
  layer_value (imp, n->outputs[0], l, TRUE);
  return l;
}

static void
add_gap (Import *imp, const CleaveOnnxNode *n, int x, gboolean keepdims)
{
  int l = add_simple (imp, n, CLEAVE_OP_GLOBAL_AVGPOOL, x);
  Layer *L = layer_at (imp, l);

  L->h = L->w = 1;
  if (!keepdims)
    {
      int f = layer_add (imp, CLEAVE_OP_FLATTEN, n, &l, 1);
      L = layer_at (imp, f);
      L->ndim = 1;
      L->c = layer_at (imp, l)->c;
      layer_value (imp, n->outputs[0], f, TRUE);
    }
}

static void
add_flatten (Import *imp, const CleaveOnnxNode *n, int x)
{
  Layer *in = layer_at (imp, x);

  if (in->ndim == 1)
    {
      layer_value (imp, n->outputs[0], x, FALSE);
      return;
    }
  int f = in->c * in->h * in->w;
  int l = layer_add (imp, CLEAVE_OP_FLATTEN, n, &x, 1);
  Layer *L = layer_at (imp, l);
  L->ndim = 1;
  L->c = f;
  layer_value (imp, n->outputs[0], l, TRUE);
}

static gboolean
import_linear (Import *imp, const CleaveOnnxNode *n, gboolean gemm, GError **error)
{
  gint64 trans_a = 0, trans_b = 0;
  float alpha = 1.f, beta = 1.f;
  int x = input_layer (imp, n, 0, error);

  if (!need_flat (imp, n, x, error))
    return FALSE;
  const CleaveOnnxTensor *w = input_const (imp, n, 1, TRUE, TRUE, error);
  if (!w)
    return FALSE;
  const CleaveOnnxTensor *c = NULL;
  if (gemm)
    {
      GError *local = NULL;
      c = input_const (imp, n, 2, FALSE, TRUE, &local);
      if (local)
        return g_propagate_error (error, local), FALSE;
      if (!attr_int (imp, n, "transA", 0, &trans_a, error) || !attr_int (imp, n, "transB", 0, &trans_b, error)
          || !attr_float (imp, n, "alpha", 1.f, &alpha, error) || !attr_float (imp, n, "beta", 1.f, &beta, error))
        return FALSE;
      if (trans_a)
        return UNSUPPORTED (imp, n, error, "attribute 'transA' = 1 is not supported");
    }
  if (w->ndim != 2)
    return UNSUPPORTED (imp, n, error, "weight '%s' has %d dims, expected 2", n->inputs[1], w->ndim);
  int in_f = layer_at (imp, x)->c;
  gint64 out_f = trans_b ? w->dims[0] : w->dims[1];
  gint64 w_in = trans_b ? w->dims[1] : w->dims[0];
  if (w_in != in_f)
    return INVALID (imp, n, error, "weight '%s' expects %" G_GINT64_FORMAT " input features, the input has %d",
                    n->inputs[1], w_in, in_f);
  float *bias = NULL;
  if (c)
    {
      bias = g_new (float, out_f);
      if (!per_channel (c, 1, out_f, bias))
        {
          g_free (bias);
          g_autofree char *d = dims_to_string (c->dims, c->ndim);
          return UNSUPPORTED (imp, n, error, "bias '%s' with dims %s does not broadcast per output feature", n->inputs[2], d);
        }
      for (gint64 o = 0; o < out_f; o++)
        bias[o] *= beta;
    }

  int l = layer_add (imp, CLEAVE_OP_LINEAR, n, &x, 1);
  Layer *L = layer_at (imp, l);
  L->out_features = out_f;
  L->n_weight = out_f * in_f;
  L->weight = g_new (float, L->n_weight);
  for (gint64 o = 0; o < out_f; o++)
    for (int i = 0; i < in_f; i++)
      L->weight[o * in_f + i] = alpha * (trans_b ? w->f[o * in_f + i] : w->f[i * out_f + o]);
  L->has_bias = bias != NULL;
  L->bias = bias;
  L->ndim = 1;
  L->c = out_f;
  if (g_str_has_suffix (n->inputs[1], ".weight"))
    L->hint = g_strndup (n->inputs[1], strlen (n->inputs[1]) - 7);
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}

static gboolean
import_concat (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 axis;
  Value *v[CLEAVE_MAX_INPUTS];
  int n_const = 0;

  if (!attr_int (imp, n, "axis", 0, &axis, error))
    return FALSE;
  if (n->n_inputs < 1 || n->n_inputs > CLEAVE_MAX_INPUTS)
    return UNSUPPORTED (imp, n, error, "%d inputs (1 to %d supported)", n->n_inputs, CLEAVE_MAX_INPUTS);
  for (int k = 0; k < n->n_inputs; k++)
    {
      if (!(v[k] = get_input (imp, n, k, TRUE, error)))
        return FALSE;
      n_const += v[k]->kind == V_CONST;
    }
  if (n_const == n->n_inputs)
    {
      /* shape arithmetic: concatenate 1-D integer vectors */
      g_autoptr (GArray) out = g_array_new (FALSE, FALSE, sizeof (gint64));
      for (int k = 0; k < n->n_inputs; k++)
        {
          if (v[k]->t->ndim != 1 || !v[k]->t->i)
            return UNSUPPORTED (imp, n, error, "constant concatenation of non-integer or multi-dimensional tensors");
          g_array_append_vals (out, v[k]->t->i, v[k]->t->numel);
        }
      CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);
      t->data_type = CLEAVE_ONNX_INT64;
      t->ndim = 1;
      t->dims[0] = t->numel = out->len;
      t->i = g_new (gint64, MAX (out->len, 1));
      if (out->len)
        memcpy (t->i, out->data, out->len * sizeof (gint64));
      const_value (imp, n->outputs[0], t);
      return TRUE;
    }

  int ins[CLEAVE_MAX_INPUTS] = { 0 };
  int c = 0;
  for (int k = 0; k < n->n_inputs; k++)
    {
      if ((ins[k] = as_layer (imp, n, v[k], k, error)) < 0)
        return FALSE;
      Layer *a = layer_at (imp, ins[k]), *a0 = layer_at (imp, ins[0]);
      if (a->ndim != a0->ndim || (a->ndim == 3 && (a->h != a0->h || a->w != a0->w)))
        return INVALID (imp, n, error, "input %d has a shape that cannot be concatenated with input 0", k);
      c += a->c;
    }
  int nd = layer_at (imp, ins[0])->ndim + 1;
  if (axis != 1 && axis != 1 - nd)
    return UNSUPPORTED (imp, n, error, "attribute 'axis' = %" G_GINT64_FORMAT " is not supported (only the channel axis 1)", axis);
  Layer in0 = *layer_at (imp, ins[0]);
  int l = layer_add (imp, CLEAVE_OP_CONCAT, n, ins, n->n_inputs);
  Layer *L = layer_at (imp, l);
  L->ndim = in0.ndim; L->c = c; L->h = in0.h; L->w = in0.w;
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}

/* Add/Sub/Mul/Div where at least one side is a constant: fold into the
 * input normalisation or into the producing layer's parameters. */
static gboolean
import_arith_const (Import *imp, const CleaveOnnxNode *n, Value *x, int xi, const CleaveOnnxTensor *c, GError **error)
{
  const char *op = n->op_type;
  gboolean x_first = xi == 0;
  int ch, lnd;

  if (!c->f)
    return UNSUPPORTED (imp, n, error, "integer constant operand '%s'", n->inputs[1 - xi]);
  if (x->kind == V_AFFINE)
    {
      ch = imp->in_c;
      lnd = 3;
    }
  else
    {
      Layer *l = layer_at (imp, x->layer);
      ch = l->c;
      lnd = l->ndim;
    }
  g_autofree float *cv = g_new (float, ch);
  g_autofree float *s = g_new (float, ch);
  g_autofree float *t = g_new (float, ch);
  if (!per_channel (c, lnd, ch, cv))
    {
      g_autofree char *d = dims_to_string (c->dims, c->ndim);
      return UNSUPPORTED (imp, n, error, "constant '%s' with dims %s is not a per-channel value", n->inputs[1 - xi], d);
    }
  for (int k = 0; k < ch; k++)
    {
      if (g_str_equal (op, "Add"))
        s[k] = 1.f, t[k] = cv[k];
      else if (g_str_equal (op, "Sub"))
        s[k] = x_first ? 1.f : -1.f, t[k] = x_first ? -cv[k] : cv[k];
      else if (g_str_equal (op, "Mul"))
        s[k] = cv[k], t[k] = 0.f;
      else if (x_first && cv[k] != 0.f)
        s[k] = 1.f / cv[k], t[k] = 0.f;
      else
        return UNSUPPORTED (imp, n, error, "division %s a constant with a zero or variable divisor", x_first ? "by" : "of");
    }

  if (x->kind == V_AFFINE)
    {
      Value *v = value_new (imp, V_AFFINE);
      v->a = g_new (float, ch);
      v->b = g_new (float, ch);
      for (int k = 0; k < ch; k++)
        {
          v->a[k] = s[k] * x->a[k];
          v->b[k] = s[k] * x->b[k] + t[k];
        }
      set_value (imp, n->outputs[0], v);
      return TRUE;
    }
  const char *xname = n->inputs[xi];
  Layer *l = layer_at (imp, x->layer);
  gboolean foldable = l->op == CLEAVE_OP_CONV2D || l->op == CLEAVE_OP_LINEAR || l->op == CLEAVE_OP_BATCHNORM2D;
  if (c->numel == 1 && x->layer != 0 && (!foldable || !x->direct || n_uses (imp, xname) != 1))
    {
      /* a scalar affine that no layer absorbs (a min-max normalised score) */
      int k = add_simple (imp, n, CLEAVE_OP_CLIP, x->layer);
      Layer *K = layer_at (imp, k);
      K->alpha = s[0];
      K->beta = t[0];
      K->clip_min = -G_MAXFLOAT;
      K->clip_max = G_MAXFLOAT;
      return TRUE;
    }
  if (!x->direct || n_uses (imp, xname) != 1 || x->layer == 0)
    return UNSUPPORTED (imp, n, error, "%s by a constant on '%s', which has other consumers, cannot be folded into a layer",
                        op, xname);
  if (!fold_affine (imp, n, l, s, t, error))
    return FALSE;
  layer_value (imp, n->outputs[0], x->layer, TRUE);
  return TRUE;
}

static double
arith_op (char op, double x, double y, gboolean integer)
{
  switch (op)
    {
    case 'A': return x + y;
    case 'S': return x - y;
    case 'M': return x * y;
    default:  return integer ? trunc (x / y) : x / y;
    }
}

/* Add/Sub/Mul/Div of two constants (shape arithmetic such as a channel
 * count divided by the groups), a scalar broadcast against a vector. The
 * symbolic batch size stays symbolic. */
static gboolean
const_arith (Import *imp, const CleaveOnnxNode *n, const CleaveOnnxTensor *a, const CleaveOnnxTensor *b, GError **error)
{
  gboolean integer = a->i && b->i;
  gsize len = MAX (a->numel, b->numel);

  if ((a->numel != len && a->numel != 1) || (b->numel != len && b->numel != 1) || (!integer && (!a->f || !b->f)))
    return UNSUPPORTED (imp, n, error, "%s of constants of shapes that do not broadcast, or of mixed types", n->op_type);
  const CleaveOnnxTensor *shape_of = a->numel == len ? a : b;
  CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);
  t->data_type = integer ? CLEAVE_ONNX_INT64 : CLEAVE_ONNX_FLOAT;
  t->ndim = shape_of->ndim;
  memcpy (t->dims, shape_of->dims, sizeof t->dims);
  t->numel = len;
  if (integer)
    t->i = g_new0 (gint64, MAX (len, 1));
  else
    t->f = g_new0 (float, MAX (len, 1));
  for (gsize k = 0; k < len; k++)
    {
      gsize ia = a->numel == 1 ? 0 : k, ib = b->numel == 1 ? 0 : k;
      if (integer)
        {
          gint64 x = a->i[ia], y = b->i[ib];
          if (x == SYM_BATCH || y == SYM_BATCH)
            t->i[k] = SYM_BATCH;
          else if (n->op_type[0] == 'D' && y == 0)
            {
              cleave_onnx_tensor_free (t);
              return INVALID (imp, n, error, "integer division by zero");
            }
          else
            {
              double r = arith_op (n->op_type[0], (double) x, (double) y, TRUE);
              if (!(fabs (r) < 1e15))
                {
                  cleave_onnx_tensor_free (t);
                  return UNSUPPORTED (imp, n, error, "shape arithmetic result %g out of range", r);
                }
              t->i[k] = (gint64) r;
            }
        }
      else
        t->f[k] = (float) arith_op (n->op_type[0], a->f[ia], b->f[ib], FALSE);
    }
  const_value (imp, n->outputs[0], t);
  return TRUE;
}

/* Cast: of a constant, converted (shape arithmetic); of a float tensor to float, nothing. */
static gboolean
import_cast (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 to;
  Value *v = get_input (imp, n, 0, TRUE, error);

  if (!v || !attr_int (imp, n, "to", 0, &to, error))
    return FALSE;
  gboolean to_int = to == CLEAVE_ONNX_INT64 || to == 6 /* INT32 */;
  if (v->kind != V_CONST)
    {
      if (to != CLEAVE_ONNX_FLOAT)
        return UNSUPPORTED (imp, n, error, "attribute 'to' = %" G_GINT64_FORMAT " on a computed tensor (only float, 1)", to);
      if (as_layer (imp, n, v, 0, error) < 0)
        return FALSE;
      layer_value (imp, n->outputs[0], v->layer, FALSE);
      return TRUE;
    }
  if (!to_int && to != CLEAVE_ONNX_FLOAT)
    return UNSUPPORTED (imp, n, error, "attribute 'to' = %" G_GINT64_FORMAT " is not supported", to);
  CleaveOnnxTensor *t = tensor_dup (v->t);
  gsize len = MAX (t->numel, 1);
  if (to_int && !t->i)
    {
      t->i = g_new0 (gint64, len);
      for (gsize k = 0; k < t->numel; k++)
        {
          if (!(fabsf (t->f[k]) < 1e15f))
            {
              cleave_onnx_tensor_free (t);
              return UNSUPPORTED (imp, n, error, "cast of %g to an integer", t->f[k]);
            }
          t->i[k] = (gint64) t->f[k];
        }
      g_clear_pointer (&t->f, g_free);
    }
  else if (!to_int && !t->f)
    {
      t->f = g_new0 (float, len);
      for (gsize k = 0; k < t->numel; k++)
        t->f[k] = (float) t->i[k];
      g_clear_pointer (&t->i, g_free);
    }
  t->data_type = to_int ? CLEAVE_ONNX_INT64 : CLEAVE_ONNX_FLOAT;
  const_value (imp, n->outputs[0], t);
  return TRUE;
}

static gboolean
same_shape (const Layer *x, const Layer *y)
{
  return x->ndim == y->ndim && x->c == y->c && (x->ndim == 1 || (x->h == y->h && x->w == y->w));
}

static int
add_mul_layer (Import *imp, const CleaveOnnxNode *n, int a, int b, const char *out)
{
  int ins[2] = { a, b };
  Layer x = *layer_at (imp, a);
  int l = layer_add (imp, CLEAVE_OP_MUL, n, ins, 2);
  Layer *L = layer_at (imp, l);

  L->ndim = x.ndim; L->c = x.c; L->h = x.h; L->w = x.w;
  layer_value (imp, out, l, TRUE);
  return l;
}

/* Mul of two computed tensors: elementwise (x·sigmoid(x), SiLU) or one
 * value per channel, [N,C,1,1] × [N,C,H,W] either way round
 * (squeeze-excitation). */
static gboolean
import_mul (Import *imp, const CleaveOnnxNode *n, const int *ins, GError **error)
{
  Layer *x = layer_at (imp, ins[0]), *y = layer_at (imp, ins[1]);
  int a = ins[0], b = ins[1];

  if (!same_shape (x, y))
    {
      if (x->ndim == 3 && x->h == 1 && x->w == 1 && !(y->h == 1 && y->w == 1))
        a = ins[1], b = ins[0];
      Layer *t = layer_at (imp, a), *sc = layer_at (imp, b);
      if (t->ndim != 3 || sc->ndim != 3 || sc->c != t->c || sc->h != 1 || sc->w != 1)
        return UNSUPPORTED (imp, n, error, "Mul of tensors with shapes [N,%d,%d,%d] and [N,%d,%d,%d]: only equal shapes "
                            "or one value per channel ([N,C,1,1]) are supported", x->c, x->h, x->w, y->c, y->h, y->w);
    }
  add_mul_layer (imp, n, a, b, n->outputs[0]);
  return TRUE;
}

static gboolean
import_arith (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  Value *a, *b;

  if (!(a = get_input (imp, n, 0, TRUE, error)) || !(b = get_input (imp, n, 1, TRUE, error)))
    return FALSE;
  if (a->kind == V_CONST && b->kind == V_CONST)
    return const_arith (imp, n, a->t, b->t, error);
  if (b->kind == V_CONST)
    return import_arith_const (imp, n, a, 0, b->t, error);
  if (a->kind == V_CONST)
    return import_arith_const (imp, n, b, 1, a->t, error);
  if (!g_str_equal (n->op_type, "Add") && !g_str_equal (n->op_type, "Mul"))
    return UNSUPPORTED (imp, n, error, "%s of two computed tensors is not supported (only Add and Mul)", n->op_type);

  int ins[2];
  if ((ins[0] = as_layer (imp, n, a, 0, error)) < 0 || (ins[1] = as_layer (imp, n, b, 1, error)) < 0)
    return FALSE;
  if (n->op_type[0] == 'M')
    return import_mul (imp, n, ins, error);
  Layer x = *layer_at (imp, ins[0]), y = *layer_at (imp, ins[1]);
  if (x.ndim != y.ndim || x.c != y.c || (x.ndim == 3 && (x.h != y.h || x.w != y.w)))
    return UNSUPPORTED (imp, n, error, "Add of tensors with different shapes (broadcasting) is not supported");
  int l = layer_add (imp, CLEAVE_OP_ADD, n, ins, 2);
  Layer *L = layer_at (imp, l);
  L->ndim = x.ndim; L->c = x.c; L->h = x.h; L->w = x.w;
  layer_value (imp, n->outputs[0], l, TRUE);
  return TRUE;
}


/* A constant scalar operand (Clip's min and max inputs), or @def when omitted. */
static gboolean
scalar_input (Import *imp, const CleaveOnnxNode *n, int k, float def, float *out, GError **error)
{
  GError *local = NULL;
  const CleaveOnnxTensor *t = input_const (imp, n, k, FALSE, TRUE, &local);

  *out = def;
  if (local)
    return g_propagate_error (error, local), FALSE;
  if (!t)
    return TRUE;
  if (t->numel != 1)
    return UNSUPPORTED (imp, n, error, "input %d ('%s') has %" G_GSIZE_FORMAT " values, expected a scalar", k,
                        n->inputs[k], t->numel);
  *out = t->f[0];
  return TRUE;
}

/* Clip (ReLU6): bounds as attributes (opset < 11) or constant inputs. */
static gboolean
import_clip (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  float lo, hi;
  int x = input_layer (imp, n, 0, error);

  if (x < 0)
    return FALSE;
  if (imp->m->opset != 0 && imp->m->opset < 11)
    {
      if (!attr_float (imp, n, "min", -G_MAXFLOAT, &lo, error) || !attr_float (imp, n, "max", G_MAXFLOAT, &hi, error))
        return FALSE;
    }
  else if (n->n_attrs > 0)
    return UNSUPPORTED (imp, n, error, "attribute '%s' is not supported from opset 11 on (bounds are inputs)",
                        n->attrs[0].name);
  else if (!scalar_input (imp, n, 1, -G_MAXFLOAT, &lo, error) || !scalar_input (imp, n, 2, G_MAXFLOAT, &hi, error))
    return FALSE;
  lo = MAX (lo, -G_MAXFLOAT);
  hi = MIN (hi, G_MAXFLOAT);
  if (!(lo <= hi))
    return UNSUPPORTED (imp, n, error, "min %g above max %g is not supported", lo, hi);
  int l = add_simple (imp, n, CLEAVE_OP_CLIP, x);
  layer_at (imp, l)->clip_min = lo;
  layer_at (imp, l)->clip_max = hi;
  layer_at (imp, l)->alpha = 1.f;
  return TRUE;
}

/* HardSigmoid, and HardSwish as x · HardSigmoid(x) with alpha 1/6, beta 1/2. */
static gboolean
import_hard (Import *imp, const CleaveOnnxNode *n, gboolean swish, GError **error)
{
  float alpha = 1.f / 6.f, beta = 0.5f;
  int x = input_layer (imp, n, 0, error);

  if (x < 0)
    return FALSE;
  if (!swish && (!attr_float (imp, n, "alpha", 0.2f, &alpha, error) || !attr_float (imp, n, "beta", 0.5f, &beta, error)))
    return FALSE;
  if (!isfinite (alpha) || !isfinite (beta))
    return UNSUPPORTED (imp, n, error, "attribute 'alpha' = %g or 'beta' = %g is not finite", alpha, beta);
  int l = add_simple (imp, n, CLEAVE_OP_HARDSIGMOID, x);
  layer_at (imp, l)->alpha = alpha;
  layer_at (imp, l)->beta = beta;
  if (swish)
    add_mul_layer (imp, n, x, l, n->outputs[0]);
  return TRUE;
}

/* The channel axis of a [N,C,H,W] or [N,F] tensor, or -1 (axis @a of a layer of @ndim). */
static gboolean
is_channel_axis (gint64 a, int ndim)
{
  return a == 1 || a == 1 - (ndim + 1);
}

static int
add_slice (Import *imp, const CleaveOnnxNode *n, int x, int start, int count, const char *out)
{
  Layer in = *layer_at (imp, x);
  int l = layer_add (imp, CLEAVE_OP_SLICE, n, &x, 1);
  Layer *L = layer_at (imp, l);

  L->ndim = in.ndim; L->c = count; L->h = in.h; L->w = in.w;
  L->start = start;
  L->out_channels = count;
  layer_value (imp, out, l, TRUE);
  return l;
}

/* Split along the channel axis: one slice per used output. */
static gboolean
import_split (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 axis;
  int x = input_layer (imp, n, 0, error);
  g_autofree gint64 *sizes = g_new0 (gint64, MAX (n->n_outputs, 1));

  if (x < 0 || !attr_int (imp, n, "axis", 0, &axis, error))
    return FALSE;
  Layer *in = layer_at (imp, x);
  if (!is_channel_axis (axis, in->ndim))
    return UNSUPPORTED (imp, n, error, "attribute 'axis' = %" G_GINT64_FORMAT " is not supported (only the channel axis 1)",
                        axis);
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, "split");
  const gint64 *given = NULL;
  gsize n_given = 0;
  if (a)
    given = a->ints, n_given = a->n_ints;
  else if (n->n_inputs > 1 && *n->inputs[1])
    {
      const CleaveOnnxTensor *t = input_const (imp, n, 1, TRUE, FALSE, error);
      if (!t)
        return FALSE;
      given = t->i, n_given = t->numel;
    }
  int c = in->c;
  if (given)
    {
      gint64 total = 0;
      if (n_given != (gsize) n->n_outputs)
        return INVALID (imp, n, error, "%" G_GSIZE_FORMAT " split sizes for %d outputs", n_given, n->n_outputs);
      for (gsize k = 0; k < n_given; k++)
        {
          if (given[k] < 1 || given[k] > c)
            return INVALID (imp, n, error, "split size %" G_GINT64_FORMAT " is outside [1, %d]", given[k], c);
          total += sizes[k] = given[k];
        }
      if (total != c)
        return INVALID (imp, n, error, "split sizes add up to %" G_GINT64_FORMAT ", the input has %d channels", total, c);
    }
  else
    {
      if (n->n_outputs < 1 || c % n->n_outputs != 0)
        return UNSUPPORTED (imp, n, error, "%d channels do not split evenly into %d outputs", c, n->n_outputs);
      for (int k = 0; k < n->n_outputs; k++)
        sizes[k] = c / n->n_outputs;
    }
  gint64 start = 0;
  for (int k = 0; k < n->n_outputs; k++)
    {
      if (*n->outputs[k] && n_uses (imp, n->outputs[k]) > 0)
        add_slice (imp, n, x, start, sizes[k], n->outputs[k]);
      start += sizes[k];
    }
  return TRUE;
}

/* Slice of channels [start, end) with step 1 (opset 10 on: constant inputs;
 * before: attributes). */
static gboolean
import_slice (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  const gint64 *starts, *ends, *axes = NULL;
  gsize n_starts, n_ends, n_axes = 0;
  int x = input_layer (imp, n, 0, error);

  if (x < 0)
    return FALSE;
  if (imp->m->opset != 0 && imp->m->opset < 10)
    {
      const CleaveOnnxAttr *as = cleave_onnx_node_find_attr (n, "starts"), *ae = cleave_onnx_node_find_attr (n, "ends");
      const CleaveOnnxAttr *ax = cleave_onnx_node_find_attr (n, "axes");
      if (!as || !ae)
        return INVALID (imp, n, error, "attribute 'starts' or 'ends' is missing");
      starts = as->ints, n_starts = as->n_ints, ends = ae->ints, n_ends = ae->n_ints;
      if (ax)
        axes = ax->ints, n_axes = ax->n_ints;
    }
  else
    {
      const CleaveOnnxTensor *ts = input_const (imp, n, 1, TRUE, FALSE, error);
      const CleaveOnnxTensor *te = ts ? input_const (imp, n, 2, TRUE, FALSE, error) : NULL;
      GError *local = NULL;
      if (!te)
        return FALSE;
      starts = ts->i, n_starts = ts->numel, ends = te->i, n_ends = te->numel;
      const CleaveOnnxTensor *ta = input_const (imp, n, 3, FALSE, FALSE, &local);
      const CleaveOnnxTensor *tp = local ? NULL : input_const (imp, n, 4, FALSE, FALSE, &local);
      if (local)
        return g_propagate_error (error, local), FALSE;
      if (ta)
        axes = ta->i, n_axes = ta->numel;
      for (gsize k = 0; tp && k < tp->numel; k++)
        if (tp->i[k] != 1)
          return UNSUPPORTED (imp, n, error, "input 'steps' = %" G_GINT64_FORMAT " is not supported (only 1)", tp->i[k]);
    }
  Layer *in = layer_at (imp, x);
  if (n_starts != 1 || n_ends != 1 || (axes && (n_axes != 1 || !is_channel_axis (axes[0], in->ndim))))
    return UNSUPPORTED (imp, n, error, "only a slice of the channel axis 1 is supported");
  gint64 c = in->c, a = starts[0], b = ends[0];
  a = a < 0 ? MAX (a + c, 0) : MIN (a, c);
  b = b < 0 ? MAX (b + c, 0) : MIN (b, c);
  if (b <= a)
    return UNSUPPORTED (imp, n, error, "the slice [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") of %d channels is empty",
                        starts[0], ends[0], in->c);
  if (a == 0 && b == c)
    layer_value (imp, n->outputs[0], x, FALSE);
  else
    add_slice (imp, n, x, a, b - a, n->outputs[0]);
  return TRUE;
}

/* Gather of one column [N,1] of a [N,F] tensor (a class's score): the
 * linear layer computing it reduced to that row where nothing else reads
 * it, else a slice. */
static gboolean
import_gather_column (Import *imp, const CleaveOnnxNode *n, Value *v, GError **error)
{
  gint64 axis;
  int x = as_layer (imp, n, v, 0, error);
  const CleaveOnnxTensor *idx = x >= 0 ? input_const (imp, n, 1, TRUE, FALSE, error) : NULL;

  if (!idx || !attr_int (imp, n, "axis", 0, &axis, error))
    return FALSE;
  Layer *in = layer_at (imp, x);
  if (in->ndim != 1 || !is_channel_axis (axis, 1) || idx->ndim != 1 || idx->numel != 1)
    return UNSUPPORTED (imp, n, error, "Gather is supported on 1-D shape vectors, or as one column [N,1] of a [N,F] "
                        "tensor (axis 1, a 1-element index)");
  gint64 j = idx->i[0] < 0 ? idx->i[0] + in->c : idx->i[0];
  if (j < 0 || j >= in->c)
    return INVALID (imp, n, error, "index %" G_GINT64_FORMAT " is outside the %d features", idx->i[0], in->c);
  if (in->op == CLEAVE_OP_LINEAR && v->direct && n_uses (imp, n->inputs[0]) == 1)
    {
      gsize per = in->n_weight / in->out_features;
      memmove (in->weight, in->weight + j * per, per * sizeof (float));
      in->n_weight = per;
      if (in->bias)
        in->bias[0] = in->bias[j];
      in->out_features = in->c = 1;
      layer_value (imp, n->outputs[0], x, TRUE);
      return TRUE;
    }
  add_slice (imp, n, x, j, 1, n->outputs[0]);
  return TRUE;
}

/* Transpose of axes 1 and 2 of a channel shuffle's 5-d view. */
static gboolean
import_transpose (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  static const gint64 swap12[5] = { 0, 2, 1, 3, 4 };
  const CleaveOnnxAttr *perm = cleave_onnx_node_find_attr (n, "perm");
  Value *v = get_input (imp, n, 0, TRUE, error);

  if (!v)
    return FALSE;
  if (v->kind != V_SHUFFLE5 || !perm || perm->n_ints != 5 || memcmp (perm->ints, swap12, sizeof swap12) != 0)
    {
      g_autofree char *d = perm ? dims_to_string (perm->ints, perm->n_ints) : g_strdup ("(reversed)");
      return UNSUPPORTED (imp, n, error, "attribute 'perm' = %s is not supported (only [0,2,1,3,4] of a channel "
                          "shuffle's [N,g,C/g,H,W] view)", d);
    }
  Value *t = value_new (imp, V_SHUFFLE5T);
  t->layer = v->layer;
  t->groups = v->groups;
  set_value (imp, n->outputs[0], t);
  return TRUE;
}

static gboolean
batch_dim (Import *imp, gint64 d)
{
  return d == SYM_BATCH || d == 0 || (d > 0 && d == imp->in_batch);
}

/* Reshapes between [N,C,H,W] and the channel shuffle's [N,g,C/g,H,W]:
 * TRUE with *handled when @shape is one of them. */
static gboolean
reshape_shuffle (Import *imp, const CleaveOnnxNode *n, Value *v, const CleaveOnnxTensor *shape, gboolean *handled,
                 GError **error)
{
  const gint64 *d = shape->i;

  *handled = FALSE;
  if (v->kind == V_SHUFFLE5T && shape->numel == 4)
    {
      Layer in = *layer_at (imp, v->layer);
      if (!batch_dim (imp, d[0]) || !(d[1] == -1 || d[1] == in.c) || d[2] != in.h || d[3] != in.w)
        return TRUE;
      int l = layer_add (imp, CLEAVE_OP_CHANNEL_SHUFFLE, n, &v->layer, 1);
      Layer *L = layer_at (imp, l);
      L->ndim = 3; L->c = in.c; L->h = in.h; L->w = in.w;
      L->groups = v->groups;
      layer_value (imp, n->outputs[0], l, TRUE);
      *handled = TRUE;
      return TRUE;
    }
  if (v->kind != V_LAYER || v->pad || shape->numel != 5)
    return TRUE;
  int x = as_layer (imp, n, v, 0, error);
  if (x < 0)
    return FALSE;
  Layer *in = layer_at (imp, x);
  if (in->ndim != 3 || !batch_dim (imp, d[0]) || d[3] != in->h || d[4] != in->w || d[1] < 1 || d[1] > in->c
      || in->c % d[1] != 0 || !(d[2] == -1 || d[2] == in->c / d[1]))
    return TRUE;
  Value *s = value_new (imp, V_SHUFFLE5);
  s->layer = x;
  s->groups = d[1];
  set_value (imp, n->outputs[0], s);
  *handled = TRUE;
  return TRUE;
}

static gboolean
import_reshape (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  gint64 allowzero;
  gboolean handled = FALSE;
  Value *v = get_input (imp, n, 0, TRUE, error);
  const CleaveOnnxTensor *shape = v ? input_const (imp, n, 1, TRUE, FALSE, error) : NULL;

  if (!shape || !attr_int (imp, n, "allowzero", 0, &allowzero, error))
    return FALSE;
  if (!allowzero && !reshape_shuffle (imp, n, v, shape, &handled, error))
    return FALSE;
  if (handled)
    return TRUE;
  int x = as_layer (imp, n, v, 0, error);
  if (x < 0)
    return FALSE;
  Layer *in = layer_at (imp, x);
  if (in->ndim == 3 && shape->numel == 4 && !allowzero && batch_dim (imp, shape->i[0])
      && (shape->i[1] == in->c || shape->i[1] == -1) && shape->i[2] == in->h && shape->i[3] == in->w)
    {
      layer_value (imp, n->outputs[0], x, FALSE);   /* to its own shape */
      return TRUE;
    }
  gint64 f = in->ndim == 3 ? (gint64) in->c * in->h * in->w : in->c;
  gboolean ok = FALSE;
  if (shape->numel == 2 && !allowzero)
    {
      gint64 d0 = shape->i[0], d1 = shape->i[1];
      gboolean batch0 = batch_dim (imp, d0);
      if (batch0 && (d1 == -1 || d1 == f))
        ok = TRUE;
      else if (d0 == -1 && d1 == f)
        ok = TRUE;
    }
  if (!ok)
    {
      GString *s = g_string_new ("[");
      for (gsize k = 0; k < shape->numel; k++)
        {
          if (shape->i[k] == SYM_BATCH)
            g_string_append_printf (s, "%sN", k ? "," : "");
          else
            g_string_append_printf (s, "%s%" G_GINT64_FORMAT, k ? "," : "", shape->i[k]);
        }
      g_string_append_c (s, ']');
      g_autofree char *str = g_string_free (s, FALSE);
      return UNSUPPORTED (imp, n, error, "Reshape to %s is not supported (only flattening to [N,%" G_GINT64_FORMAT "])", str, f);
    }
  add_flatten (imp, n, x);
  return TRUE;
}

/* Integer shape arithmetic for x.view(x.size(0), -1): Shape, Gather, Unsqueeze. */
static gboolean
import_shape_op (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  const char *op = n->op_type;
  CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);

  t->data_type = CLEAVE_ONNX_INT64;
  if (g_str_equal (op, "Shape"))
    {
      if (n->n_attrs > 0)
        {
          cleave_onnx_tensor_free (t);
          return UNSUPPORTED (imp, n, error, "attribute '%s' is not supported", n->attrs[0].name);
        }
      int x = input_layer (imp, n, 0, error);
      if (x < 0)
        {
          cleave_onnx_tensor_free (t);
          return FALSE;
        }
      Layer *l = layer_at (imp, x);
      t->ndim = 1;
      t->numel = t->dims[0] = l->ndim + 1;
      t->i = g_new (gint64, 4);
      t->i[0] = SYM_BATCH;
      t->i[1] = l->c;
      t->i[2] = l->h;
      t->i[3] = l->w;
    }
  else if (g_str_equal (op, "Gather"))
    {
      gint64 axis;
      const CleaveOnnxTensor *data = input_const (imp, n, 0, TRUE, FALSE, error);
      const CleaveOnnxTensor *idx = data ? input_const (imp, n, 1, TRUE, FALSE, error) : NULL;
      if (!idx || !attr_int (imp, n, "axis", 0, &axis, error))
        {
          cleave_onnx_tensor_free (t);
          return FALSE;
        }
      if (data->ndim != 1 || axis != 0 || idx->ndim > 1)
        {
          cleave_onnx_tensor_free (t);
          return UNSUPPORTED (imp, n, error, "Gather is supported only on 1-D integer shape vectors");
        }
      t->ndim = idx->ndim;
      t->dims[0] = idx->dims[0];
      t->numel = idx->numel;
      t->i = g_new (gint64, MAX (idx->numel, 1));
      for (gsize k = 0; k < idx->numel; k++)
        {
          gint64 j = idx->i[k] < 0 ? idx->i[k] + (gint64) data->numel : idx->i[k];
          if (j < 0 || j >= (gint64) data->numel)
            {
              cleave_onnx_tensor_free (t);
              return INVALID (imp, n, error, "index %" G_GINT64_FORMAT " out of range", idx->i[k]);
            }
          t->i[k] = data->i[j];
        }
    }
  else /* Unsqueeze of a scalar or a vector into a vector */
    {
      const CleaveOnnxTensor *data = input_const (imp, n, 0, TRUE, FALSE, error);
      if (!data)
        {
          cleave_onnx_tensor_free (t);
          return FALSE;
        }
      gint64 n_axes = 0;
      const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, "axes");
      if (a)
        n_axes = a->n_ints;
      else if (n->n_inputs > 1)
        {
          const CleaveOnnxTensor *ax = input_const (imp, n, 1, TRUE, FALSE, error);
          if (!ax)
            {
              cleave_onnx_tensor_free (t);
              return FALSE;
            }
          n_axes = ax->numel;
        }
      if (data->ndim + n_axes != 1)
        {
          cleave_onnx_tensor_free (t);
          return UNSUPPORTED (imp, n, error, "Unsqueeze is supported only to build 1-D shape vectors");
        }
      t->ndim = 1;
      t->numel = t->dims[0] = data->numel;
      t->i = g_memdup2 (data->i, MAX (data->numel, 1) * sizeof (gint64));
    }
  const_value (imp, n->outputs[0], t);
  return TRUE;
}

/* Pad with zeros, symmetric on H and W only: becomes the pads of the next Conv or AveragePool. */
static gboolean
import_pad (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  const CleaveOnnxAttr *mode = cleave_onnx_node_find_attr (n, "mode");
  const CleaveOnnxAttr *pads_attr = cleave_onnx_node_find_attr (n, "pads");
  const gint64 *pads = NULL;
  gsize n_pads = 0;
  float value = 0.f;
  GError *local = NULL;
  int x = input_layer (imp, n, 0, error);

  if (x < 0 || !need_spatial (imp, n, x, error))
    return FALSE;
  if (mode && mode->s && !g_str_equal (mode->s, "constant"))
    return UNSUPPORTED (imp, n, error, "attribute 'mode' = %s is not supported (only constant)", mode->s);
  if (pads_attr)
    {
      pads = pads_attr->ints;
      n_pads = pads_attr->n_ints;
      if (!attr_float (imp, n, "value", 0.f, &value, error))
        return FALSE;
    }
  else
    {
      const CleaveOnnxTensor *t = input_const (imp, n, 1, TRUE, FALSE, error);
      if (!t)
        return FALSE;
      pads = t->i;
      n_pads = t->numel;
      const CleaveOnnxTensor *v = input_const (imp, n, 2, FALSE, TRUE, &local);
      if (local)
        return g_propagate_error (error, local), FALSE;
      if (v && v->numel == 1)
        value = v->f[0];
      if (n->n_inputs > 3 && *n->inputs[3])
        return UNSUPPORTED (imp, n, error, "input 'axes' is not supported");
    }
  if (value != 0.f)
    return UNSUPPORTED (imp, n, error, "padding with %g is not supported (only zeros)", value);
  if (n_pads != 8 || pads[0] || pads[1] || pads[4] || pads[5]
      || pads[2] != pads[3] || pads[2] != pads[6] || pads[2] != pads[7] || pads[2] < 0 || pads[2] > 1024)
    {
      g_autofree char *d = dims_to_string (pads, n_pads);
      return UNSUPPORTED (imp, n, error, "pads %s are not supported (only equal zero padding of H and W)", d);
    }
  Value *v = layer_value (imp, n->outputs[0], x, FALSE);
  v->pad = pads[2];
  return TRUE;
}

static gboolean
import_constant (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  if (n->n_attrs != 1)
    return INVALID (imp, n, error, "a Constant needs exactly one attribute, it has %d", n->n_attrs);
  const CleaveOnnxAttr *a = &n->attrs[0];
  CleaveOnnxTensor *t;
  if (g_str_equal (a->name, "value") && a->t)
    t = tensor_dup (a->t);
  else
    {
      t = g_new0 (CleaveOnnxTensor, 1);
      if (g_str_equal (a->name, "value_float") || g_str_equal (a->name, "value_int"))
        {
          t->numel = 1;
          if (a->name[6] == 'f')
            t->data_type = CLEAVE_ONNX_FLOAT, t->f = g_memdup2 (&a->f, sizeof (float));
          else
            t->data_type = CLEAVE_ONNX_INT64, t->i = g_memdup2 (&a->i, sizeof (gint64));
        }
      else if (g_str_equal (a->name, "value_floats") || g_str_equal (a->name, "value_ints"))
        {
          t->ndim = 1;
          if (a->name[6] == 'f')
            {
              t->data_type = CLEAVE_ONNX_FLOAT;
              t->numel = t->dims[0] = a->n_floats;
              t->f = g_new0 (float, MAX (a->n_floats, 1));
              if (a->n_floats)
                memcpy (t->f, a->floats, a->n_floats * sizeof (float));
            }
          else
            {
              t->data_type = CLEAVE_ONNX_INT64;
              t->numel = t->dims[0] = a->n_ints;
              t->i = g_new0 (gint64, MAX (a->n_ints, 1));
              if (a->n_ints)
                memcpy (t->i, a->ints, a->n_ints * sizeof (gint64));
            }
        }
      else
        {
          cleave_onnx_tensor_free (t);
          return UNSUPPORTED (imp, n, error, "attribute '%s' is not supported", a->name);
        }
    }
  if (!t->f && !t->i)
    {
      cleave_onnx_tensor_free (t);
      return UNSUPPORTED (imp, n, error, "constant of data type %d", a->t ? a->t->data_type : 0);
    }
  const_value (imp, n->outputs[0], t);
  return TRUE;
}

static gboolean
import_node (Import *imp, const CleaveOnnxNode *n, GError **error)
{
  const char *op = n->op_type;
  int x;

  if (*n->domain && !g_str_equal (n->domain, "ai.onnx"))
    return UNSUPPORTED (imp, n, error, "operator domain '%s' is not supported", n->domain);
  if (n->n_outputs < 1 || !*n->outputs[0])
    return INVALID (imp, n, error, "node has no output");
  if (!check_attrs (imp, n, known_attrs (op), error))
    return FALSE;

  if (g_str_equal (op, "Conv"))
    return import_conv (imp, n, error);
  if (g_str_equal (op, "BatchNormalization"))
    return import_bn (imp, n, error);
  if (g_str_equal (op, "Relu") || g_str_equal (op, "Sigmoid"))
    {
      if ((x = input_layer (imp, n, 0, error)) < 0)
        return FALSE;
      add_simple (imp, n, op[0] == 'R' ? CLEAVE_OP_RELU : CLEAVE_OP_SIGMOID, x);
      return TRUE;
    }
  if (g_str_equal (op, "MaxPool") || g_str_equal (op, "AveragePool"))
    return import_pool (imp, n, op[0] == 'M', error);
  if (g_str_equal (op, "Clip"))
    return import_clip (imp, n, error);
  if (g_str_equal (op, "HardSigmoid") || g_str_equal (op, "HardSwish"))
    return import_hard (imp, n, g_str_equal (op, "HardSwish"), error);
  if (g_str_equal (op, "Split"))
    return import_split (imp, n, error);
  if (g_str_equal (op, "Slice"))
    return import_slice (imp, n, error);
  if (g_str_equal (op, "Transpose"))
    return import_transpose (imp, n, error);
  if (g_str_equal (op, "Cast"))
    return import_cast (imp, n, error);
  if (g_str_equal (op, "GlobalAveragePool"))
    {
      if (!need_spatial (imp, n, input_layer (imp, n, 0, error), error))
        return FALSE;
      add_gap (imp, n, input_layer (imp, n, 0, error), TRUE);
      return TRUE;
    }
  if (g_str_equal (op, "ReduceMean"))
    {
      gint64 keep;
      const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (n, "axes");
      x = input_layer (imp, n, 0, error);
      if (!need_spatial (imp, n, x, error) || !attr_int (imp, n, "keepdims", 1, &keep, error))
        return FALSE;
      if (!a || a->n_ints != 2 || !((a->ints[0] == 2 && a->ints[1] == 3) || (a->ints[0] == -2 && a->ints[1] == -1)))
        return UNSUPPORTED (imp, n, error, "attribute 'axes' must be [2,3] (a global average pool)");
      add_gap (imp, n, x, keep != 0);
      return TRUE;
    }
  if (g_str_equal (op, "Flatten"))
    {
      gint64 axis;
      if ((x = input_layer (imp, n, 0, error)) < 0 || !attr_int (imp, n, "axis", 1, &axis, error))
        return FALSE;
      if (axis != 1 && axis != -(layer_at (imp, x)->ndim))
        return UNSUPPORTED (imp, n, error, "attribute 'axis' = %" G_GINT64_FORMAT " is not supported (only 1)", axis);
      add_flatten (imp, n, x);
      return TRUE;
    }
  if (g_str_equal (op, "Gemm") || g_str_equal (op, "MatMul"))
    return import_linear (imp, n, op[0] == 'G', error);
  if (g_str_equal (op, "Add") || g_str_equal (op, "Sub") || g_str_equal (op, "Mul") || g_str_equal (op, "Div"))
    return import_arith (imp, n, error);
  if (g_str_equal (op, "Concat"))
    return import_concat (imp, n, error);
  if (g_str_equal (op, "Reshape"))
    return import_reshape (imp, n, error);
  if (g_str_equal (op, "Gather"))
    {
      Value *v = get_input (imp, n, 0, TRUE, error);
      if (!v)
        return FALSE;
      if (v->kind != V_CONST)
        return import_gather_column (imp, n, v, error);
    }
  if (g_str_equal (op, "Shape") || g_str_equal (op, "Gather") || g_str_equal (op, "Unsqueeze"))
    return import_shape_op (imp, n, error);
  if (g_str_equal (op, "Constant"))
    return import_constant (imp, n, error);
  if (g_str_equal (op, "Pad"))
    return import_pad (imp, n, error);
  if (g_str_equal (op, "Identity"))
    {
      Value *v = get_input (imp, n, 0, TRUE, error);
      if (!v)
        return FALSE;
      Value *alias = value_new (imp, v->kind);
      alias->layer = v->layer;
      alias->pad = v->pad;
      alias->groups = v->groups;
      alias->t = v->t ? tensor_dup (v->t) : NULL;
      alias->a = v->a ? g_memdup2 (v->a, imp->in_c * sizeof (float)) : NULL;
      alias->b = v->b ? g_memdup2 (v->b, imp->in_c * sizeof (float)) : NULL;
      set_value (imp, n->outputs[0], alias);
      return TRUE;
    }
  if (g_str_equal (op, "Dropout"))
    {
      float p = 0.5f;
      if ((x = input_layer (imp, n, 0, error)) < 0 || !attr_float (imp, n, "ratio", 0.5f, &p, error)
          || !check_unused_outputs (imp, n, error))
        return FALSE;
      GError *local = NULL;
      const CleaveOnnxTensor *r = input_const (imp, n, 1, FALSE, TRUE, &local);
      if (local)
        return g_propagate_error (error, local), FALSE;
      if (r && r->numel == 1)
        p = r->f[0];
      const CleaveOnnxTensor *tm = input_const (imp, n, 2, FALSE, FALSE, &local);
      if (local)
        return g_propagate_error (error, local), FALSE;
      if (tm && tm->numel == 1 && tm->i[0])
        return UNSUPPORTED (imp, n, error, "input 'training_mode' = true is not supported");
      int l = add_simple (imp, n, CLEAVE_OP_DROPOUT, x);
      layer_at (imp, l)->p = p;
      return TRUE;
    }
  if (g_str_equal (op, "Softmax"))
    {
      gint64 axis;
      if ((x = input_layer (imp, n, 0, error)) < 0 || !need_flat (imp, n, x, error)
          || !attr_int (imp, n, "axis", imp->m->opset >= 13 ? -1 : 1, &axis, error))
        return FALSE;
      if (axis != 1 && axis != -1)
        return UNSUPPORTED (imp, n, error, "attribute 'axis' = %" G_GINT64_FORMAT " is not supported", axis);
      gboolean is_output = FALSE;
      for (guint k = 0; k < imp->outputs->len; k++)
        is_output |= g_str_equal (imp->outputs->pdata[k], n->outputs[0]);
      if (is_output && imp->outputs->len == 1 && n_uses (imp, n->outputs[0]) == 1)
        {
          /* the last node: dropped, the logits are the classification */
          imp->softmax = TRUE;
          layer_value (imp, n->outputs[0], x, FALSE);
          return TRUE;
        }
      add_simple (imp, n, CLEAVE_OP_SOFTMAX, x);
      return TRUE;
    }
  return UNSUPPORTED (imp, n, error, "operator '%s' is not supported", op);
}

/* "/features/features.0/Conv" → "features.0"; "/layer1/conv1/Conv" → "layer1.conv1";
 * "/features/features.1/conv/conv.0/conv.0.0/Conv" → "features.1.conv.0.0": a scope
 * that extends the one before it ("conv.0" after "conv") adds only its new part. */
static char *
name_from_node (const char *node_name)
{
  g_auto (GStrv) parts = g_strsplit (node_name, "/", -1);
  GPtrArray *comp = g_ptr_array_new ();
  char *result = NULL;

  for (int k = 0; parts[k]; k++)
    if (*parts[k])
      g_ptr_array_add (comp, parts[k]);
  if (comp->len >= 2)
    {
      GString *s = g_string_new (NULL);
      const char *prev = NULL;
      for (guint k = 0; k + 1 < comp->len; k++)
        {
          const char *c = comp->pdata[k];
          gsize lp = prev ? strlen (prev) : 0;
          if (prev && g_str_has_prefix (c, prev) && c[lp] == '.')
            g_string_append (s, c + lp);
          else
            {
              if (s->len)
                g_string_append_c (s, '.');
              g_string_append (s, c);
            }
          prev = c;
        }
      result = g_string_free (s, FALSE);
    }
  g_ptr_array_free (comp, TRUE);
  return result;
}

static gboolean
clean_name (const char *s)
{
  if (!s || !*s || g_str_has_prefix (s, "onnx::"))
    return FALSE;
  for (const char *p = s; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '_' && *p != '.' && *p != '-')
      return FALSE;
  return TRUE;
}

static void
name_layers (Import *imp)
{
  g_autoptr (GHashTable) used = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  g_hash_table_add (used, g_strdup ("input"));
  /* layers with parameters pick first: their names are the state_dict prefixes */
  for (int pass = 0; pass < 2; pass++)
    for (guint k = 1; k < imp->layers->len; k++)
      {
        Layer *l = layer_at (imp, k);
        gboolean has_params = l->weight != NULL;
        if ((pass == 0) != has_params)
          continue;
        g_autofree char *base = NULL;
        if (clean_name (l->hint))
          base = g_strdup (l->hint);
        else
          {
            g_autofree char *from_node = l->src ? name_from_node (l->src->name) : NULL;
            base = clean_name (from_node) ? g_steal_pointer (&from_node) : g_strdup (cleave_op_kind_to_string (l->op));
          }
        char *name = g_strdup (base);
        for (int i = 1; g_hash_table_contains (used, name); i++)
          {
            g_free (name);
            name = g_strdup_printf ("%s_%d", base, i);
          }
        g_hash_table_add (used, g_strdup (name));
        l->name = name;
      }
}

static gboolean
copy_param (Import *imp, CleaveGraph *g, CleaveNode *node, CleaveParamSlot slot, const float *src, gsize n, GError **error)
{
  if (!src)
    return TRUE;
  if (node->param[slot] < 0)
    return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED, "%s: layer '%s' has no parameter slot %d",
                        imp->file, node->name, slot), FALSE;
  CleaveParam *p = cleave_graph_param (g, node->param[slot]);
  if (cleave_param_numel (p) != n)
    return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED, "%s: parameter '%s' has %" G_GSIZE_FORMAT " values, ONNX gives %" G_GSIZE_FORMAT,
                        imp->file, p->name, cleave_param_numel (p), n), FALSE;
  memcpy (p->data, src, n * sizeof (float));
  return TRUE;
}

/* Whether every reader of layer @k flattens it (or it is the output). */
static gboolean
only_flattened (Import *imp, guint k)
{
  for (guint j = k + 1; j < imp->layers->len; j++)
    {
      Layer *l = layer_at (imp, j);
      for (int i = 0; i < l->n_inputs; i++)
        if (l->inputs[i] == (int) k && l->op != CLEAVE_OP_FLATTEN)
          return FALSE;
    }
  return TRUE;
}

static CleaveGraph *
build_graph (Import *imp, int out_layer, GError **error)
{
  g_autoptr (CleaveGraph) g = cleave_graph_new (imp->in_c, imp->in_h, imp->in_w);

  layer_at (imp, 0)->cidx = 0;
  name_layers (imp);
  for (guint k = 1; k < imp->layers->len; k++)
    {
      Layer *l = layer_at (imp, k);
      int in[CLEAVE_MAX_INPUTS];
      for (int i = 0; i < l->n_inputs; i++)
        in[i] = layer_at (imp, l->inputs[i])->cidx;
      switch (l->op)
        {
        case CLEAVE_OP_CONV2D:
          l->cidx = cleave_graph_add_conv2d (g, l->name, in[0], l->out_channels, l->kernel, l->stride, l->pad, l->groups, l->has_bias);
          break;
        case CLEAVE_OP_BATCHNORM2D:
          l->cidx = cleave_graph_add_batchnorm2d (g, l->name, in[0]);
          break;
        case CLEAVE_OP_RELU:
          l->cidx = cleave_graph_add_relu (g, l->name, in[0]);
          break;
        case CLEAVE_OP_SIGMOID:
          l->cidx = cleave_graph_add_sigmoid (g, l->name, in[0]);
          break;
        case CLEAVE_OP_MAXPOOL2D:
        case CLEAVE_OP_AVGPOOL2D:
          l->cidx = l->op == CLEAVE_OP_MAXPOOL2D ? cleave_graph_add_maxpool2d (g, l->name, in[0], l->kernel, l->stride, l->pad)
                                                 : cleave_graph_add_avgpool2d (g, l->name, in[0], l->kernel, l->stride, l->pad);
          cleave_graph_node (g, l->cidx)->ceil_mode = l->ceil_mode;
          cleave_graph_node (g, l->cidx)->exclude_pad = l->exclude_pad;
          break;
        case CLEAVE_OP_GLOBAL_AVGPOOL:
          l->cidx = cleave_graph_add_global_avgpool (g, l->name, in[0]);
          /* kept (C,1,1) where something other than a flatten reads it (a squeeze-excitation's conv) */
          cleave_graph_node (g, l->cidx)->keepdims = !only_flattened (imp, k);
          break;
        case CLEAVE_OP_CLIP:
          l->cidx = cleave_graph_add_clip (g, l->name, in[0], l->clip_min, l->clip_max);
          cleave_graph_node (g, l->cidx)->alpha = l->alpha;
          cleave_graph_node (g, l->cidx)->beta = l->beta;
          break;
        case CLEAVE_OP_HARDSIGMOID:
          l->cidx = cleave_graph_add_hardsigmoid (g, l->name, in[0], l->alpha, l->beta);
          break;
        case CLEAVE_OP_MUL:
          l->cidx = cleave_graph_add_mul (g, l->name, in[0], in[1]);
          break;
        case CLEAVE_OP_CHANNEL_SHUFFLE:
          l->cidx = cleave_graph_add_channel_shuffle (g, l->name, in[0], l->groups);
          break;
        case CLEAVE_OP_SLICE:
          l->cidx = cleave_graph_add_slice (g, l->name, in[0], l->start, l->out_channels);
          break;
        case CLEAVE_OP_SOFTMAX:
          l->cidx = cleave_graph_add_softmax (g, l->name, in[0]);
          break;
        case CLEAVE_OP_FLATTEN:
          /* Cleave's global pool already yields (C) unless it keeps its dimensions */
          if (!cleave_graph_node (g, in[0])->keepdims && layer_at (imp, l->inputs[0])->op == CLEAVE_OP_GLOBAL_AVGPOOL)
            l->cidx = in[0];
          else
            l->cidx = cleave_graph_add_flatten (g, l->name, in[0]);
          break;
        case CLEAVE_OP_LINEAR:
          l->cidx = cleave_graph_add_linear (g, l->name, in[0], l->out_features, l->has_bias);
          break;
        case CLEAVE_OP_DROPOUT:
          l->cidx = cleave_graph_add_dropout (g, l->name, in[0], l->p);
          break;
        case CLEAVE_OP_ADD:
          l->cidx = cleave_graph_add_add (g, l->name, in[0], in[1]);
          break;
        case CLEAVE_OP_CONCAT:
          l->cidx = cleave_graph_add_concat (g, l->name, in, l->n_inputs);
          break;
        default:
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED, "%s: internal: unexpected layer kind %d", imp->file, l->op);
          return NULL;
        }
      if (l->cidx < 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED, "%s: could not add layer '%s'", imp->file, l->name);
          return NULL;
        }
    }
  if (layer_at (imp, out_layer)->cidx != cleave_graph_output (g))
    {
      const CleaveOnnxNode *src = layer_at (imp, out_layer)->src;
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED,
                   "%s: the graph output is produced by node '%s', which is not the last layer (unused branches are not supported)",
                   imp->file, src ? src->name : "input");
      return NULL;
    }
  GError *local = NULL;
  if (!cleave_graph_finalize (g, &local))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: the imported graph is not valid in Cleave: %s",
                   imp->file, local->message);
      g_error_free (local);
      return NULL;
    }
  for (guint k = 1; k < imp->layers->len; k++)
    {
      Layer *l = layer_at (imp, k);
      if (!l->weight)
        continue;
      CleaveNode *node = cleave_graph_node (g, l->cidx);
      gsize c = l->op == CLEAVE_OP_LINEAR ? l->out_features : l->out_channels;
      if (!copy_param (imp, g, node, CLEAVE_PARAM_WEIGHT, l->weight, l->n_weight, error)
          || !copy_param (imp, g, node, CLEAVE_PARAM_BIAS, l->bias, c, error)
          || !copy_param (imp, g, node, CLEAVE_PARAM_RUNNING_MEAN, l->rmean, c, error)
          || !copy_param (imp, g, node, CLEAVE_PARAM_RUNNING_VAR, l->rvar, c, error))
        return NULL;
      if (l->op == CLEAVE_OP_BATCHNORM2D)
        {
          node->eps = l->eps;
          node->momentum = l->momentum;
        }
    }
  return g_steal_pointer (&g);
}

void
cleave_onnx_import_free (CleaveOnnxImport *imp)
{
  if (!imp)
    return;
  cleave_graph_free (imp->graph);
  g_free (imp->mean);
  g_free (imp->std);
  g_free (imp->producer);
  g_free (imp);
}

static gboolean
find_graph_input (Import *imp, GError **error)
{
  const CleaveOnnxModel *m = imp->m;
  g_autoptr (GHashTable) inits = g_hash_table_new (g_str_hash, g_str_equal);
  const CleaveOnnxValueInfo *in = NULL;

  for (guint k = 0; k < m->initializers->len; k++)
    g_hash_table_add (inits, ((CleaveOnnxTensor *) m->initializers->pdata[k])->name);
  for (guint k = 0; k < m->inputs->len; k++)
    {
      const CleaveOnnxValueInfo *vi = m->inputs->pdata[k];
      if (g_hash_table_contains (inits, vi->name))
        continue;   /* IR < 4 lists initializers as inputs too */
      if (in)
        return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: graph.input: more than one input ('%s', '%s')",
                            imp->file, in->name, vi->name), FALSE;
      in = vi;
    }
  if (!in)
    return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: graph.input: no input", imp->file), FALSE;
  if (in->elem_type != 0 && in->elem_type != CLEAVE_ONNX_FLOAT)
    return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: graph.input '%s': element type %d (only float)",
                        imp->file, in->name, in->elem_type), FALSE;
  if (in->ndim != 4 || in->dims[1] < 1 || in->dims[2] < 1 || in->dims[3] < 1
      || in->dims[1] > 65536 || in->dims[2] > 65536 || in->dims[3] > 65536)
    return g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED,
                        "%s: graph.input '%s': shape must be [N,C,H,W] with known C, H, W", imp->file, in->name), FALSE;
  imp->in_batch = in->dims[0] > 0 ? in->dims[0] : -1;
  imp->in_c = in->dims[1];
  imp->in_h = in->dims[2];
  imp->in_w = in->dims[3];

  int l = layer_add (imp, CLEAVE_OP_INPUT, NULL, NULL, 0);
  Layer *L = layer_at (imp, l);
  L->ndim = 3; L->c = imp->in_c; L->h = imp->in_h; L->w = imp->in_w;
  Value *v = value_new (imp, V_AFFINE);
  v->a = g_new (float, imp->in_c);
  v->b = g_new (float, imp->in_c);
  for (int c = 0; c < imp->in_c; c++)
    v->a[c] = 1.f, v->b[c] = 0.f;
  set_value (imp, in->name, v);
  return TRUE;
}


static gboolean
is_float_output (const CleaveOnnxValueInfo *vi)
{
  return vi->elem_type == 0 || vi->elem_type == CLEAVE_ONNX_FLOAT;
}

/* The classification output(s) of the graph, by this rule: its only
 * output; else its only float output (an exported composition or patched
 * model also gives the ArgMax class index, an integer); else, when every
 * float output is one score [N,1], all of them in order, one per class
 * (an exported module set). */
static GPtrArray *
choose_outputs (Import *imp, GError **error)
{
  const CleaveOnnxModel *m = imp->m;
  GPtrArray *floats = g_ptr_array_new ();
  gboolean all_scores = TRUE;

  if (m->outputs->len == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: graph.output: no outputs", imp->file);
      g_ptr_array_unref (floats);
      return NULL;
    }
  for (guint k = 0; k < m->outputs->len; k++)
    {
      const CleaveOnnxValueInfo *vi = m->outputs->pdata[k];
      if (m->outputs->len == 1 || is_float_output (vi))
        {
          g_ptr_array_add (floats, vi->name);
          all_scores &= vi->ndim == 2 && vi->dims[1] == 1;
        }
    }
  if (floats->len == 1 || (floats->len > 1 && all_scores))
    return floats;
  GString *names = g_string_new (NULL);
  for (guint k = 0; k < m->outputs->len; k++)
    g_string_append_printf (names, "%s'%s'", k ? ", " : "", ((CleaveOnnxValueInfo *) m->outputs->pdata[k])->name);
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED,
               "%s: graph.output: %u outputs (%s) and %u of them float: Cleave reads one classification output "
               "(the only float output, or one [N,1] score per class)", imp->file, m->outputs->len, names->str,
               floats->len);
  g_string_free (names, TRUE);
  g_ptr_array_unref (floats);
  return NULL;
}

/* The nodes that the chosen outputs depend on; the others (an ArgMax of
 * the scores) are not imported. */
static gboolean *
needed_nodes (const CleaveOnnxModel *m, GPtrArray *outs)
{
  gboolean *needed = g_new0 (gboolean, MAX (m->nodes->len, 1));
  g_autoptr (GHashTable) want = g_hash_table_new (g_str_hash, g_str_equal);

  for (guint k = 0; k < outs->len; k++)
    g_hash_table_add (want, outs->pdata[k]);
  for (guint k = m->nodes->len; k-- > 0;)
    {
      const CleaveOnnxNode *n = m->nodes->pdata[k];
      for (int o = 0; o < n->n_outputs && !needed[k]; o++)
        needed[k] = g_hash_table_contains (want, n->outputs[o]);
      for (int i = 0; needed[k] && i < n->n_inputs; i++)
        g_hash_table_add (want, n->inputs[i]);
    }
  return needed;
}

/* The layer computing the classification: the chosen output's, or the
 * concatenation of the per-class scores. */
static int
output_layer (Import *imp, GPtrArray *outs, GError **error)
{
  int ins[CLEAVE_MAX_INPUTS];

  if (outs->len > CLEAVE_MAX_INPUTS)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: graph.output: %u scores (at most %d supported)",
                   imp->file, outs->len, CLEAVE_MAX_INPUTS);
      return -1;
    }
  for (guint k = 0; k < outs->len; k++)
    {
      const char *name = outs->pdata[k];
      Value *ov = g_hash_table_lookup (imp->values, name);
      if (!ov || ov->kind != V_LAYER || ov->layer == 0 || ov->pad)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: graph.output '%s' is not computed by a supported layer",
                       imp->file, name);
          return -1;
        }
      if (layer_at (imp, ov->layer)->ndim != 1)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: graph.output '%s' is not a [N,F] tensor", imp->file, name);
          return -1;
        }
      ins[k] = ov->layer;
    }
  if (outs->len == 1)
    return ins[0];
  int l = layer_add (imp, CLEAVE_OP_CONCAT, NULL, ins, outs->len);
  Layer *L = layer_at (imp, l);
  L->ndim = 1;
  L->c = outs->len;
  return l;
}

CleaveOnnxImport *
cleave_onnx_import_model (const CleaveOnnxModel *m, const char *display_name, GError **error)
{
  Import imp = { 0 };
  CleaveOnnxImport *res = NULL;
  CleaveGraph *g = NULL;
  GPtrArray *outs = NULL;
  gboolean *needed = NULL;

  imp.m = m;
  imp.file = display_name ? display_name : "model.onnx";
  imp.values = g_hash_table_new (g_str_hash, g_str_equal);
  imp.all_values = g_ptr_array_new_with_free_func ((GDestroyNotify) value_free);
  imp.uses = g_hash_table_new (g_str_hash, g_str_equal);
  imp.layers = g_array_new (FALSE, TRUE, sizeof (Layer));

  if (m->opset != 0 && (m->opset < 7 || m->opset > 18))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: opset %" G_GINT64_FORMAT " is not supported (7 to 18)",
                   imp.file, m->opset);
      goto out;
    }
  if (!(outs = choose_outputs (&imp, error)))
    goto out;
  needed = needed_nodes (m, outs);
  for (guint k = 0; k < m->nodes->len; k++)
    {
      const CleaveOnnxNode *n = m->nodes->pdata[k];
      for (int i = 0; needed[k] && i < n->n_inputs; i++)
        g_hash_table_insert (imp.uses, n->inputs[i], GINT_TO_POINTER (n_uses (&imp, n->inputs[i]) + 1));
    }
  for (guint k = 0; k < outs->len; k++)
    g_hash_table_insert (imp.uses, outs->pdata[k], GINT_TO_POINTER (n_uses (&imp, outs->pdata[k]) + 1));
  imp.outputs = outs;

  if (!find_graph_input (&imp, error))
    goto out;
  {
    g_autoptr (GHashTable) names = g_hash_table_new (g_str_hash, g_str_equal);
    for (guint k = 0; k < m->initializers->len; k++)
      {
        CleaveOnnxTensor *t = m->initializers->pdata[k];
        if (t->name && !g_hash_table_add (names, t->name))
          {
            g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                         "%s: graph.initializer[%u]: the name '%s' appears twice", imp.file, k, t->name);
            goto out;
          }
        if (t->f || t->i)
          const_value (&imp, t->name, tensor_dup (t));
      }
  }
  for (guint k = 0; k < m->nodes->len; k++)
    if (needed[k] && !import_node (&imp, m->nodes->pdata[k], error))
      goto out;

  int out_layer = output_layer (&imp, outs, error);
  if (out_layer < 0)
    goto out;
  Value *ov = &(Value) { .layer = out_layer };
  if (!(g = build_graph (&imp, ov->layer, error)))
    goto out;
  if (!cleave_graph_check_values (g, imp.file, error))
    {
      cleave_graph_free (g);
      goto out;
    }

  res = g_new0 (CleaveOnnxImport, 1);
  res->graph = g;
  res->n_outputs_used = outs->len;
  res->n_classes = layer_at (&imp, ov->layer)->c;
  res->n_channels = imp.in_c;
  res->mean = g_new (float, imp.in_c);
  res->std = g_new (float, imp.in_c);
  res->has_normalization = FALSE;
  for (int c = 0; c < imp.in_c; c++)
    {
      float a = imp.norm_a ? imp.norm_a[c] : 1.f, b = imp.norm_a ? imp.norm_b[c] : 0.f;
      if (a == 0.f || !isfinite (a) || !isfinite (b) || !isfinite (1.f / a) || !isfinite (-b / a))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: the input normalisation of channel %d is not usable (scale %g, offset %g)",
                       imp.file, c, a, b);
          cleave_onnx_import_free (res);
          res = NULL;
          goto out;
        }
      res->std[c] = 1.f / a;
      res->mean[c] = -b / a;
      res->has_normalization |= a != 1.f || b != 0.f;
    }
  res->output_is_softmax = imp.softmax;
  res->opset = m->opset;
  if (m->producer_name)
    res->producer = m->producer_version ? g_strdup_printf ("%s %s", m->producer_name, m->producer_version)
                                        : g_strdup (m->producer_name);

out:
  for (guint k = 0; k < imp.layers->len; k++)
    layer_clear (layer_at (&imp, k));
  g_array_unref (imp.layers);
  g_hash_table_unref (imp.values);
  g_hash_table_unref (imp.uses);
  g_ptr_array_unref (imp.all_values);
  g_clear_pointer (&outs, g_ptr_array_unref);
  g_free (needed);
  g_free (imp.norm_a);
  g_free (imp.norm_b);
  return res;
}

CleaveOnnxImport *
cleave_onnx_import_bytes (const guint8 *data, gsize size, const char *display_name, GError **error)
{
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_parse (data, size, display_name, error);

  return m ? cleave_onnx_import_model (m, display_name, error) : NULL;
}

CleaveOnnxImport *
cleave_onnx_import (const char *path, GError **error)
{
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_load (path, error);
  g_autofree char *base = g_path_get_basename (path);

  return m ? cleave_onnx_import_model (m, base, error) : NULL;
}

CleaveModel *
cleave_onnx_load_model (const char *path, GError **error)
{
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import (path, error);
  g_autofree char *base = g_path_get_basename (path);

  if (!imp)
    return NULL;
  if (imp->n_channels > 4)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "%s: %d input channels (Cleave models take at most 4)",
                   base, imp->n_channels);
      return NULL;
    }
  CleaveModel *m = cleave_model_new (g_steal_pointer (&imp->graph), imp->n_classes, NULL);
  for (int c = 0; c < imp->n_channels; c++)
    {
      m->mean[c] = imp->mean[c];
      m->std[c] = imp->std[c];
    }
  m->path = g_strdup (path);

  g_autoptr (JsonBuilder) jb = json_builder_new ();
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "file");
  json_builder_add_string_value (jb, base);
  json_builder_set_member_name (jb, "producer");
  json_builder_add_string_value (jb, imp->producer ? imp->producer : "");
  json_builder_set_member_name (jb, "opset");
  json_builder_add_int_value (jb, imp->opset);
  json_builder_set_member_name (jb, "output_is_softmax");
  json_builder_add_boolean_value (jb, imp->output_is_softmax);
  json_builder_end_object (jb);
  g_autoptr (JsonNode) root = json_builder_get_root (jb);
  g_autofree char *prov = json_to_string (root, FALSE);
  cleave_model_set_provenance (m, "onnx", prov);
  return m;
}
