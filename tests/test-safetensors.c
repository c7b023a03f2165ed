/* test-safetensors.c: safetensors reader/writer, including hostile files. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <math.h>

#include "cleave-safetensors.h"
#include "cleave-error.h"
#include "cleave-file.h"

/* Builds a safetensors image from a header string and @data_len bytes of
 * data (filled with a ramp), without any padding, as another writer might. */
static GBytes *
make_file (const char *header, gsize data_len)
{
  gsize hl = strlen (header);
  guint8 *buf = g_malloc (8 + hl + data_len);
  guint64 le = GUINT64_TO_LE ((guint64) hl);

  memcpy (buf, &le, 8);
  memcpy (buf + 8, header, hl);
  for (gsize i = 0; i < data_len; i++)
    buf[8 + hl + i] = (guint8) (i * 7 + 1);
  return g_bytes_new_take (buf, 8 + hl + data_len);
}

static char *
write_tmp (const char *dir, const char *name, const guint8 *data, gsize len)
{
  char *path = g_build_filename (dir, name, NULL);

  g_assert_true (g_file_set_contents (path, (const char *) data, len, NULL));
  return path;
}

static void
rm_rf (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  const char *n;

  if (d == NULL)
    return;
  while ((n = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, n, NULL);
      g_remove (p);
    }
  g_dir_close (d);
  g_rmdir (dir);
}

static void
test_round_trip (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (CleaveSafetensors) st = cleave_safetensors_new ();
  g_autoptr (CleaveSafetensors) back = NULL;
  g_autoptr (GError) error = NULL;
  float w[2 * 3 * 3 * 3];
  gint32 idx[5] = { 0, -3, 7, G_MAXINT32, G_MININT32 };
  int wshape[4] = { 2, 3, 3, 3 };
  int ishape[1] = { 5 };
  int sshape[1] = { 0 };
  g_autofree char *contents = NULL;
  gsize len;
  guint64 hl;

  for (guint i = 0; i < G_N_ELEMENTS (w); i++)
    w[i] = (float) i * 0.25f - 3.0f;
  /* Added out of alphabetical order: the writer must keep insertion order. */
  cleave_safetensors_add_f32 (st, "z.weight", 4, wshape, w);
  cleave_safetensors_add_i32 (st, "a.kept", 1, ishape, idx);
  cleave_safetensors_add_f32 (st, "m.empty", 1, sshape, NULL);
  cleave_safetensors_add_f32 (st, "scalar", 0, NULL, w);
  cleave_safetensors_set_metadata (st, "cleave.graph", "{\"layers\": [1, 2]}");
  cleave_safetensors_set_metadata (st, "classes", "T-shirt/top\nTrouser \"quoted\" ünïcode");

  g_assert_true (cleave_safetensors_save (st, path, &error));
  g_assert_no_error (error);

  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  memcpy (&hl, contents, 8);
  hl = GUINT64_FROM_LE (hl);
  g_assert_cmpuint (hl % 8, ==, 0);
  g_assert_cmpuint (8 + hl + sizeof w + sizeof idx + 4, ==, len);
  /* Padding is spaces after the closing brace, so any JSON parser reads the header. */
  {
    const char *close = g_strrstr_len (contents + 8, hl, "}");
    g_assert_nonnull (close);
    for (const char *p = close + 1; p < contents + 8 + hl; p++)
      g_assert_cmpint (*p, ==, ' ');
  }

  back = cleave_safetensors_load (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (back);
  g_assert_cmpuint (back->tensors->len, ==, 4);
  g_assert_cmpstr (((CleaveSafeTensor *) back->tensors->pdata[0])->name, ==, "z.weight");
  g_assert_cmpstr (((CleaveSafeTensor *) back->tensors->pdata[1])->name, ==, "a.kept");
  /* Zero-size tensor shares its offset with the scalar; file order is kept. */
  g_assert_cmpstr (((CleaveSafeTensor *) back->tensors->pdata[2])->name, ==, "m.empty");
  g_assert_cmpstr (((CleaveSafeTensor *) back->tensors->pdata[3])->name, ==, "scalar");

  const CleaveSafeTensor *t = cleave_safetensors_find (back, "z.weight");
  g_assert_nonnull (t);
  g_assert_cmpstr (t->dtype, ==, "F32");
  g_assert_cmpint (t->ndim, ==, 4);
  g_assert_cmpint (t->shape[0], ==, 2);
  g_assert_cmpint (t->shape[3], ==, 3);
  g_assert_cmpuint (cleave_safe_tensor_numel (t), ==, 54);
  g_autofree float *wf = cleave_safe_tensor_to_f32 (t, 54, "model.safetensors", &error);
  g_assert_no_error (error);
  g_assert_cmpmem (wf, sizeof w, w, sizeof w);

  t = cleave_safetensors_find (back, "a.kept");
  g_assert_nonnull (t);
  g_assert_cmpstr (t->dtype, ==, "I32");
  g_autofree gint32 *iv = cleave_safe_tensor_to_i32 (t, "model.safetensors", &error);
  g_assert_no_error (error);
  g_assert_cmpmem (iv, sizeof idx, idx, sizeof idx);

  t = cleave_safetensors_find (back, "scalar");
  g_assert_cmpint (t->ndim, ==, 0);
  g_assert_cmpuint (cleave_safe_tensor_numel (t), ==, 1);
  t = cleave_safetensors_find (back, "m.empty");
  g_assert_cmpuint (cleave_safe_tensor_numel (t), ==, 0);
  g_assert_null (cleave_safetensors_find (back, "missing"));

  g_assert_cmpstr (cleave_safetensors_get_metadata (back, "cleave.graph"), ==, "{\"layers\": [1, 2]}");
  g_assert_cmpstr (cleave_safetensors_get_metadata (back, "classes"), ==, "T-shirt/top\nTrouser \"quoted\" ünïcode");
  g_assert_null (cleave_safetensors_get_metadata (back, "nope"));

  /* Expected-numel mismatch names the file and the tensor. */
  t = cleave_safetensors_find (back, "z.weight");
  float *bad = cleave_safe_tensor_to_f32 (t, 55, "model.safetensors", &error);
  g_assert_null (bad);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "model.safetensors"));
  g_assert_nonnull (strstr (error->message, "z.weight"));

  /* Saving twice gives identical bytes (metadata order is canonical). */
  {
    g_autofree char *path2 = g_build_filename (dir, "again.safetensors", NULL);
    g_autofree char *c2 = NULL;
    gsize len2;
    g_assert_true (cleave_safetensors_save (back, path2, NULL));
    g_assert_true (g_file_get_contents (path2, &c2, &len2, NULL));
    g_assert_cmpmem (c2, len2, contents, len);
  }
  rm_rf (dir);
}

static void
test_replace_same_name (void)
{
  g_autoptr (CleaveSafetensors) st = cleave_safetensors_new ();
  float a[2] = { 1, 2 }, b[3] = { 3, 4, 5 };
  int s2[1] = { 2 }, s3[1] = { 3 };

  cleave_safetensors_add_f32 (st, "x", 1, s2, a);
  cleave_safetensors_add_f32 (st, "y", 1, s2, a);
  cleave_safetensors_add_f32 (st, "x", 1, s3, b);
  g_assert_cmpuint (st->tensors->len, ==, 2);
  g_assert_cmpint (cleave_safetensors_find (st, "x")->shape[0], ==, 3);
  g_assert_cmpstr (((CleaveSafeTensor *) st->tensors->pdata[0])->name, ==, "x");
}

static guint16
f32_to_bf16 (float f)
{
  guint32 u;
  memcpy (&u, &f, 4);
  return (guint16) (u >> 16);
}

static void
test_dtypes (void)
{
  /* Data laid out by hand: F16 [4] @0, BF16 [2] @8, F64 [2] @12, I64 [2] @28,
   * I16 [2] @44, I8 [2] @48, U8 [2] @50, BOOL [2] @52, U32 [1] @54 .. 58. */
  const char *header =
    "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
    "\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
    "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[12,28]},"
    "\"l\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[28,44]},"
    "\"s\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[44,48]},"
    "\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[48,50]},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[1,2],\"data_offsets\":[50,52]},"
    "\"q\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[52,54]},"
    "\"w\":{\"dtype\":\"U32\",\"shape\":[],\"data_offsets\":[54,58]}}";
  g_autoptr (GBytes) bytes = make_file (header, 58);
  gsize size = g_bytes_get_size (bytes);
  guint8 *buf = g_memdup2 (g_bytes_get_data (bytes, NULL), size);
  guint8 *data = buf + 8 + strlen (header);
  guint16 h[4] = { 0x3c00, 0xc000, 0x0001, 0x7bff };     /* 1, -2, 2^-24, 65504 */
  guint16 bf[2] = { f32_to_bf16 (1.5f), f32_to_bf16 (-0.15625f) };
  double d[2] = { 3.25, -1e-3 };
  gint64 l[2] = { -5, 1LL << 40 };
  gint16 s[2] = { -300, 300 };
  gint8 b[2] = { -128, 127 };
  guint8 u[2] = { 0, 255 };
  guint8 q[2] = { 0, 3 };
  guint32 w = 4000000000u;
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveSafetensors) st = NULL;

  memcpy (data + 0, h, 8);
  memcpy (data + 8, bf, 4);
  memcpy (data + 12, d, 16);
  memcpy (data + 28, l, 16);
  memcpy (data + 44, s, 4);
  memcpy (data + 48, b, 2);
  memcpy (data + 50, u, 2);
  memcpy (data + 52, q, 2);
  memcpy (data + 54, &w, 4);
  st = cleave_safetensors_load_bytes (buf, size, "dtypes.safetensors", &error);
  g_free (buf);
  g_assert_no_error (error);
  g_assert_cmpuint (st->tensors->len, ==, 9);

#define F32(name, n) cleave_safe_tensor_to_f32 (cleave_safetensors_find (st, name), n, "dtypes.safetensors", &error)
  g_autofree float *fh = F32 ("h", 4);
  g_assert_cmpfloat (fh[0], ==, 1.0f);
  g_assert_cmpfloat (fh[1], ==, -2.0f);
  g_assert_cmpfloat (fh[2], ==, ldexpf (1.0f, -24));
  g_assert_cmpfloat (fh[3], ==, 65504.0f);
  g_autofree float *fbf = F32 ("bf", 2);
  g_assert_cmpfloat (fbf[0], ==, 1.5f);
  g_assert_cmpfloat (fbf[1], ==, -0.15625f);
  g_autofree float *fd = F32 ("d", 2);
  g_assert_cmpfloat (fd[0], ==, 3.25f);
  g_assert_cmpfloat (fd[1], ==, (float) -1e-3);
  g_autofree float *fl = F32 ("l", 0);
  g_assert_cmpfloat (fl[0], ==, -5.0f);
  g_assert_cmpfloat (fl[1], ==, 1099511627776.0f);
  g_autofree float *fs = F32 ("s", 2);
  g_assert_cmpfloat (fs[0], ==, -300.0f);
  g_autofree float *fb = F32 ("b", 2);
  g_assert_cmpfloat (fb[0], ==, -128.0f);
  g_assert_cmpfloat (fb[1], ==, 127.0f);
  g_autofree float *fu = F32 ("u", 2);
  g_assert_cmpfloat (fu[1], ==, 255.0f);
  g_autofree float *fq = F32 ("q", 2);
  g_assert_cmpfloat (fq[0], ==, 0.0f);
  g_assert_cmpfloat (fq[1], ==, 1.0f);
  g_autofree float *fw = F32 ("w", 1);
  g_assert_cmpfloat (fw[0], ==, 4e9f);
#undef F32
  g_assert_no_error (error);

  g_autofree gint32 *is = cleave_safe_tensor_to_i32 (cleave_safetensors_find (st, "s"), "dtypes.safetensors", &error);
  g_assert_no_error (error);
  g_assert_cmpint (is[0], ==, -300);
  g_autofree gint32 *ih = cleave_safe_tensor_to_i32 (cleave_safetensors_find (st, "d"), "dtypes.safetensors", &error);
  g_assert_null (ih);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_nonnull (strstr (error->message, "'d'"));
  g_clear_error (&error);
  /* 2^40 does not fit an int32. */
  g_autofree gint32 *il = cleave_safe_tensor_to_i32 (cleave_safetensors_find (st, "l"), "dtypes.safetensors", &error);
  g_assert_null (il);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_clear_error (&error);
  g_autofree gint32 *iw = cleave_safe_tensor_to_i32 (cleave_safetensors_find (st, "w"), "dtypes.safetensors", &error);
  g_assert_null (iw);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_clear_error (&error);
  /* Non-integral floats are refused as integers. */
  g_autofree gint32 *ifh = cleave_safe_tensor_to_i32 (cleave_safetensors_find (st, "bf"), "dtypes.safetensors", &error);
  g_assert_null (ifh);
  g_clear_error (&error);
}

typedef struct {
  const char *label;
  const char *header;     /* NULL: use raw */
  gsize data_len;
  const char *field;      /* substring the message must contain */
} BadCase;

#define T1 "\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[3,3,3,3],\"data_offsets\":[0,324]}"

static const BadCase bad_cases[] = {
  { "bad-json", "{\"a\": {\"dtype\": \"F32\", ", 16, "invalid JSON" },
  { "not-object", "[1, 2, 3]", 16, "not an object" },
  { "unknown-dtype", "{\"x\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F12'" },
  { "dtype-not-string", "{\"x\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "tensor 'x': dtype" },
  { "missing-shape", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'x': shape" },
  { "negative-dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8, "tensor 'x': shape dimension 1" },
  { "float-dim", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "tensor 'x': shape dimension 0" },
  { "too-many-dims", "{\"x\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "tensor 'x': shape has 9" },
  { "shape-overflow", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "tensor 'x': shape element count overflows" },
  { "bytes-overflow", "{\"x\":{\"dtype\":\"F64\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, "tensor 'x': shape byte size overflows" },
  { "shape-mismatch", "{\"conv1.weight\":{\"dtype\":\"F32\",\"shape\":[3,3,3,3],\"data_offsets\":[0,1200]}}", 1200,
    "tensor 'conv1.weight': data_offsets [0, 1200] do not match shape [3, 3, 3, 3] × F32 (324 bytes)" },
  { "offsets-one", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "tensor 'x': data_offsets" },
  { "offsets-string", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",8]}}", 8, "tensor 'x': data_offsets" },
  { "offsets-reversed", "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, "tensor 'x': data_offsets [8, 0] begin after end" },
  { "offsets-beyond", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8, "tensor 'x': data_offsets end 12 exceeds data size 8" },
  { "offsets-huge", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,0]}}", 8, "integer 18446744073709551608 does not fit in 64 bits" },
  { "overlap", "{" T1 ",\"conv1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[320,332]}}", 332,
    "tensor 'conv1.bias': data_offsets [320, 332] overlap tensor 'conv1.weight'" },
  { "int-wraps", "{\"x\":{\"dtype\":\"F32\",\"shape\":[18446744073709551618],\"data_offsets\":[0,8]}}", 8, "integer 18446744073709551618 does not fit in 64 bits" },
  { "trailing-bytes", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "data: 4 bytes after the last tensor" },
  { "data-hole", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "data: bytes 0–4 belong to no tensor" },
  { "entry-not-object", "{\"x\": [1, 2]}", 8, "tensor 'x': entry is not" },
  { "metadata-not-string", "{\"__metadata__\":{\"format\":\"pt\",\"epochs\":5}," T1 "}", 324, "__metadata__ 'epochs': value is not a string" },
  { "metadata-not-object", "{\"__metadata__\":\"pt\"}", 0, "__metadata__ is not a JSON object" },
  { "nested-deep", "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}", 0, "nested too deeply" },
  { "nul-in-header", NULL, 0, "NUL" },
};

static void
check_bad (const char *dir, const char *label, const guint8 *data, gsize len, const char *field)
{
  g_autofree char *name = g_strdup_printf ("%s.safetensors", label);
  g_autofree char *path = write_tmp (dir, name, data, len);
  g_autoptr (GError) error = NULL;
  CleaveSafetensors *st = cleave_safetensors_load (path, &error);

  if (g_test_verbose ())
    g_test_message ("%s: %s", label, error ? error->message : "(loaded)");
  g_assert_null (st);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  if (strstr (error->message, name) == NULL || strstr (error->message, field) == NULL)
    g_error ("case %s: message \"%s\" lacks the file name or \"%s\"", label, error->message, field);
  g_remove (path);
}

/* A name given twice (a tensor, a metadata key, a field of an entry) is
 * refused: otherwise the later one would silently win. */
static void
test_duplicate_names (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  static const struct { const char *label, *header, *needle; } cases[] = {
    { "dup-tensor", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "'x' appears twice" },
    { "dup-metadata", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"},"
                      "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "'k' appears twice" },
    { "dup-field", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"dtype\":\"F16\",\"data_offsets\":[0,8]}}",
      "'dtype' appears twice" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GBytes) b = make_file (cases[i].header, 8);
      gsize len;
      const guint8 *data = g_bytes_get_data (b, &len);
      check_bad (dir, cases[i].label, data, len, cases[i].needle);
    }
  rm_rf (dir);
}

static void
test_malformed (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  g_autoptr (GBytes) good = NULL;
  const guint8 *gd;
  gsize gl;

  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      const BadCase *c = &bad_cases[i];
      g_autoptr (GBytes) b = NULL;
      gsize len;
      const guint8 *d;

      if (c->header == NULL)
        {
          static const char hdr[] = "{\"a\":\0{}}";
          guint8 raw[8 + sizeof hdr - 1];
          guint64 hl = GUINT64_TO_LE (sizeof hdr - 1);
          memcpy (raw, &hl, 8);
          memcpy (raw + 8, hdr, sizeof hdr - 1);
          check_bad (dir, c->label, raw, sizeof raw, c->field);
          continue;
        }
      b = make_file (c->header, c->data_len);
      d = g_bytes_get_data (b, &len);
      check_bad (dir, c->label, d, len, c->field);
    }

  /* Length-field problems on a valid file. */
  good = make_file ("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
  gd = g_bytes_get_data (good, &gl);
  check_bad (dir, "empty", gd, 0, "too short");
  check_bad (dir, "truncated-length", gd, 5, "header length");
  check_bad (dir, "truncated-header", gd, 30, "header length");
  {
    guint8 *m = g_memdup2 (gd, gl);
    guint64 big = GUINT64_TO_LE (G_GUINT64_CONSTANT (0xffffffffffffff00));
    memcpy (m, &big, 8);
    check_bad (dir, "huge-length", m, gl, "header length");
    big = GUINT64_TO_LE (gl - 7);
    memcpy (m, &big, 8);
    check_bad (dir, "length-beyond-file", m, gl, "header length");
    big = GUINT64_TO_LE (200 * 1000 * 1000);
    memcpy (m, &big, 8);
    check_bad (dir, "length-over-limit", m, gl, "limit");
    g_free (m);
  }
  /* Data section cut short: tensor end exceeds the data size. */
  check_bad (dir, "truncated-data", gd, gl - 3, "tensor 'x': data_offsets end 8 exceeds data size 5");

  /* A missing file is an I/O error, not a crash. */
  {
    g_autoptr (GError) error = NULL;
    g_autofree char *p = g_build_filename (dir, "absent.safetensors", NULL);
    g_assert_null (cleave_safetensors_load (p, &error));
    g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
  }
  rm_rf (dir);
}

static void
test_fuzz (void)
{
  g_autoptr (CleaveSafetensors) st = cleave_safetensors_new ();
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "fuzz.safetensors", NULL);
  g_autofree char *contents = NULL;
  g_autoptr (GRand) rng = g_rand_new_with_seed (1234);
  float w[24];
  int s1[2] = { 4, 6 }, s2[1] = { 3 };
  gint32 iv[3] = { 1, 2, 3 };
  gsize len;
  guint64 hl;
  int iters = g_test_slow () ? 100000 : 5000;
  int loaded = 0, rejected = 0;

  for (int i = 0; i < 24; i++)
    w[i] = i;
  cleave_safetensors_add_f32 (st, "layer.weight", 2, s1, w);
  cleave_safetensors_add_i32 (st, "layer.kept", 1, s2, iv);
  cleave_safetensors_add_f32 (st, "layer.bias", 1, s2, w);
  cleave_safetensors_set_metadata (st, "k", "v");
  g_assert_true (cleave_safetensors_save (st, path, NULL));
  g_assert_true (g_file_get_contents (path, &contents, &len, NULL));
  memcpy (&hl, contents, 8);
  hl = GUINT64_FROM_LE (hl);

  for (int it = 0; it < iters; it++)
    {
      gsize n = len;
      guint8 *m;
      g_autoptr (GError) error = NULL;
      CleaveSafetensors *r;
      int kind = g_rand_int_range (rng, 0, 4);

      if (kind == 3)
        n = g_rand_int_range (rng, 0, len);
      /* Exact-size heap copy so ASan sees any read past the end. */
      m = g_malloc (MAX (n, 1));
      memcpy (m, contents, n);
      if (kind == 0 || kind == 1)
        {
          int flips = g_rand_int_range (rng, 1, 5);
          for (int f = 0; f < flips; f++)
            {
              /* Mostly hit the header, where the parsing is. */
              gsize at = kind == 0 ? g_rand_int_range (rng, 0, 8 + hl) : g_rand_int_range (rng, 0, n);
              m[at] = g_rand_boolean (rng) ? m[at] ^ (1u << g_rand_int_range (rng, 0, 8))
                                           : (guint8) g_rand_int_range (rng, 0, 256);
            }
        }
      else if (kind == 2)
        {
          /* Swap in a JSON-significant character at a random header spot. */
          static const char sig[] = "{}[],:\"0-9e.\\ ";
          gsize at = g_rand_int_range (rng, 8, 8 + hl);
          m[at] = sig[g_rand_int_range (rng, 0, sizeof sig - 1)];
        }
      r = cleave_safetensors_load_bytes (m, n, "fuzz.safetensors", &error);
      if (r)
        {
          g_assert_no_error (error);
          /* Whatever loaded must be self-consistent. */
          for (guint t = 0; t < r->tensors->len; t++)
            {
              const CleaveSafeTensor *x = r->tensors->pdata[t];
              g_autoptr (GError) e2 = NULL;
              float *f = cleave_safe_tensor_to_f32 (x, 0, "fuzz.safetensors", &e2);
              g_assert_no_error (e2);
              g_free (f);
            }
          cleave_safetensors_free (r);
          loaded++;
        }
      else
        {
          g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
          g_assert_nonnull (strstr (error->message, "fuzz.safetensors"));
          rejected++;
        }
      g_free (m);
    }
  g_test_message ("fuzz: %d loaded, %d rejected", loaded, rejected);
  g_assert_cmpint (loaded + rejected, ==, iters);
  g_assert_cmpint (rejected, >, 0);
  rm_rf (dir);
}

static void
test_atomic_write (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "m.safetensors", NULL);
  g_autofree char *nodir = g_build_filename (dir, "no-such-dir", "m.safetensors", NULL);
  g_autoptr (CleaveSafetensors) st = cleave_safetensors_new ();
  g_autoptr (GError) error = NULL;
  float v[4] = { 1, 2, 3, 4 };
  int s[1] = { 4 };
  GDir *d;
  const char *n;
  int count = 0;

  g_assert_true (g_file_set_contents (path, "old contents", -1, NULL));
  cleave_safetensors_add_f32 (st, "v", 1, s, v);
  g_assert_true (cleave_safetensors_save (st, path, &error));
  g_assert_no_error (error);

  d = g_dir_open (dir, 0, NULL);
  while ((n = g_dir_read_name (d)))
    {
      g_assert_cmpstr (n, ==, "m.safetensors");
      count++;
    }
  g_dir_close (d);
  g_assert_cmpint (count, ==, 1);
  {
    g_autoptr (CleaveSafetensors) back = cleave_safetensors_load (path, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (back->tensors->len, ==, 1);
  }

  g_assert_false (cleave_safetensors_save (st, nodir, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
  g_assert_false (g_file_test (nodir, G_FILE_TEST_EXISTS));
  rm_rf (dir);
}

/* The temporary an atomic write uses is hidden beside its output
 * (".NAME.tmp-XXXXXX"), removed when the rename fails, and the ones a killed
 * writer left behind can be cleaned up, leaving everything else alone. */
static void
test_hidden_temps (void)
{
  g_autofree char *dir = g_dir_make_tmp ("cleave-st-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "m.safetensors", NULL);
  g_autofree char *stale = g_build_filename (dir, ".m.safetensors.tmp-Ab12Cd", NULL);
  g_autofree char *other = g_build_filename (dir, ".n.safetensors.tmp-Ab12Cd", NULL);
  g_autofree char *keep = g_build_filename (dir, "m.safetensors.tmp-Ab12Cd", NULL);
  g_autofree char *sub = g_build_filename (dir, "m.onnx", NULL);
  g_autoptr (GError) error = NULL;
  GDir *d;
  const char *n;

  /* the rename fails (a directory is in the way): nothing is left behind */
  g_assert_cmpint (g_mkdir (sub, 0755), ==, 0);
  g_assert_false (cleave_file_replace (sub, "data", 4, 0644, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "m.onnx"));
  g_clear_error (&error);
  g_rmdir (sub);
  d = g_dir_open (dir, 0, NULL);
  g_assert_null (g_dir_read_name (d));
  g_dir_close (d);

  g_assert_true (cleave_file_replace (path, "data", 4, 0644, &error));
  g_assert_no_error (error);
  for (int i = 0; i < 3; i++)
    g_assert_true (g_file_set_contents (i == 0 ? stale : i == 1 ? other : keep, "x", 1, NULL));
  g_assert_cmpint (cleave_file_remove_stale_temps (path), ==, 1);
  g_assert_false (g_file_test (stale, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (other, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (keep, G_FILE_TEST_EXISTS));
  g_assert_true (g_file_test (path, G_FILE_TEST_EXISTS));
  d = g_dir_open (dir, 0, NULL);
  while ((n = g_dir_read_name (d)))
    g_assert_false (g_str_has_prefix (n, "m.safetensors.") && !g_str_equal (n, "m.safetensors.tmp-Ab12Cd"));
  g_dir_close (d);
  rm_rf (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/safetensors/round-trip", test_round_trip);
  g_test_add_func ("/core/safetensors/add-replaces-same-name", test_replace_same_name);
  g_test_add_func ("/core/safetensors/dtype-conversions", test_dtypes);
  g_test_add_func ("/core/safetensors/malformed-files-name-file-and-field", test_malformed);
  g_test_add_func ("/core/safetensors/duplicate-names-refused", test_duplicate_names);
  g_test_add_func ("/core/safetensors/fuzz-never-crashes", test_fuzz);
  g_test_add_func ("/core/safetensors/atomic-write", test_atomic_write);
  g_test_add_func ("/core/safetensors/atomic-write-hidden-temps", test_hidden_temps);
  return g_test_run ();
}
