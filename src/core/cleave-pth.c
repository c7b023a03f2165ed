/* cleave-pth.c: PyTorch checkpoints read without running them (see cleave-pth.h).
 *
 * The pickle machine below knows only plain data (None, bools, ints, floats,
 * strings, tuples, lists, dicts) plus four kinds of objects built from the
 * allowed globals: an empty OrderedDict, a storage (from a persistent id), a
 * tensor (from _rebuild_tensor_v2) and a parameter (a tensor). Values live in
 * an arena freed at once, so shared and even cyclic references (memo, BUILD)
 * need no reference counts, and nothing recurses over them. */
#include "cleave-pth.h"
#include "cleave-zip-private.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <string.h>

#define MAX_DIMS   8
#define MAX_STACK  (1 << 20)   /* values on the pickle stack */
#define MAX_MARKS  4096        /* nested MARKs */
#define MAX_MEMO   (1 << 22)   /* memo entries */
#define MAX_GLOBAL 256         /* bytes of a GLOBAL's module or name */
#define LEGACY_PROTOCOL 1001

/* The legacy format's first pickle: protocol 2, LONG1 0x1950a86a20f9469cfc6c, STOP. */
static const guint8 legacy_magic[15] = {
  0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e
};

typedef enum {
  PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL, PV_STORAGE, PV_TENSOR
} PvKind;

static const char *const kind_names[] = {
  "None", "bool", "int", "float", "str", "tuple", "list", "dict", "global", "storage", "tensor"
};

/* The globals a state_dict is made of; everything else is refused. */
enum { G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_PARAMETER, G_REBUILD_PARAMETER_WITH_STATE, G_FIRST_STORAGE };

static const struct {
  const char *module, *name;
  const char *dtype;   /* storage type tags: safetensors dtype and element size */
  int esize;
} globals[] = {
  { "collections", "OrderedDict", NULL, 0 },
  { "torch._utils", "_rebuild_tensor_v2", NULL, 0 },
  { "torch._utils", "_rebuild_parameter", NULL, 0 },
  { "torch._utils", "_rebuild_parameter_with_state", NULL, 0 },
  { "torch", "FloatStorage", "F32", 4 },
  { "torch", "DoubleStorage", "F64", 8 },
  { "torch", "HalfStorage", "F16", 2 },
  { "torch", "BFloat16Storage", "BF16", 2 },
  { "torch", "LongStorage", "I64", 8 },
  { "torch", "IntStorage", "I32", 4 },
  { "torch", "ShortStorage", "I16", 2 },
  { "torch", "CharStorage", "I8", 1 },
  { "torch", "ByteStorage", "U8", 1 },
  { "torch", "BoolStorage", "BOOL", 1 },
};

typedef struct {
  char *key;
  int type;              /* index of its storage type tag in globals[] */
  guint64 numel;
  const guint8 *bytes;   /* numel × esize bytes in the file; NULL until located */
} Storage;

typedef struct {
  Storage *storage;
  gint64 offset;
  int ndim;
  gint64 size[MAX_DIMS], stride[MAX_DIMS];
} Tensor;

typedef struct {
  PvKind kind;
  union {
    gint64 i;
    double f;
    char *s;             /* valid UTF-8 without NUL */
    GPtrArray *items;    /* tuple, list; dict as key, value, key, value... (not owned) */
    int global;
    Storage *storage;
    Tensor *tensor;
  } u;
} Pv;

typedef struct {
  const char *file;
  const char *part;          /* the pickle being read, for errors: "data.pkl" */
  GPtrArray *arena;          /* every Pv */
  GHashTable *storages;      /* key -> Storage */
  const CleaveZip *zip;      /* zip format: storages are located as they are named */
  const char *prefix;        /* zip format: "archive/" */
} Ctx;

static void
pv_free (gpointer p)
{
  Pv *v = p;
  if (v->kind == PV_STR)
    g_free (v->u.s);
  else if (v->kind == PV_TUPLE || v->kind == PV_LIST || v->kind == PV_DICT)
    g_ptr_array_unref (v->u.items);
  else if (v->kind == PV_TENSOR)
    g_free (v->u.tensor);
  g_free (v);
}

static void
storage_free (gpointer p)
{
  Storage *s = p;
  g_free (s->key);
  g_free (s);
}

static Pv *
pv_new (Ctx *c, PvKind kind)
{
  Pv *v = g_new0 (Pv, 1);
  v->kind = kind;
  if (kind == PV_TUPLE || kind == PV_LIST || kind == PV_DICT)
    v->u.items = g_ptr_array_new ();
  g_ptr_array_add (c->arena, v);
  return v;
}

/* "FILE: PART offset N: message". */
static gboolean
fail_at_valist (Ctx *c, gsize at, int code, GError **error, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  g_set_error (error, CLEAVE_ERROR, code, "%s: %s offset %" G_GSIZE_FORMAT ": %s", c->file, c->part, at, msg);
  return FALSE;
}

static gboolean fail_at (Ctx *c, gsize at, int code, GError **error, const char *fmt, ...) G_GNUC_PRINTF (5, 6);

static gboolean
fail_at (Ctx *c, gsize at, int code, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fail_at_valist (c, at, code, error, fmt, ap);
  va_end (ap);
  return FALSE;
}

/* ---------------------------------------------------------------- the machine */

typedef struct {
  Ctx *c;
  const guint8 *p;
  gsize n, pos, at;          /* at: offset of the opcode being run */
  GPtrArray *stack;
  GArray *marks;             /* of guint: stack length at each MARK */
  GHashTable *memo;          /* index -> Pv */
  GError **error;
} Machine;

static gboolean bad (Machine *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
static gboolean refuse (Machine *m, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* A malformed pickle, at the opcode being run. */
static gboolean
bad (Machine *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fail_at_valist (m->c, m->at, CLEAVE_ERROR_INVALID_FILE, m->error, fmt, ap);
  va_end (ap);
  return FALSE;
}

/* A well-formed pickle asking for something a state_dict never needs. */
static gboolean
refuse (Machine *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fail_at_valist (m->c, m->at, CLEAVE_ERROR_UNSUPPORTED, m->error, fmt, ap);
  va_end (ap);
  return FALSE;
}

static gboolean
need (Machine *m, gsize k)
{
  if (m->n - m->pos < k)
    return bad (m, "opcode 0x%02x needs %" G_GSIZE_FORMAT
                " bytes, the pickle ends after %" G_GSIZE_FORMAT " (truncated?)", m->p[m->at], k, m->n - m->pos);
  return TRUE;
}

static guint64
read_le (Machine *m, int k)
{
  guint64 v = 0;
  for (int i = 0; i < k; i++)
    v |= (guint64) m->p[m->pos + i] << (8 * i);
  m->pos += k;
  return v;
}

static guint
top_mark (Machine *m)
{
  return m->marks->len ? g_array_index (m->marks, guint, m->marks->len - 1) : 0;
}

static gboolean
push (Machine *m, Pv *v)
{
  if (m->stack->len >= MAX_STACK)
    return bad (m, "pickle stack deeper than %d values", MAX_STACK);
  g_ptr_array_add (m->stack, v);
  return TRUE;
}

/* Pops one value above the current mark, or fails. */
static Pv *
pop (Machine *m)
{
  if (m->stack->len <= top_mark (m))
    {
      bad (m, "opcode 0x%02x pops an empty stack", m->p[m->at]);
      return NULL;
    }
  return g_ptr_array_steal_index (m->stack, m->stack->len - 1);
}

static Pv *
peek (Machine *m, PvKind kind)
{
  Pv *v;
  if (m->stack->len <= top_mark (m))
    {
      bad (m, "opcode 0x%02x needs a value on the stack", m->p[m->at]);
      return NULL;
    }
  v = m->stack->pdata[m->stack->len - 1];
  if (v->kind != kind)
    {
      bad (m, "opcode 0x%02x needs a %s, found a %s",
           m->p[m->at], kind_names[kind], kind_names[v->kind]);
      return NULL;
    }
  return v;
}

/* Moves the values above the last MARK into @into (NULL: drops them) and
 * removes the mark. */
static gboolean
pop_mark (Machine *m, GPtrArray *into)
{
  guint mark;
  if (m->marks->len == 0)
    return bad (m, "opcode 0x%02x without a MARK", m->p[m->at]);
  mark = top_mark (m);
  g_array_set_size (m->marks, m->marks->len - 1);
  for (guint i = mark; into && i < m->stack->len; i++)
    g_ptr_array_add (into, m->stack->pdata[i]);
  g_ptr_array_set_size (m->stack, mark);
  return TRUE;
}

static gboolean
op_string (Machine *m, int len_bytes)
{
  guint64 len;
  Pv *v;
  if (!need (m, len_bytes))
    return FALSE;
  len = read_le (m, len_bytes);
  if (!need (m, len))
    return FALSE;
  if (!g_utf8_validate_len ((const char *) m->p + m->pos, len, NULL))
    return bad (m, "string is not valid UTF-8 (or holds a NUL)");
  v = pv_new (m->c, PV_STR);
  v->u.s = g_strndup ((const char *) m->p + m->pos, len);
  m->pos += len;
  return push (m, v);
}

static gboolean
op_int (Machine *m, gint64 i)
{
  Pv *v = pv_new (m->c, PV_INT);
  v->u.i = i;
  return push (m, v);
}

static gboolean
op_long1 (Machine *m)
{
  guint k;
  guint64 u;
  if (!need (m, 1))
    return FALSE;
  k = m->p[m->pos++];
  if (k > 8)
    return bad (m, "integer of %u bytes is too large", k);
  if (!need (m, k))
    return FALSE;
  u = read_le (m, k);
  if (k > 0 && k < 8 && (u >> (8 * k - 1)) & 1)
    u |= ~(guint64) 0 << (8 * k);   /* sign extension */
  return op_int (m, (gint64) u);
}

static gboolean
op_float (Machine *m)
{
  guint64 bits = 0;
  Pv *v;
  if (!need (m, 8))
    return FALSE;
  for (int i = 0; i < 8; i++)   /* big-endian */
    bits = bits << 8 | m->p[m->pos + i];
  m->pos += 8;
  v = pv_new (m->c, PV_FLOAT);
  memcpy (&v->u.f, &bits, 8);
  return push (m, v);
}

static gboolean
push_global (Machine *m, const char *module, const char *name)
{
  Pv *v;
  for (gsize i = 0; i < G_N_ELEMENTS (globals); i++)
    if (strcmp (globals[i].module, module) == 0 && strcmp (globals[i].name, name) == 0)
      {
        v = pv_new (m->c, PV_GLOBAL);
        v->u.global = (int) i;
        return push (m, v);
      }
  if (g_str_has_suffix (name, "Storage") && g_str_equal (module, "torch"))
    return refuse (m, "storage type 'torch.%s' is not supported "
                   "(float, double, half, bfloat16 and integer storages are)", name);
  return refuse (m, "global '%s.%s' refused: a state_dict needs only "
                 "tensors, and Cleave never runs code from a checkpoint (save model.state_dict(), not the model)",
                 module, name);
}

/* GLOBAL: "module\nname\n". */
static gboolean
op_global (Machine *m)
{
  char parts[2][MAX_GLOBAL + 1];
  for (int k = 0; k < 2; k++)
    {
      const guint8 *nl = memchr (m->p + m->pos, '\n', MIN (m->n - m->pos, (gsize) MAX_GLOBAL + 1));
      gsize len;
      if (nl == NULL)
        return bad (m, "GLOBAL: %s name unterminated or longer than %d bytes",
                    k ? "attribute" : "module", MAX_GLOBAL);
      len = nl - (m->p + m->pos);
      memcpy (parts[k], m->p + m->pos, len);
      parts[k][len] = 0;
      if (strlen (parts[k]) != len || !g_utf8_validate (parts[k], len, NULL))
        return bad (m, "GLOBAL: name is not valid UTF-8");
      m->pos += len + 1;
    }
  return push_global (m, parts[0], parts[1]);
}

static gboolean
op_stack_global (Machine *m)
{
  Pv *name = pop (m), *module = name ? pop (m) : NULL;
  if (module == NULL)
    return FALSE;
  if (name->kind != PV_STR || module->kind != PV_STR)
    return bad (m, "STACK_GLOBAL needs two strings");
  return push_global (m, module->u.s, name->u.s);
}

static gboolean
op_tuple (Machine *m, int k)
{
  Pv *t = pv_new (m->c, PV_TUPLE);
  if (k < 0)
    {
      if (!pop_mark (m, t->u.items))
        return FALSE;
    }
  else
    {
      g_ptr_array_set_size (t->u.items, k);
      for (int i = k - 1; i >= 0; i--)
        if ((t->u.items->pdata[i] = pop (m)) == NULL)
          return FALSE;
    }
  return push (m, t);
}

/* APPEND/APPENDS/SETITEM/SETITEMS/LIST/DICT: the values above the mark (or
 * the last @k) go into the list or dict below them. */
static gboolean
op_fill (Machine *m, PvKind kind, int k)
{
  g_autoptr(GPtrArray) items = g_ptr_array_new ();
  Pv *target;
  if (k < 0)
    {
      if (!pop_mark (m, items))
        return FALSE;
    }
  else
    {
      g_ptr_array_set_size (items, k);
      for (int i = k - 1; i >= 0; i--)
        if ((items->pdata[i] = pop (m)) == NULL)
          return FALSE;
    }
  if (kind == PV_DICT && items->len % 2)
    return bad (m, "dict items come in an odd number (%u)", items->len);
  if ((target = peek (m, kind)) == NULL)
    return FALSE;
  for (guint i = 0; i < items->len; i++)
    g_ptr_array_add (target->u.items, items->pdata[i]);
  return TRUE;
}

/* LIST/DICT: a new list or dict of the values above the mark. */
static gboolean
op_from_mark (Machine *m, PvKind kind)
{
  Pv *v = pv_new (m->c, kind);
  if (!pop_mark (m, v->u.items))
    return FALSE;
  if (kind == PV_DICT && v->u.items->len % 2)
    return bad (m, "dict items come in an odd number (%u)", v->u.items->len);
  return push (m, v);
}

static gboolean
op_memo (Machine *m, int get, int len_bytes)
{
  guint64 idx;
  if (len_bytes > 0)
    {
      if (!need (m, len_bytes))
        return FALSE;
      idx = read_le (m, len_bytes);
    }
  else
    idx = g_hash_table_size (m->memo);   /* MEMOIZE */
  if (get)
    {
      Pv *v = g_hash_table_lookup (m->memo, GSIZE_TO_POINTER ((gsize) idx));
      if (v == NULL)
        return bad (m, "memo entry %" G_GUINT64_FORMAT " was never stored", idx);
      return push (m, v);
    }
  if (m->stack->len <= top_mark (m))
    return bad (m, "memo store from an empty stack");
  if (g_hash_table_size (m->memo) >= MAX_MEMO && !g_hash_table_contains (m->memo, GSIZE_TO_POINTER ((gsize) idx)))
    return bad (m, "more than %d memo entries", MAX_MEMO);
  g_hash_table_insert (m->memo, GSIZE_TO_POINTER ((gsize) idx), m->stack->pdata[m->stack->len - 1]);
  return TRUE;
}

static gboolean
int_of (Pv *v, gint64 *out)
{
  if (v->kind != PV_INT)
    return FALSE;
  *out = v->u.i;
  return TRUE;
}

/* A tuple of @ndim ints into @out. */
static gboolean
int_tuple (Pv *v, gint64 *out, int *ndim)
{
  if (v->kind != PV_TUPLE || v->u.items->len > MAX_DIMS)
    return FALSE;
  *ndim = (int) v->u.items->len;
  for (int i = 0; i < *ndim; i++)
    if (!int_of (v->u.items->pdata[i], &out[i]))
      return FALSE;
  return TRUE;
}

/* _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
 * backward_hooks[, metadata]). Bounds are checked when the tensor is copied. */
static Pv *
rebuild_tensor (Machine *m, GPtrArray *a)
{
  Tensor t = { 0 };
  int nstride = -1;
  Pv *v;
  if ((a->len != 6 && a->len != 7) || ((Pv *) a->pdata[0])->kind != PV_STORAGE ||
      !int_of (a->pdata[1], &t.offset) || !int_tuple (a->pdata[2], t.size, &t.ndim) ||
      !int_tuple (a->pdata[3], t.stride, &nstride) || nstride != t.ndim)
    {
      bad (m, "_rebuild_tensor_v2 needs (storage, offset, size, "
           "stride, ...) with at most %d dimensions and as many strides as sizes", MAX_DIMS);
      return NULL;
    }
  t.storage = ((Pv *) a->pdata[0])->u.storage;
  v = pv_new (m->c, PV_TENSOR);
  v->u.tensor = g_memdup2 (&t, sizeof t);
  return v;
}

static gboolean
op_reduce (Machine *m)
{
  Pv *args = pop (m), *fn = args ? pop (m) : NULL, *v = NULL;
  GPtrArray *a;
  if (fn == NULL)
    return FALSE;
  if (fn->kind != PV_GLOBAL || args->kind != PV_TUPLE)
    return bad (m, "REDUCE needs a global and a tuple, found a %s and a %s",
                kind_names[fn->kind], kind_names[args->kind]);
  a = args->u.items;
  switch (fn->u.global)
    {
    case G_ORDERED_DICT:
      if (a->len != 0)
        return bad (m, "OrderedDict with arguments is not supported");
      v = pv_new (m->c, PV_DICT);
      break;
    case G_REBUILD_TENSOR_V2:
      v = rebuild_tensor (m, a);
      break;
    case G_REBUILD_PARAMETER:
    case G_REBUILD_PARAMETER_WITH_STATE:
      if (a->len != (fn->u.global == G_REBUILD_PARAMETER ? 3u : 4u) || ((Pv *) a->pdata[0])->kind != PV_TENSOR)
        return bad (m, "%s needs (tensor, requires_grad, hooks%s)",
                    globals[fn->u.global].name, fn->u.global == G_REBUILD_PARAMETER ? "" : ", state");
      v = a->pdata[0];
      break;
    default:
      return bad (m, "'torch.%s' is a storage type tag, not a function",
                  globals[fn->u.global].name);
    }
  return v != NULL && push (m, v);
}

/* BUILD sets an object's state; for an OrderedDict (its _metadata) or a
 * tensor it carries nothing a state_dict needs, so the state is dropped. */
static gboolean
op_build (Machine *m)
{
  Pv *state = pop (m), *obj;
  if (state == NULL)
    return FALSE;
  if (m->stack->len <= top_mark (m))
    return bad (m, "BUILD without an object");
  obj = m->stack->pdata[m->stack->len - 1];
  if (obj->kind != PV_DICT && obj->kind != PV_TENSOR)
    return bad (m, "BUILD on a %s", kind_names[obj->kind]);
  return TRUE;
}

/* The storage a persistent id names: ('storage', type tag, key, location,
 * numel) in the zip format, with a sixth item (None: not a view) in the
 * legacy format. In the zip format its bytes are PREFIX/data/KEY. */
static gboolean
op_persid (Machine *m)
{
  Pv *pid = pop (m), *v;
  GPtrArray *a;
  Pv *tag, *key;
  gint64 numel;
  Storage *s;
  if (pid == NULL)
    return FALSE;
  a = pid->kind == PV_TUPLE ? pid->u.items : NULL;
  if (a == NULL || a->len < 5 || a->len > 6 || ((Pv *) a->pdata[0])->kind != PV_STR ||
      !g_str_equal (((Pv *) a->pdata[0])->u.s, "storage") || (tag = a->pdata[1])->kind != PV_GLOBAL ||
      tag->u.global < G_FIRST_STORAGE || (key = a->pdata[2])->kind != PV_STR || !int_of (a->pdata[4], &numel) || numel < 0)
    return bad (m, "persistent id is not ('storage', torch.*Storage, "
                "key, location, size)");
  if (a->len == 6 && ((Pv *) a->pdata[5])->kind != PV_NONE)
    return refuse (m, "storage '%s' is a view of another storage "
                   "(written by PyTorch before 0.4): not supported", key->u.s);
  if ((guint64) numel > G_MAXUINT64 / 8)
    return bad (m, "storage '%s': size %" G_GINT64_FORMAT " is too large",
                key->u.s, numel);
  s = g_hash_table_lookup (m->c->storages, key->u.s);
  if (s != NULL && (s->type != tag->u.global || s->numel != (guint64) numel))
    return bad (m, "storage '%s' is named twice with different "
                "types or sizes", key->u.s);
  if (s == NULL)
    {
      s = g_new0 (Storage, 1);
      s->key = g_strdup (key->u.s);
      s->type = tag->u.global;
      s->numel = (guint64) numel;
      g_hash_table_insert (m->c->storages, s->key, s);
      if (m->c->zip)
        {
          g_autofree char *entry = g_strconcat (m->c->prefix, "data/", s->key, NULL);
          const CleaveZipEntry *e = cleave_zip_find (m->c->zip, entry);
          guint64 want = s->numel * (guint64) globals[s->type].esize;
          if (e == NULL)
            return bad (m, "storage '%s': zip entry '%s' is missing",
                        s->key, entry);
          if (e->size != want)
            return bad (m, "storage '%s': zip entry '%s' has %"
                        G_GUINT64_FORMAT " bytes, the pickle claims %" G_GUINT64_FORMAT " elements of %d bytes",
                        s->key, entry, e->size, s->numel, globals[s->type].esize);
          s->bytes = e->data;
        }
    }
  v = pv_new (m->c, PV_STORAGE);
  v->u.storage = s;
  return push (m, v);
}

static gboolean
op_simple (Machine *m, PvKind kind, gint64 i)
{
  Pv *v = pv_new (m->c, kind);
  if (kind == PV_BOOL)
    v->u.i = i;
  return push (m, v);
}

static gboolean
op_pop (Machine *m, guint8 op)
{
  if (op == '1')
    return pop_mark (m, NULL);
  if (m->stack->len > top_mark (m))   /* POP: a value, else the mark itself */
    return pop (m) != NULL;
  return pop_mark (m, NULL);
}

static gboolean
op_dup (Machine *m)
{
  if (m->stack->len <= top_mark (m))
    return bad (m, "DUP on an empty stack");
  return push (m, m->stack->pdata[m->stack->len - 1]);
}

static gboolean
op_mark (Machine *m)
{
  guint len = m->stack->len;
  if (m->marks->len >= MAX_MARKS)
    return bad (m, "MARKs nested deeper than %d", MAX_MARKS);
  g_array_append_val (m->marks, len);
  return TRUE;
}

static gboolean
op_proto (Machine *m)
{
  if (!need (m, 1))
    return FALSE;
  if (m->p[m->pos] < 2 || m->p[m->pos] > 5)
    return refuse (m, "pickle protocol %u is not supported (2 to 5 are)",
                   m->p[m->pos]);
  m->pos++;
  return TRUE;
}

static gboolean
op_frame (Machine *m)
{
  if (!need (m, 8))
    return FALSE;
  m->pos += 8;
  return TRUE;
}

static gboolean
run_op (Machine *m, guint8 op)
{
  switch (op)
    {
    case 0x80: return op_proto (m);
    case 0x95: return op_frame (m);
    case '(': return op_mark (m);
    case '0': case '1': return op_pop (m, op);
    case '2': return op_dup (m);
    case 'N': return op_simple (m, PV_NONE, 0);
    case 0x88: return op_simple (m, PV_BOOL, 1);
    case 0x89: return op_simple (m, PV_BOOL, 0);
    case 'J': return need (m, 4) && op_int (m, (gint32) (guint32) read_le (m, 4));
    case 'K': return need (m, 1) && op_int (m, (gint64) read_le (m, 1));
    case 'M': return need (m, 2) && op_int (m, (gint64) read_le (m, 2));
    case 0x8a: return op_long1 (m);
    case 'G': return op_float (m);
    case 'X': return op_string (m, 4);
    case 0x8c: return op_string (m, 1);
    case 0x8d: return op_string (m, 8);
    case ')': return op_tuple (m, 0);
    case 't': return op_tuple (m, -1);
    case 0x85: return op_tuple (m, 1);
    case 0x86: return op_tuple (m, 2);
    case 0x87: return op_tuple (m, 3);
    case ']': return push (m, pv_new (m->c, PV_LIST));
    case '}': return push (m, pv_new (m->c, PV_DICT));
    case 'l': return op_from_mark (m, PV_LIST);
    case 'd': return op_from_mark (m, PV_DICT);
    case 'a': return op_fill (m, PV_LIST, 1);
    case 'e': return op_fill (m, PV_LIST, -1);
    case 's': return op_fill (m, PV_DICT, 2);
    case 'u': return op_fill (m, PV_DICT, -1);
    case 'c': return op_global (m);
    case 0x93: return op_stack_global (m);
    case 'R': return op_reduce (m);
    case 'b': return op_build (m);
    case 'Q': return op_persid (m);
    case 'q': return op_memo (m, FALSE, 1);
    case 'r': return op_memo (m, FALSE, 4);
    case 0x94: return op_memo (m, FALSE, 0);
    case 'h': return op_memo (m, TRUE, 1);
    case 'j': return op_memo (m, TRUE, 4);
    default:
      return refuse (m, "pickle opcode 0x%02x%s%c%s is not supported "
                     "in a state_dict", op, g_ascii_isprint (op) ? " ('" : "", g_ascii_isprint (op) ? op : ' ',
                     g_ascii_isprint (op) ? "')" : "");
    }
}

/* Runs one pickle from @p[0..n) up to its STOP; *@end gets the offset after
 * it. The value lives in @c's arena. */
static Pv *
pickle_run (Ctx *c, const guint8 *p, gsize n, gsize *end, GError **error)
{
  Machine m = { c, p, n, 0, 0, g_ptr_array_new (), g_array_new (FALSE, FALSE, sizeof (guint)),
                g_hash_table_new (g_direct_hash, g_direct_equal), error };
  Pv *result = NULL;

  while (m.pos < n)
    {
      m.at = m.pos;
      if (p[m.pos++] == '.')
        {
          if (m.stack->len != 1 || m.marks->len != 0)
            fail_at (c, m.at, CLEAVE_ERROR_INVALID_FILE, error, "STOP with %u values and %u marks on the stack (expected one value)",
                     m.stack->len, m.marks->len);
          else
            result = m.stack->pdata[0];
          break;
        }
      if (!run_op (&m, p[m.at]))
        break;
    }
  if (result == NULL && (error == NULL || *error == NULL))
    fail_at (c, n, CLEAVE_ERROR_INVALID_FILE, error, "the pickle ends without STOP (truncated?)");
  *end = m.pos;
  g_ptr_array_unref (m.stack);
  g_array_unref (m.marks);
  g_hash_table_unref (m.memo);
  return result;
}

/* ---------------------------------------------------------------- tensors */

static gboolean fail_tensor (Ctx *c, const char *name, GError **error, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

/* "FILE: tensor 'NAME': message". */
static gboolean
fail_tensor (Ctx *c, const char *name, GError **error, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  return cleave_invalid_file (error, c->file, "tensor '%s': %s", name, msg);
}

/* Checks the tensor's view against its storage: *@numel gets its element
 * count, which must fit in the storage, and the last element it reaches must
 * lie inside it. */
static gboolean
check_view (Ctx *c, const char *name, const Tensor *t, guint64 *numel, GError **error)
{
  const Storage *s = t->storage;
  guint64 n = 1, last;

  if (t->offset < 0)
    return fail_tensor (c, name, error, "storage offset %" G_GINT64_FORMAT " is negative", t->offset);
  for (int k = 0; k < t->ndim; k++)
    {
      if (t->size[k] < 0 || t->stride[k] < 0)
        return fail_tensor (c, name, error, "dimension %d has size %" G_GINT64_FORMAT " and stride %" G_GINT64_FORMAT
                            " (both must be >= 0)", k, t->size[k], t->stride[k]);
      if (!g_uint64_checked_mul (&n, n, (guint64) t->size[k]))
        return fail_tensor (c, name, error, "its sizes overflow");
    }
  if (n > s->numel)
    return fail_tensor (c, name, error, "%" G_GUINT64_FORMAT " elements, more than its storage '%s' holds (%"
                        G_GUINT64_FORMAT ")", n, s->key, s->numel);
  last = (guint64) t->offset;
  for (int k = 0; n > 0 && k < t->ndim; k++)
    {
      guint64 step;
      if (!g_uint64_checked_mul (&step, (guint64) (t->size[k] - 1), (guint64) t->stride[k]) ||
          !g_uint64_checked_add (&last, last, step))
        return fail_tensor (c, name, error, "its strides overflow");
    }
  if (n > 0 && last >= s->numel)
    return fail_tensor (c, name, error, "offset %" G_GINT64_FORMAT " and strides reach element %" G_GUINT64_FORMAT
                        " of storage '%s', which has %" G_GUINT64_FORMAT " elements", t->offset, last, s->key, s->numel);
  *numel = n;
  return TRUE;
}

/* A contiguous copy of the tensor's elements, in row-major order. @budget
 * bounds the bytes all tensors may take together. */
static CleaveSafeTensor *
copy_tensor (Ctx *c, const char *name, const Tensor *t, guint64 *budget, GError **error)
{
  const Storage *s = t->storage;
  gsize es = (gsize) globals[s->type].esize;
  guint64 numel = 0, expect = 1;
  gboolean contiguous = TRUE;
  CleaveSafeTensor *out;
  guint8 *dst;

  if (s->bytes == NULL)
    {
      fail_tensor (c, name, error, "storage '%s' has no data in the file", s->key);
      return NULL;
    }
  if (!check_view (c, name, t, &numel, error))
    return NULL;
  if (numel * es > *budget)
    {
      fail_tensor (c, name, error, "the tensors would take more than 4 times the file's size (a storage shared "
                   "too often)");
      return NULL;
    }
  dst = g_try_malloc (MAX (numel * es, 1));
  if (dst == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory", c->file, name);
      return NULL;
    }
  *budget -= numel * es;
  for (int k = t->ndim - 1; k >= 0; k--)
    {
      if (t->size[k] != 1 && t->stride[k] != (gint64) expect)
        contiguous = FALSE;
      expect *= (guint64) t->size[k];
    }
  if (contiguous)
    memcpy (dst, s->bytes + (gsize) t->offset * es, numel * es);
  else
    {
      gint64 idx[MAX_DIMS] = { 0 };
      for (guint64 e = 0; e < numel; e++)
        {
          guint64 off = (guint64) t->offset;
          for (int k = 0; k < t->ndim; k++)
            off += (guint64) idx[k] * (guint64) t->stride[k];
          memcpy (dst + e * es, s->bytes + off * es, es);
          for (int k = t->ndim - 1; k >= 0 && ++idx[k] == t->size[k]; k--)
            idx[k] = 0;
        }
    }
  out = g_new0 (CleaveSafeTensor, 1);
  out->name = g_strdup (name);
  out->dtype = g_strdup (globals[s->type].dtype);
  out->ndim = t->ndim;
  memcpy (out->shape, t->size, sizeof (gint64) * t->ndim);
  out->nbytes = numel * es;
  out->data = dst;
  return out;
}

static Pv *
dict_get (Pv *dict, const char *key)
{
  GPtrArray *a = dict->u.items;
  for (guint i = a->len; i >= 2; i -= 2)   /* the last one set wins */
    {
      Pv *k = a->pdata[i - 2];
      if (k->kind == PV_STR && g_str_equal (k->u.s, key))
        return a->pdata[i - 1];
    }
  return NULL;
}

/* The state_dict: the object itself, or its "state_dict", "model" or
 * "model_state_dict" entry. */
static Pv *
find_state_dict (Ctx *c, Pv *top, GError **error)
{
  static const char *const wrappers[] = { "state_dict", "model", "model_state_dict" };
  if (top->kind != PV_DICT)
    {
      cleave_invalid_file (error, c->file, "the checkpoint holds a %s, not a state_dict (a dict of tensors)",
                           kind_names[top->kind]);
      return NULL;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (wrappers); i++)
    {
      Pv *v = dict_get (top, wrappers[i]);
      if (v == NULL)
        continue;
      if (v->kind != PV_DICT)
        {
          cleave_invalid_file (error, c->file, "entry '%s' is a %s, not a state_dict", wrappers[i], kind_names[v->kind]);
          return NULL;
        }
      return v;
    }
  return top;
}

static CleaveSafetensors *
collect (Ctx *c, Pv *top, gsize file_size, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_new ();
  g_autoptr(GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);   /* name -> index + 1 */
  guint64 budget = 4 * (guint64) file_size + (1 << 20);
  Pv *sd = find_state_dict (c, top, error);
  GPtrArray *a;

  if (sd == NULL)
    return NULL;
  a = sd->u.items;
  if (a->len == 0)
    {
      cleave_invalid_file (error, c->file, "the state_dict holds no tensors");
      return NULL;
    }
  for (guint i = 0; i < a->len; i += 2)
    {
      Pv *k = a->pdata[i], *v = a->pdata[i + 1];
      CleaveSafeTensor *t;
      guint slot;
      if (k->kind != PV_STR)
        {
          cleave_invalid_file (error, c->file, "state_dict key %u is a %s, not a name", i / 2, kind_names[k->kind]);
          return NULL;
        }
      if (v->kind != PV_TENSOR)
        {
          cleave_invalid_file (error, c->file, "state_dict entry '%s' is a %s, not a tensor", k->u.s, kind_names[v->kind]);
          return NULL;
        }
      if ((t = copy_tensor (c, k->u.s, v->u.tensor, &budget, error)) == NULL)
        return NULL;
      if ((slot = GPOINTER_TO_UINT (g_hash_table_lookup (seen, t->name))) != 0)   /* a repeated key: the last value wins */
        {
          CleaveSafeTensor *old = st->tensors->pdata[slot - 1];
          st->tensors->pdata[slot - 1] = t;
          g_hash_table_replace (seen, t->name, GUINT_TO_POINTER (slot));
          g_free (old->name);
          g_free (old->dtype);
          g_free (old->data);
          g_free (old);
          continue;
        }
      g_ptr_array_add (st->tensors, t);
      g_hash_table_insert (seen, t->name, GUINT_TO_POINTER (st->tensors->len));
    }
  return g_steal_pointer (&st);
}

/* ---------------------------------------------------------------- containers */

static void
ctx_init (Ctx *c, const char *file)
{
  memset (c, 0, sizeof *c);
  c->file = file;
  c->arena = g_ptr_array_new_with_free_func (pv_free);
  c->storages = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, storage_free);
}

static void
ctx_clear (Ctx *c)
{
  g_ptr_array_unref (c->arena);
  g_hash_table_unref (c->storages);
}

/* The zip archive's top folder: the one holding data.pkl. */
static const CleaveZipEntry *
find_pickle (const CleaveZip *zip, char **prefix)
{
  for (guint i = 0; i < zip->entries->len; i++)
    {
      const CleaveZipEntry *e = zip->entries->pdata[i];
      const char *slash = strchr (e->name, '/');
      if (slash && slash != e->name && g_str_equal (slash, "/data.pkl"))
        {
          *prefix = g_strndup (e->name, slash - e->name + 1);
          return e;
        }
    }
  return NULL;
}

static CleaveSafetensors *
load_zip (Ctx *c, const guint8 *data, gsize size, GError **error)
{
  g_autoptr(CleaveZip) zip = cleave_zip_open (data, size, c->file, error);
  g_autofree char *prefix = NULL, *order_name = NULL;
  const CleaveZipEntry *pkl, *order;
  gsize end;
  Pv *top;

  if (zip == NULL)
    return NULL;
  if ((pkl = find_pickle (zip, &prefix)) == NULL)
    {
      cleave_invalid_file (error, c->file, "zip archive without a FOLDER/data.pkl entry: not a torch.save checkpoint");
      return NULL;
    }
  order_name = g_strconcat (prefix, "byteorder", NULL);
  order = cleave_zip_find (zip, order_name);
  if (order && !(order->size == 6 && memcmp (order->data, "little", 6) == 0))
    {
      cleave_invalid_file (error, c->file, "%s: only little-endian checkpoints are supported", order_name);
      return NULL;
    }
  c->zip = zip;
  c->prefix = prefix;
  c->part = pkl->name;
  top = pickle_run (c, pkl->data, pkl->size, &end, error);
  return top ? collect (c, top, size, error) : NULL;
}

/* The legacy format's storages, after its five pickles: for each key of the
 * list, an int64 element count and the bytes. */
static gboolean
legacy_storages (Ctx *c, Pv *keys, const guint8 *data, gsize size, gsize pos, GError **error)
{
  if (keys->kind != PV_LIST)
    return cleave_invalid_file (error, c->file, "storage key list is a %s, not a list", kind_names[keys->kind]);
  for (guint i = 0; i < keys->u.items->len; i++)
    {
      Pv *k = keys->u.items->pdata[i];
      Storage *s = k->kind == PV_STR ? g_hash_table_lookup (c->storages, k->u.s) : NULL;
      guint64 numel, nbytes;
      if (s == NULL)
        return cleave_invalid_file (error, c->file, "storage key %u is not a storage the pickle names", i);
      if (size - pos < 8)
        return cleave_invalid_file (error, c->file, "storage '%s': the file ends at its header (truncated?)", s->key);
      memcpy (&numel, data + pos, 8);
      numel = GUINT64_FROM_LE (numel);
      pos += 8;
      if (numel != s->numel)
        return cleave_invalid_file (error, c->file, "storage '%s': %" G_GUINT64_FORMAT " elements in the file, the "
                                    "pickle claims %" G_GUINT64_FORMAT, s->key, numel, s->numel);
      nbytes = numel * (guint64) globals[s->type].esize;
      if (nbytes > size - pos)
        return cleave_invalid_file (error, c->file, "storage '%s': %" G_GUINT64_FORMAT " bytes run past the end of "
                                    "the file (truncated?)", s->key, nbytes);
      s->bytes = data + pos;
      pos += nbytes;
    }
  return TRUE;
}

static CleaveSafetensors *
load_legacy (Ctx *c, const guint8 *data, gsize size, GError **error)
{
  static const char *const parts[4] = { "protocol pickle", "sys_info pickle", "object pickle", "storage key pickle" };
  Pv *v[4];
  gsize pos = sizeof legacy_magic, end;
  Pv *little;

  for (int i = 0; i < 4; i++)
    {
      c->part = parts[i];
      if ((v[i] = pickle_run (c, data + pos, size - pos, &end, error)) == NULL)
        return NULL;
      pos += end;
    }
  if (v[0]->kind != PV_INT || v[0]->u.i != LEGACY_PROTOCOL)
    {
      cleave_invalid_file (error, c->file, "protocol pickle: expected %d", LEGACY_PROTOCOL);
      return NULL;
    }
  little = v[1]->kind == PV_DICT ? dict_get (v[1], "little_endian") : NULL;
  if (little == NULL || little->kind != PV_BOOL || !little->u.i)
    {
      cleave_invalid_file (error, c->file, "sys_info: only little-endian checkpoints are supported");
      return NULL;
    }
  if (!legacy_storages (c, v[3], data, size, pos, error))
    return NULL;
  return collect (c, v[2], size, error);
}

gboolean
cleave_pth_detect (const guint8 *data, gsize size)
{
  return (size >= 4 && memcmp (data, "PK\3\4", 4) == 0) ||
         (size >= sizeof legacy_magic && memcmp (data, legacy_magic, sizeof legacy_magic) == 0);
}

CleaveSafetensors *
cleave_pth_load_bytes (const guint8 *data, gsize size, const char *display_name, GError **error)
{
  CleaveSafetensors *st;
  Ctx c;

  if (!cleave_pth_detect (data, size))
    {
      cleave_invalid_file (error, display_name, "not a PyTorch checkpoint (neither a torch.save zip archive nor "
                           "the legacy format)");
      return NULL;
    }
  ctx_init (&c, display_name);
  st = data[0] == 'P' ? load_zip (&c, data, size, error) : load_legacy (&c, data, size, error);
  ctx_clear (&c);
  return st;
}

CleaveSafetensors *
cleave_pth_load (const char *path, GError **error)
{
  g_autoptr(GError) local = NULL;
  GMappedFile *map = g_mapped_file_new (path, FALSE, &local);
  CleaveSafetensors *st;

  if (map == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  st = cleave_pth_load_bytes ((const guint8 *) g_mapped_file_get_contents (map), g_mapped_file_get_length (map),
                              path, error);
  g_mapped_file_unref (map);
  return st;
}
