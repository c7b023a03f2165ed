/* cleave-safetensors.c: reading and writing .safetensors files.
 *
 * The reader treats the file as hostile: every number in the header is
 * checked against the file before anything is allocated from it, so a
 * truncated or crafted file yields CLEAVE_ERROR_INVALID_FILE, never a crash
 * or a huge allocation. */
#include "cleave-safetensors.h"
#include "cleave-error.h"
#include "cleave-file.h"
#include "cleave-pth.h"
#include "cleave-util-private.h"

#include <string.h>
#include <math.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>

/* The reference implementation refuses headers above 100 MB; so do we, so a
 * hostile length cannot make us parse gigabytes of JSON. */
#define MAX_HEADER_LEN (100 * 1000 * 1000)
#define MAX_DIMS 8

typedef struct {
  const char *name;
  gsize size;
} DtypeInfo;

static const DtypeInfo dtypes[] = {
  { "F64", 8 }, { "F32", 4 }, { "F16", 2 }, { "BF16", 2 },
  { "I64", 8 }, { "I32", 4 }, { "I16", 2 }, { "I8", 1 },
  { "U64", 8 }, { "U32", 4 }, { "U16", 2 }, { "U8", 1 },
  { "BOOL", 1 },
};

static gsize
dtype_size (const char *dtype)
{
  for (gsize i = 0; i < G_N_ELEMENTS (dtypes); i++)
    if (strcmp (dtypes[i].name, dtype) == 0)
      return dtypes[i].size;
  return 0;
}

static void
safe_tensor_free (gpointer p)
{
  CleaveSafeTensor *t = p;

  if (t == NULL)
    return;
  g_free (t->name);
  g_free (t->dtype);
  g_free (t->data);
  g_free (t);
}

CleaveSafetensors *
cleave_safetensors_new (void)
{
  CleaveSafetensors *st = g_new0 (CleaveSafetensors, 1);

  st->tensors = g_ptr_array_new_with_free_func (safe_tensor_free);
  st->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return st;
}

void
cleave_safetensors_free (CleaveSafetensors *st)
{
  if (st == NULL)
    return;
  g_ptr_array_unref (st->tensors);
  g_hash_table_unref (st->metadata);
  g_free (st);
}

gsize
cleave_safe_tensor_numel (const CleaveSafeTensor *t)
{
  gsize n = 1;

  for (int i = 0; i < t->ndim; i++)
    n *= (gsize) t->shape[i];
  return n;
}

static char *
format_shape (const gint64 *shape, int ndim)
{
  GString *s = g_string_new ("[");

  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* ---------------------------------------------------------------- reading */

typedef struct {
  char *name;
  char *dtype;
  int ndim;
  gint64 shape[MAX_DIMS];
  guint64 begin, end;
  guint order;             /* position in the JSON, to break offset ties */
} Entry;

static void
entry_free (gpointer p)
{
  Entry *e = p;

  g_free (e->name);
  g_free (e->dtype);
  g_free (e);
}

static int
entry_cmp (gconstpointer a, gconstpointer b)
{
  const Entry *x = *(const Entry *const *) a;
  const Entry *y = *(const Entry *const *) b;

  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return x->order < y->order ? -1 : (x->order > y->order);
}

static gboolean
node_get_uint (JsonNode *node, guint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node)
      || json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static Entry *
parse_entry (const char *file, const char *name, JsonNode *node, guint64 data_size, GError **error)
{
  Entry *e;
  JsonObject *obj;
  JsonNode *n;
  JsonArray *arr;
  guint64 numel = 1, nbytes;
  gsize esize;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      cleave_invalid_file (error, file, "tensor '%s': entry is not a JSON object", name);
      return NULL;
    }
  obj = json_node_get_object (node);

  e = g_new0 (Entry, 1);
  e->name = g_strdup (name);

  n = json_object_get_member (obj, "dtype");
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    {
      cleave_invalid_file (error, file, "tensor '%s': dtype missing or not a string", name);
      goto fail;
    }
  e->dtype = g_strdup (json_node_get_string (n));
  esize = dtype_size (e->dtype);
  if (esize == 0)
    {
      cleave_invalid_file (error, file, "tensor '%s': unknown dtype '%s'", name, e->dtype);
      goto fail;
    }

  n = json_object_get_member (obj, "shape");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    {
      cleave_invalid_file (error, file, "tensor '%s': shape missing or not an array", name);
      goto fail;
    }
  arr = json_node_get_array (n);
  if (json_array_get_length (arr) > MAX_DIMS)
    {
      cleave_invalid_file (error, file, "tensor '%s': shape has %u dimensions (at most %d supported)",
               name, json_array_get_length (arr), MAX_DIMS);
      goto fail;
    }
  e->ndim = json_array_get_length (arr);
  for (int i = 0; i < e->ndim; i++)
    {
      guint64 d;

      if (!node_get_uint (json_array_get_element (arr, i), &d) || d > G_MAXINT64)
        {
          cleave_invalid_file (error, file, "tensor '%s': shape dimension %d is not a non-negative integer", name, i);
          goto fail;
        }
      e->shape[i] = (gint64) d;
      if (!g_uint64_checked_mul (&numel, numel, d))
        {
          cleave_invalid_file (error, file, "tensor '%s': shape element count overflows", name);
          goto fail;
        }
    }
  if (!g_uint64_checked_mul (&nbytes, numel, esize))
    {
      cleave_invalid_file (error, file, "tensor '%s': shape byte size overflows", name);
      goto fail;
    }

  n = json_object_get_member (obj, "data_offsets");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n) || json_array_get_length (json_node_get_array (n)) != 2
      || !node_get_uint (json_array_get_element (json_node_get_array (n), 0), &e->begin)
      || !node_get_uint (json_array_get_element (json_node_get_array (n), 1), &e->end))
    {
      cleave_invalid_file (error, file, "tensor '%s': data_offsets must be two non-negative integers", name);
      goto fail;
    }
  if (e->begin > e->end)
    {
      cleave_invalid_file (error, file, "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
               "] begin after end", name, e->begin, e->end);
      goto fail;
    }
  if (e->end > data_size)
    {
      cleave_invalid_file (error, file, "tensor '%s': data_offsets end %" G_GUINT64_FORMAT
               " exceeds data size %" G_GUINT64_FORMAT, name, e->end, data_size);
      goto fail;
    }
  if (e->end - e->begin != nbytes)
    {
      char *s = format_shape (e->shape, e->ndim);
      cleave_invalid_file (error, file, "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
               "] do not match shape %s × %s (%" G_GUINT64_FORMAT " bytes)",
               name, e->begin, e->end, s, e->dtype, nbytes);
      g_free (s);
      goto fail;
    }
  return e;

fail:
  entry_free (e);
  return NULL;
}

static gboolean
parse_metadata (const char *file, JsonNode *node, GHashTable *out, GError **error)
{
  JsonObject *obj;
  GList *members;
  gboolean ok = TRUE;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return cleave_invalid_file (error, file, "__metadata__ is not a JSON object");
  obj = json_node_get_object (node);
  members = json_object_get_members (obj);
  for (GList *l = members; l; l = l->next)
    {
      JsonNode *v = json_object_get_member (obj, l->data);

      if (!JSON_NODE_HOLDS_VALUE (v) || json_node_get_value_type (v) != G_TYPE_STRING)
        {
          ok = cleave_invalid_file (error, file, "__metadata__ '%s': value is not a string", (const char *) l->data);
          break;
        }
      {
        const char *text = json_node_get_string (v);
        g_autofree char *bad = NULL;
        /* Values that are JSON documents are parsed by their readers, which
         * cannot see an integer json-glib wrapped. */
        if ((text[0] == '{' || text[0] == '[') && !cleave_json_integers_fit (text, strlen (text), &bad))
          {
            ok = cleave_invalid_file (error, file, "__metadata__ '%s': integer %s does not fit in 64 bits",
                                      (const char *) l->data, bad);
            break;
          }
      }
      g_hash_table_replace (out, g_strdup (l->data), g_strdup (json_node_get_string (v)));
    }
  g_list_free (members);
  return ok;
}

/* json-glib parses recursively and overflows the stack on deeply nested
 * input, so the nesting depth is bounded before the parser sees it. A valid
 * header needs depth 3. */
static gboolean
json_depth_ok (const char *s, gsize len, int max_depth)
{
  int depth = 0;
  gboolean in_string = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      char c = s[i];

      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
        }
      else if (c == '"')
        in_string = TRUE;
      else if (c == '[' || c == '{')
        {
          if (++depth > max_depth)
            return FALSE;
        }
      else if (c == ']' || c == '}')
        depth--;
    }
  return TRUE;
}

/* json-glib keeps the last of two members with the same name; the parser's
 * object-member signal sees each, so a repeat is caught here. */
typedef struct {
  GHashTable *seen;     /* "OBJECT-ADDRESS NAME" */
  char *repeated;       /* the first repeated name */
} MemberCheck;

static void
on_object_member (JsonParser *parser, JsonObject *object, const char *name, gpointer user_data)
{
  MemberCheck *mc = user_data;
  char *key = g_strdup_printf ("%p %s", (void *) object, name);
  if (!g_hash_table_add (mc->seen, key) && mc->repeated == NULL)
    mc->repeated = g_strdup (name);
}

CleaveSafetensors *
cleave_safetensors_load_bytes (const guint8 *data, gsize size, const char *display_name, GError **error)
{
  const char *file = display_name ? display_name : "<memory>";
  guint64 header_len;
  const char *header;
  guint64 data_size;
  const guint8 *payload;
  g_autoptr (JsonParser) parser = NULL;
  g_autoptr (GError) json_error = NULL;
  g_autoptr (GPtrArray) entries = NULL;
  g_autoptr (GHashTable) metadata = NULL;
  JsonNode *root;
  JsonObject *obj;
  GList *members;
  gboolean ok = TRUE;
  guint order = 0;
  guint64 covered = 0;
  CleaveSafetensors *st;

  if (size < 8)
    {
      cleave_invalid_file (error, file, "header length: file is %" G_GSIZE_FORMAT " bytes, too short for the 8-byte header length", size);
      return NULL;
    }
  memcpy (&header_len, data, 8);
  header_len = GUINT64_FROM_LE (header_len);
  if (header_len > MAX_HEADER_LEN && cleave_pth_detect (data, size))
    {
      cleave_invalid_file (error, file, "a PyTorch checkpoint (torch.save), not safetensors: it holds weights only, "
                           "open it with an architecture (--arch)");
      return NULL;
    }
  if (header_len > MAX_HEADER_LEN)
    {
      cleave_invalid_file (error, file, "header length %" G_GUINT64_FORMAT " exceeds the %d-byte limit", header_len, MAX_HEADER_LEN);
      return NULL;
    }
  if (header_len > size - 8)
    {
      cleave_invalid_file (error, file, "header length %" G_GUINT64_FORMAT " exceeds the %" G_GSIZE_FORMAT
               " bytes after the length field (file truncated?)", header_len, size - 8);
      return NULL;
    }
  if (header_len < 2)
    {
      cleave_invalid_file (error, file, "header length %" G_GUINT64_FORMAT " is too small for a JSON object", header_len);
      return NULL;
    }
  header = (const char *) data + 8;
  payload = data + 8 + header_len;
  data_size = size - 8 - header_len;

  if (memchr (header, '\0', header_len) != NULL)
    {
      cleave_invalid_file (error, file, "header: JSON contains a NUL byte");
      return NULL;
    }
  if (!g_utf8_validate (header, header_len, NULL))
    {
      cleave_invalid_file (error, file, "header: JSON is not valid UTF-8");
      return NULL;
    }

  {
    g_autofree char *bad = NULL;
    if (!cleave_json_integers_fit (header, header_len, &bad))
      {
        cleave_invalid_file (error, file, "header: integer %s does not fit in 64 bits", bad);
        return NULL;
      }
  }
  if (!json_depth_ok (header, header_len, 16))
    {
      cleave_invalid_file (error, file, "header: JSON nested too deeply");
      return NULL;
    }

  parser = json_parser_new_immutable ();
  {
    MemberCheck mc = { g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL), NULL };
    gboolean parsed;
    g_signal_connect (parser, "object-member", G_CALLBACK (on_object_member), &mc);
    parsed = json_parser_load_from_data (parser, header, header_len, &json_error);
    g_signal_handlers_disconnect_by_data (parser, &mc);
    g_hash_table_unref (mc.seen);
    if (parsed && mc.repeated)
      {
        cleave_invalid_file (error, file, "header: the name '%s' appears twice", mc.repeated);
        g_free (mc.repeated);
        return NULL;
      }
    g_free (mc.repeated);
    if (!parsed)
      {
        cleave_invalid_file (error, file, "header: invalid JSON: %s", json_error->message);
        return NULL;
      }
  }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      cleave_invalid_file (error, file, "header: JSON is not an object");
      return NULL;
    }
  obj = json_node_get_object (root);

  entries = g_ptr_array_new_with_free_func (entry_free);
  metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  members = json_object_get_members (obj);
  for (GList *l = members; l && ok; l = l->next)
    {
      const char *name = l->data;
      JsonNode *node = json_object_get_member (obj, name);

      if (strcmp (name, "__metadata__") == 0)
        ok = parse_metadata (file, node, metadata, error);
      else
        {
          Entry *e = parse_entry (file, name, node, data_size, error);
          if (e == NULL)
            ok = FALSE;
          else
            {
              e->order = order++;
              g_ptr_array_add (entries, e);
            }
        }
    }
  g_list_free (members);
  if (!ok)
    return NULL;

  /* The tensors tile the data section exactly, as the format requires: no
   * overlaps, no holes, no bytes after the last one (a file with inserted or
   * appended bytes would otherwise load shifted or unnoticed). */
  g_ptr_array_sort (entries, entry_cmp);
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *prev = i ? entries->pdata[i - 1] : NULL;
      const Entry *e = entries->pdata[i];

      if (prev && e->begin < covered)
        {
          cleave_invalid_file (error, file, "tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                   "] overlap tensor '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "]",
                   e->name, e->begin, e->end, prev->name, prev->begin, prev->end);
          return NULL;
        }
      if (e->begin > covered)
        {
          cleave_invalid_file (error, file, "data: bytes %" G_GUINT64_FORMAT "–%" G_GUINT64_FORMAT
                               " belong to no tensor (before tensor '%s')", covered, e->begin, e->name);
          return NULL;
        }
      covered = MAX (covered, e->end);
    }
  if (covered != data_size)
    {
      cleave_invalid_file (error, file, "data: %" G_GUINT64_FORMAT " bytes after the last tensor "
                           "(the data section has %" G_GUINT64_FORMAT ", the tensors cover %" G_GUINT64_FORMAT ")",
                           data_size - covered, data_size, covered);
      return NULL;
    }

  /* Everything is consistent: only now allocate the tensors. */
  st = cleave_safetensors_new ();
  g_hash_table_unref (st->metadata);
  st->metadata = g_steal_pointer (&metadata);
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *e = entries->pdata[i];
      CleaveSafeTensor *t = g_new0 (CleaveSafeTensor, 1);

      t->name = g_steal_pointer (&e->name);
      t->dtype = g_steal_pointer (&e->dtype);
      t->ndim = e->ndim;
      memcpy (t->shape, e->shape, sizeof t->shape);
      t->nbytes = e->end - e->begin;
      t->data = g_malloc (MAX (t->nbytes, 1));
      memcpy (t->data, payload + e->begin, t->nbytes);
      g_ptr_array_add (st->tensors, t);
    }
  return st;
}

CleaveSafetensors *
cleave_safetensors_load (const char *path, GError **error)
{
  g_autoptr (GError) local = NULL;
  GMappedFile *map;
  CleaveSafetensors *st;

  map = g_mapped_file_new (path, FALSE, &local);
  if (map == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  /* An empty file maps to NULL contents; load_bytes rejects size 0 before reading. */
  st = cleave_safetensors_load_bytes ((const guint8 *) g_mapped_file_get_contents (map),
                                      g_mapped_file_get_length (map), path, error);
  g_mapped_file_unref (map);
  return st;
}

/* ---------------------------------------------------------------- writing */

static int
str_cmp (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static JsonNode *
build_header (const CleaveSafetensors *st)
{
  g_autoptr (JsonBuilder) b = json_builder_new_immutable ();
  guint64 offset = 0;

  json_builder_begin_object (b);
  if (g_hash_table_size (st->metadata) > 0)
    {
      /* Sorted so that equal contents give byte-identical files. */
      g_autofree gpointer *keys = g_hash_table_get_keys_as_array (st->metadata, NULL);
      guint n = g_hash_table_size (st->metadata);

      qsort (keys, n, sizeof (gpointer), str_cmp);
      json_builder_set_member_name (b, "__metadata__");
      json_builder_begin_object (b);
      for (guint i = 0; i < n; i++)
        {
          json_builder_set_member_name (b, keys[i]);
          json_builder_add_string_value (b, g_hash_table_lookup (st->metadata, keys[i]));
        }
      json_builder_end_object (b);
    }
  for (guint i = 0; i < st->tensors->len; i++)
    {
      const CleaveSafeTensor *t = st->tensors->pdata[i];

      json_builder_set_member_name (b, t->name);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "dtype");
      json_builder_add_string_value (b, t->dtype);
      json_builder_set_member_name (b, "shape");
      json_builder_begin_array (b);
      for (int d = 0; d < t->ndim; d++)
        json_builder_add_int_value (b, t->shape[d]);
      json_builder_end_array (b);
      json_builder_set_member_name (b, "data_offsets");
      json_builder_begin_array (b);
      json_builder_add_int_value (b, (gint64) offset);
      json_builder_add_int_value (b, (gint64) (offset + t->nbytes));
      json_builder_end_array (b);
      json_builder_end_object (b);
      offset += t->nbytes;
    }
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

gboolean
cleave_safetensors_save (const CleaveSafetensors *st, const char *path, GError **error)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) local = NULL;
  g_autofree char *json = NULL;
  gsize json_len, header_len, total, pos;
  guint64 le;
  guint8 *buf;
  gboolean ok;

  g_return_val_if_fail (st != NULL && path != NULL, FALSE);

  for (guint i = 0; i < st->tensors->len; i++)
    {
      const CleaveSafeTensor *t = st->tensors->pdata[i];
      gsize es = dtype_size (t->dtype);

      if (es == 0 || t->ndim < 0 || t->ndim > MAX_DIMS || cleave_safe_tensor_numel (t) * es != t->nbytes)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "%s: tensor '%s': dtype %s and shape do not match its %" G_GSIZE_FORMAT " bytes",
                       path, t->name, t->dtype, t->nbytes);
          return FALSE;
        }
    }

  root = build_header (st);
  json_generator_set_root (gen, root);
  json = json_generator_to_data (gen, &json_len);
  /* Pad with spaces so the data section starts 8-byte aligned, as the
   * reference writer does; readers may then map tensors in place. */
  header_len = (json_len + 7) & ~(gsize) 7;

  total = 8 + header_len;
  for (guint i = 0; i < st->tensors->len; i++)
    total += ((const CleaveSafeTensor *) st->tensors->pdata[i])->nbytes;

  buf = g_try_malloc (total);
  if (buf == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY,
                   "%s: cannot allocate %" G_GSIZE_FORMAT " bytes to write", path, total);
      return FALSE;
    }
  le = GUINT64_TO_LE ((guint64) header_len);
  memcpy (buf, &le, 8);
  memcpy (buf + 8, json, json_len);
  memset (buf + 8 + json_len, ' ', header_len - json_len);
  pos = 8 + header_len;
  for (guint i = 0; i < st->tensors->len; i++)
    {
      const CleaveSafeTensor *t = st->tensors->pdata[i];
      if (t->nbytes)
        memcpy (buf + pos, t->data, t->nbytes);
      pos += t->nbytes;
    }

  /* Readers never see a half-written model. */
  ok = cleave_file_replace (path, buf, total, 0666, error);
  g_free (buf);
  return ok;
}

/* ---------------------------------------------------------------- access */

const CleaveSafeTensor *
cleave_safetensors_find (const CleaveSafetensors *st, const char *name)
{
  for (guint i = 0; i < st->tensors->len; i++)
    {
      const CleaveSafeTensor *t = st->tensors->pdata[i];
      if (strcmp (t->name, name) == 0)
        return t;
    }
  return NULL;
}

static void
add_tensor (CleaveSafetensors *st, const char *name, const char *dtype, gsize esize,
            int ndim, const int *shape, const void *data)
{
  CleaveSafeTensor *t;
  gsize numel = 1;

  g_return_if_fail (st != NULL && name != NULL);
  g_return_if_fail (ndim >= 0 && ndim <= MAX_DIMS);

  t = g_new0 (CleaveSafeTensor, 1);
  t->name = g_strdup (name);
  t->dtype = g_strdup (dtype);
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    {
      g_return_if_fail (shape[i] >= 0);
      t->shape[i] = shape[i];
      numel *= (gsize) shape[i];
    }
  t->nbytes = numel * esize;
  t->data = g_malloc (MAX (t->nbytes, 1));
  if (t->nbytes)
    memcpy (t->data, data, t->nbytes);

  /* A name must appear once in the JSON header: adding again replaces. */
  for (guint i = 0; i < st->tensors->len; i++)
    {
      CleaveSafeTensor *old = st->tensors->pdata[i];
      if (strcmp (old->name, name) == 0)
        {
          st->tensors->pdata[i] = t;
          safe_tensor_free (old);
          return;
        }
    }
  g_ptr_array_add (st->tensors, t);
}

void
cleave_safetensors_add_f32 (CleaveSafetensors *st, const char *name, int ndim, const int *shape, const float *data)
{
  G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);
  add_tensor (st, name, "F32", 4, ndim, shape, data);
}

void
cleave_safetensors_add_i32 (CleaveSafetensors *st, const char *name, int ndim, const int *shape, const gint32 *data)
{
  add_tensor (st, name, "I32", 4, ndim, shape, data);
}

void
cleave_safetensors_set_metadata (CleaveSafetensors *st, const char *key, const char *value)
{
  g_return_if_fail (st != NULL && key != NULL && value != NULL);
  g_hash_table_replace (st->metadata, g_strdup (key), g_strdup (value));
}

const char *
cleave_safetensors_get_metadata (const CleaveSafetensors *st, const char *key)
{
  return g_hash_table_lookup (st->metadata, key);
}

/* ---------------------------------------------------------------- conversion */

static float
half_to_float (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000) << 16;
  guint32 exp = (h >> 10) & 0x1f;
  guint32 mant = h & 0x3ff;
  guint32 bits;
  float f;

  if (exp == 0)
    {
      /* Zero or subnormal: value is mant × 2^-24, exact in float. */
      f = ldexpf ((float) mant, -24);
      return sign ? -f : f;
    }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13);
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  memcpy (&f, &bits, 4);
  return f;
}

/* Reads element @i of a little-endian tensor as double (exact for every
 * supported dtype except I64/U64 beyond 2^53). */
static double
element_as_double (const CleaveSafeTensor *t, gsize i)
{
  const guint8 *p = t->data;
  const char *d = t->dtype;

#define LOAD(type, size) ({ type v_; memcpy (&v_, p + i * size, size); v_; })
  if (strcmp (d, "F32") == 0)
    return LOAD (float, 4);
  if (strcmp (d, "F64") == 0)
    return LOAD (double, 8);
  if (strcmp (d, "F16") == 0)
    return half_to_float (GUINT16_FROM_LE (LOAD (guint16, 2)));
  if (strcmp (d, "BF16") == 0)
    {
      guint32 bits = (guint32) GUINT16_FROM_LE (LOAD (guint16, 2)) << 16;
      float f;
      memcpy (&f, &bits, 4);
      return f;
    }
  if (strcmp (d, "I64") == 0)
    return (double) (gint64) GUINT64_FROM_LE (LOAD (guint64, 8));
  if (strcmp (d, "U64") == 0)
    return (double) GUINT64_FROM_LE (LOAD (guint64, 8));
  if (strcmp (d, "I32") == 0)
    return (gint32) GUINT32_FROM_LE (LOAD (guint32, 4));
  if (strcmp (d, "U32") == 0)
    return GUINT32_FROM_LE (LOAD (guint32, 4));
  if (strcmp (d, "I16") == 0)
    return (gint16) GUINT16_FROM_LE (LOAD (guint16, 2));
  if (strcmp (d, "U16") == 0)
    return GUINT16_FROM_LE (LOAD (guint16, 2));
  if (strcmp (d, "I8") == 0)
    return (gint8) p[i];
  if (strcmp (d, "U8") == 0)
    return p[i];
  if (strcmp (d, "BOOL") == 0)
    return p[i] != 0;
#undef LOAD
  return NAN;
}

static gboolean
check_tensor (const CleaveSafeTensor *t, const char *file, GError **error)
{
  gsize es = dtype_size (t->dtype);

  if (es == 0)
    return cleave_invalid_file (error, file ? file : "<memory>", "tensor '%s': unsupported dtype '%s'", t->name, t->dtype);
  if (cleave_safe_tensor_numel (t) * es != t->nbytes)
    return cleave_invalid_file (error, file ? file : "<memory>", "tensor '%s': %" G_GSIZE_FORMAT
                    " bytes do not match its shape", t->name, t->nbytes);
  return TRUE;
}

float *
cleave_safe_tensor_to_f32 (const CleaveSafeTensor *t, gsize expected_numel, const char *file, GError **error)
{
  gsize n;
  float *out;

  g_return_val_if_fail (t != NULL, NULL);
  if (!check_tensor (t, file, error))
    return NULL;
  n = cleave_safe_tensor_numel (t);
  if (expected_numel != 0 && n != expected_numel)
    {
      g_autofree char *s = format_shape (t->shape, t->ndim);
      cleave_invalid_file (error, file ? file : "<memory>", "tensor '%s': shape %s has %" G_GSIZE_FORMAT
               " elements, expected %" G_GSIZE_FORMAT, t->name, s, n, expected_numel);
      return NULL;
    }
  out = g_try_new (float, MAX (n, 1));
  if (out == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory",
                   file ? file : "<memory>", t->name);
      return NULL;
    }
  if (strcmp (t->dtype, "F32") == 0)
    memcpy (out, t->data, n * 4);
  else
    for (gsize i = 0; i < n; i++)
      out[i] = (float) element_as_double (t, i);
  return out;
}

gint32 *
cleave_safe_tensor_to_i32 (const CleaveSafeTensor *t, const char *file, GError **error)
{
  gsize n;
  gint32 *out;
  gboolean is_float;

  g_return_val_if_fail (t != NULL, NULL);
  if (!check_tensor (t, file, error))
    return NULL;
  n = cleave_safe_tensor_numel (t);
  is_float = t->dtype[0] == 'F' || (t->dtype[0] == 'B' && t->dtype[1] == 'F');
  out = g_try_new (gint32, MAX (n, 1));
  if (out == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory",
                   file ? file : "<memory>", t->name);
      return NULL;
    }
  for (gsize i = 0; i < n; i++)
    {
      gint64 v;

      if (strcmp (t->dtype, "I64") == 0)
        {
          guint64 u;
          memcpy (&u, t->data + i * 8, 8);
          v = (gint64) GUINT64_FROM_LE (u);
        }
      else if (strcmp (t->dtype, "U64") == 0)
        {
          guint64 u;
          memcpy (&u, t->data + i * 8, 8);
          u = GUINT64_FROM_LE (u);
          v = u > G_MAXINT32 ? (gint64) G_MAXINT32 + 1 : (gint64) u;
        }
      else
        {
          double d = element_as_double (t, i);
          /* Float tensors are accepted when they hold exact integers (some
           * exporters store indices as floats). */
          if (is_float && (d != floor (d) || !isfinite (d)))
            {
              cleave_invalid_file (error, file ? file : "<memory>", "tensor '%s': element %" G_GSIZE_FORMAT
                       " (%g) of %s tensor is not an integer", t->name, i, d, t->dtype);
              g_free (out);
              return NULL;
            }
          v = d < G_MININT32 ? (gint64) G_MININT32 - 1 : d > G_MAXINT32 ? (gint64) G_MAXINT32 + 1 : (gint64) d;
        }
      if (v < G_MININT32 || v > G_MAXINT32)
        {
          cleave_invalid_file (error, file ? file : "<memory>", "tensor '%s': element %" G_GSIZE_FORMAT
                   " does not fit in 32 bits", t->name, i);
          g_free (out);
          return NULL;
        }
      out[i] = (gint32) v;
    }
  return out;
}
