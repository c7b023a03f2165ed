/* test-onnx.c: ONNX protobuf decoding (incl. malformed input), import of the
 * PyTorch-exported fixtures (structure and logits against PyTorch), export
 * and re-import, and the multi-graph builder. */
#include <glib.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "cleave-onnx.h"
#include "cleave-error.h"
#include "cleave-net.h"
#include "cleave-backend.h"
#include "cleave-safetensors.h"

#include <json-glib/json-glib.h>

static const char *fixtures[] = { "plain-op13", "plain-bn-op11", "residual-op17", "incept-op13" };

static char *
fixture_path (const char *name)
{
  g_autofree char *file = g_strdup_printf ("%s.onnx", name);
  return g_test_build_filename (G_TEST_DIST, "reference", "onnx", file, NULL);
}

static GBytes *
read_fixture (const char *name)
{
  g_autofree char *path = fixture_path (name);
  char *data = NULL;
  gsize len = 0;
  g_autoptr (GError) error = NULL;

  g_file_get_contents (path, &data, &len, &error);
  g_assert_no_error (error);
  return g_bytes_new_take (data, len);
}

/* A small graph built with the builder: conv → relu → gap → flatten → linear. */
static CleaveGraph *
small_graph (void)
{
  CleaveGraph *g = cleave_graph_new (2, 6, 6);
  int x = cleave_graph_add_conv2d (g, "conv1", 0, 3, 3, 1, 1, 1, TRUE);
  x = cleave_graph_add_batchnorm2d (g, "bn1", x);
  x = cleave_graph_add_relu (g, "relu", x);
  x = cleave_graph_add_avgpool2d (g, "pool", x, 3, 1, 1);
  x = cleave_graph_add_global_avgpool (g, "gap", x);
  x = cleave_graph_add_dropout (g, "drop", x, 0.3f);
  cleave_graph_add_linear (g, "fc", x, 4, TRUE);
  g_autoptr (GError) error = NULL;
  g_assert_true (cleave_graph_finalize (g, &error));
  g_assert_no_error (error);
  cleave_graph_init_params (g, 7);
  /* non-trivial BN statistics so that the export must carry them */
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      if (p->is_buffer)
        for (gsize k = 0; k < cleave_param_numel (p); k++)
          p->data[k] = 0.5f + 0.1f * k;
    }
  return g;
}

static void
test_roundtrip_encoding (void)
{
  g_autoptr (CleaveGraph) g = small_graph ();
  g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new ("t");
  g_autoptr (GError) error = NULL;
  float mean[2] = { 0.1f, 0.2f }, std[2] = { 0.3f, 0.4f };

  const char *x = cleave_onnx_builder_add_input (b, "input", 2, 6, 6);
  x = cleave_onnx_builder_add_normalize (b, x, 2, mean, std, "");
  const char *out = cleave_onnx_builder_add_graph (b, g, x, "m.", &error);
  g_assert_no_error (error);
  gint64 dims[2] = { -1, 4 };
  cleave_onnx_builder_add_output (b, out, CLEAVE_ONNX_FLOAT, 2, dims);
  gint64 neg[3] = { -5, 0, G_MAXINT64 };
  int n = cleave_onnx_builder_add_node (b, "Identity", "/extra", &out, 1);
  cleave_onnx_builder_set_ints (b, n, "ints", neg, 3);
  cleave_onnx_builder_set_float (b, n, "f", -2.5f);

  g_autoptr (GBytes) bytes = cleave_onnx_builder_to_bytes (b);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_parse (data, len, "rt.onnx", &error);
  g_assert_no_error (error);
  const CleaveOnnxModel *src = cleave_onnx_builder_model (b);

  g_assert_cmpint (m->opset, ==, 13);
  g_assert_cmpint (m->ir_version, ==, 7);
  g_assert_cmpstr (m->producer_name, ==, "cleave");
  g_assert_cmpuint (m->nodes->len, ==, src->nodes->len);
  g_assert_cmpuint (m->initializers->len, ==, src->initializers->len);
  for (guint k = 0; k < m->nodes->len; k++)
    {
      CleaveOnnxNode *a = m->nodes->pdata[k], *e = src->nodes->pdata[k];
      g_assert_cmpstr (a->name, ==, e->name);
      g_assert_cmpstr (a->op_type, ==, e->op_type);
      g_assert_cmpint (a->n_inputs, ==, e->n_inputs);
      for (int i = 0; i < a->n_inputs; i++)
        g_assert_cmpstr (a->inputs[i], ==, e->inputs[i]);
      g_assert_cmpint (a->n_attrs, ==, e->n_attrs);
      for (int i = 0; i < a->n_attrs; i++)
        {
          g_assert_cmpstr (a->attrs[i].name, ==, e->attrs[i].name);
          g_assert_cmpint (a->attrs[i].type, ==, e->attrs[i].type);
          g_assert_cmpint (a->attrs[i].i, ==, e->attrs[i].i);
          g_assert_cmpfloat (a->attrs[i].f, ==, e->attrs[i].f);
          g_assert_cmpmem (a->attrs[i].ints, a->attrs[i].n_ints * 8, e->attrs[i].ints, e->attrs[i].n_ints * 8);
        }
    }
  for (guint k = 0; k < m->initializers->len; k++)
    {
      CleaveOnnxTensor *a = m->initializers->pdata[k], *e = src->initializers->pdata[k];
      g_assert_cmpstr (a->name, ==, e->name);
      g_assert_true (g_str_has_prefix (a->name, "m.") || g_str_has_prefix (a->name, "normalize."));
      g_assert_cmpint (a->ndim, ==, e->ndim);
      g_assert_cmpmem (a->dims, a->ndim * 8, e->dims, e->ndim * 8);
      g_assert_cmpmem (a->f, a->numel * 4, e->f, e->numel * 4);
    }
  CleaveOnnxValueInfo *in = m->inputs->pdata[0];
  g_assert_cmpstr (in->name, ==, "input");
  g_assert_cmpint (in->ndim, ==, 4);
  g_assert_cmpstr (in->dim_params[0], ==, "N");
  g_assert_cmpint (in->dims[1], ==, 2);
  g_assert_cmpint (in->dims[3], ==, 6);
  const CleaveOnnxAttr *a = cleave_onnx_node_find_attr (m->nodes->pdata[m->nodes->len - 1], "ints");
  g_assert_nonnull (a);
  g_assert_cmpint (a->ints[0], ==, -5);
  g_assert_cmpint (a->ints[2], ==, G_MAXINT64);
}

static void
assert_invalid (const guint8 *data, gsize len, const char *expect)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_parse (data, len, "bad.onnx", &error);

  g_assert_null (m);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  g_assert_true (g_str_has_prefix (error->message, "bad.onnx: "));
  if (expect && !strstr (error->message, expect))
    g_error ("message '%s' lacks '%s'", error->message, expect);
}

static void
test_malformed_crafted (void)
{
  /* graph (field 7, LEN) with a length far beyond the data */
  const guint8 huge[] = { 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x00 };
  assert_invalid (huge, sizeof huge, "exceeds the 2 remaining bytes");
  /* an 11-byte varint */
  const guint8 longv[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
  assert_invalid (longv, sizeof longv, "varint");
  /* group wire type 3 */
  const guint8 group[] = { 0x0b };
  assert_invalid (group, sizeof group, "wire type");
  /* field number 0 */
  const guint8 zero[] = { 0x00, 0x01 };
  assert_invalid (zero, sizeof zero, "field number");
  /* no graph at all */
  const guint8 nograph[] = { 0x08, 0x07 };
  assert_invalid (nograph, sizeof nograph, "model.graph");
  assert_invalid ((const guint8 *) "", 0, "empty");
  /* graph with a wrong wire type for the node field */
  const guint8 wrongwt[] = { 0x3a, 0x02, 0x08, 0x01 };
  assert_invalid (wrongwt, sizeof wrongwt, "graph.node[0]");

  /* an initializer whose raw_data does not match its dims */
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_new ();
  CleaveOnnxTensor *t = g_new0 (CleaveOnnxTensor, 1);
  t->name = g_strdup ("conv1.weight");
  t->data_type = CLEAVE_ONNX_FLOAT;
  t->ndim = 4;
  t->dims[0] = 8; t->dims[1] = 1; t->dims[2] = 3; t->dims[3] = 3;
  t->numel = 25;
  t->f = g_new0 (float, 25);
  for (int k = 0; k < 3; k++)
    g_ptr_array_add (m->initializers, g_memdup2 (&(CleaveOnnxTensor) { .name = g_strdup ("ok"), .data_type = 1, .numel = 1,
                                                                       .f = g_new0 (float, 1) }, sizeof (CleaveOnnxTensor)));
  g_ptr_array_add (m->initializers, t);
  g_autoptr (GBytes) bytes = cleave_onnx_model_encode (m);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  assert_invalid (data, len, "graph.initializer[3] 'conv1.weight': raw_data is 100 bytes, dims [8,1,3,3] need 288");

  /* dims whose product overflows */
  t->ndim = 3;
  t->dims[0] = G_MAXINT64 / 2; t->dims[1] = 4; t->dims[2] = 4;
  g_autoptr (GBytes) b2 = cleave_onnx_model_encode (m);
  data = g_bytes_get_data (b2, &len);
  assert_invalid (data, len, "conv1.weight");

  /* negative dim */
  t->ndim = 1;
  t->dims[0] = -3;
  g_autoptr (GBytes) b3 = cleave_onnx_model_encode (m);
  data = g_bytes_get_data (b3, &len);
  assert_invalid (data, len, "negative");
}

/* An empty packed float_data array (a zero-length LEN field) parses as no
 * values, without offsetting a NULL array. */
static void
test_empty_packed_array (void)
{
  /* graph { initializer { dims [0], name "w", data_type FLOAT, float_data (packed, 0 bytes) } } */
  const guint8 data[] = { 0x3a, 0x0b, 0x2a, 0x09, 0x08, 0x00, 0x42, 0x01, 'w', 0x10, 0x01, 0x22, 0x00 };
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_parse (data, sizeof data, "empty.onnx", &error);

  g_assert_no_error (error);
  g_assert_cmpuint (m->initializers->len, ==, 1);
  g_assert_cmpint (((CleaveOnnxTensor *) m->initializers->pdata[0])->numel, ==, 0);
}

/* Imports @m re-encoded and expects an INVALID_FILE error containing @needle. */
static void
expect_import_invalid (const CleaveOnnxModel *m, const char *needle)
{
  g_autoptr (GBytes) bytes = cleave_onnx_model_encode (m);
  g_autoptr (GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import_bytes (data, len, "bad.onnx", &error);

  g_assert_null (imp);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE);
  if (!strstr (error->message, needle))
    g_error ("message '%s' lacks '%s'", error->message, needle);
}

static CleaveOnnxTensor *
find_initializer (CleaveOnnxModel *m, const char *suffix)
{
  for (guint k = 0; k < m->initializers->len; k++)
    if (g_str_has_suffix (((CleaveOnnxTensor *) m->initializers->pdata[k])->name, suffix))
      return m->initializers->pdata[k];
  g_assert_not_reached ();
}

/* Weights that would poison every result (NaN, ±Inf, a negative running
 * variance) and initializers named twice are refused. */
static void
test_import_bad_values (void)
{
  g_autoptr (CleaveGraph) g = small_graph ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("cleave-onnx-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "values.onnx", NULL);
  float mean[2] = { 0.5f, 0.25f }, std[2] = { 0.2f, 0.4f };
  const struct { const char *suffix; float v; const char *needle; } cases[] = {
    { "conv1.weight", NAN, "not finite" },
    { "fc.bias", INFINITY, "not finite" },
    { "bn1.running_var", -1.0f, "negative variance" },
  };

  g_assert_true (cleave_onnx_export_graph (g, mean, std, path, &error));
  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_load (path, &error);
      CleaveOnnxTensor *t;
      g_assert_no_error (error);
      t = find_initializer (m, cases[i].suffix);
      t->f[t->numel - 1] = cases[i].v;
      expect_import_invalid (m, cases[i].needle);
    }
  {
    g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_load (path, &error);
    CleaveOnnxTensor *t = find_initializer (m, "conv1.weight");
    CleaveOnnxTensor *d = g_memdup2 (t, sizeof *t);
    d->name = g_strdup (t->name);
    d->f = g_new0 (float, t->numel);
    d->i = NULL;
    g_ptr_array_add (m->initializers, d);
    expect_import_invalid (m, "appears twice");
  }
  /* A BatchNormalization epsilon that divides by zero or flattens the layer. */
  {
    const float eps[] = { INFINITY, 0.0f, -1.0f, NAN };
    for (gsize i = 0; i < G_N_ELEMENTS (eps); i++)
      {
        g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_load (path, &error);
        gboolean set = FALSE;
        g_assert_no_error (error);
        for (guint k = 0; k < m->nodes->len && !set; k++)
          {
            CleaveOnnxNode *n = m->nodes->pdata[k];
            CleaveOnnxAttr *a = (CleaveOnnxAttr *) cleave_onnx_node_find_attr (n, "epsilon");
            if (g_strcmp0 (n->op_type, "BatchNormalization") == 0 && a)
              {
                a->f = eps[i];
                set = TRUE;
              }
          }
        g_assert_true (set);
        expect_import_invalid (m, "attribute 'epsilon'");
      }
  }
  g_remove (path);
  g_rmdir (dir);
}

/* Parsing and importing never crash and always explain a failure. */
static void
parse_and_import (const guint8 *data, gsize len, int *n_ok)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import_bytes (data, len, "fuzz.onnx", &error);

  if (imp)
    {
      (*n_ok)++;
      g_assert_nonnull (imp->graph);
      g_assert_cmpint (imp->n_classes, >, 0);
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == CLEAVE_ERROR);
      g_assert_true (g_str_has_prefix (error->message, "fuzz.onnx: "));
    }
}

static void
test_truncations (void)
{
  g_autoptr (GBytes) bytes = read_fixture ("residual-op17");
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  int n_ok = 0, n_tried = 0;

  for (gsize cut = 0; cut < len; cut += cut < 1024 ? 1 : 37)
    {
      /* a heap copy of exactly @cut bytes so ASan sees any overread */
      g_autofree guint8 *copy = g_memdup2 (data, MAX (cut, 1));
      parse_and_import (copy, cut, &n_ok);
      n_tried++;
    }
  g_assert_cmpint (n_ok, ==, 0);
  g_test_message ("%d truncations rejected", n_tried);
}

static void
test_random_flips (void)
{
  const char *names[] = { "plain-bn-op11", "incept-op13" };
  int n_ok = 0, n = 0;
  g_autoptr (GRand) rand = g_rand_new_with_seed (1234);

  for (gsize f = 0; f < G_N_ELEMENTS (names); f++)
    {
      g_autoptr (GBytes) bytes = read_fixture (names[f]);
      gsize len;
      const guint8 *data = g_bytes_get_data (bytes, &len);
      for (int it = 0; it < 300; it++, n++)
        {
          g_autofree guint8 *copy = g_memdup2 (data, len);
          int flips = 1 + g_rand_int_range (rand, 0, 4);
          for (int k = 0; k < flips; k++)
            {
              /* bias towards the structure at the start, where lengths and tags live */
              gsize pos = g_rand_boolean (rand) ? g_rand_int_range (rand, 0, MIN (len, 600)) : g_rand_int_range (rand, 0, len);
              copy[pos] ^= 1u << g_rand_int_range (rand, 0, 8);
              if (g_rand_int_range (rand, 0, 4) == 0)
                copy[pos] = 0xff;
            }
          parse_and_import (copy, len, &n_ok);
        }
    }
  /* the node lists of the torchvision exports: shape arithmetic, Split,
   * Slice, the channel shuffle's Reshape and Transpose, Clip, HardSigmoid */
  const char *families[] = { "shufflenet_v2-s-op11", "mobilenet_v3_small-s-op12", "efficientnet_b0-s-op17" };
  for (gsize f = 0; f < G_N_ELEMENTS (families); f++)
    {
      g_autofree char *file = g_strdup_printf ("%s.onnx", families[f]);
      g_autofree char *path = g_test_build_filename (G_TEST_DIST, "reference", "onnx", "families", file, NULL);
      g_autofree char *data = NULL;
      gsize len = 0;
      g_autoptr (GError) error = NULL;
      g_assert_true (g_file_get_contents (path, &data, &len, &error));
      g_autoptr (CleaveOnnxModel) m = cleave_onnx_model_parse ((const guint8 *) data, len, file, &error);
      g_assert_no_error (error);
      for (int it = 0; it < 200; it++, n++)
        {
          g_autofree guint8 *copy = g_memdup2 (data, len);
          /* the nodes come first in the file: flips in its first third */
          gsize pos = g_rand_int_range (rand, 0, MAX (1, (int) (len / 3)));
          copy[pos] ^= 1u << g_rand_int_range (rand, 0, 8);
          parse_and_import (copy, len, &n_ok);
        }
    }
  g_test_message ("%d of %d corrupted files still imported", n_ok, n);
  g_assert_cmpint (n_ok, <, n);
}

static int
find_op (CleaveGraph *g, CleaveOpKind op, int nth)
{
  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    if (cleave_graph_node (g, i)->op == op && nth-- == 0)
      return i;
  return -1;
}

static CleaveOnnxImport *
import_fixture (const char *name)
{
  g_autofree char *path = fixture_path (name);
  g_autoptr (GError) error = NULL;
  CleaveOnnxImport *imp = cleave_onnx_import (path, &error);

  g_assert_no_error (error);
  g_assert_nonnull (imp);
  return imp;
}

static void
test_import_structure (void)
{
  g_autoptr (CleaveOnnxImport) plain = import_fixture ("plain-op13");
  CleaveGraph *g = plain->graph;
  int c, h, w;

  cleave_graph_input_shape (g, &c, &h, &w);
  g_assert_cmpint (c, ==, 1);
  g_assert_cmpint (h, ==, 28);
  g_assert_cmpint (plain->n_classes, ==, 10);
  g_assert_false (plain->has_normalization);
  g_assert_false (plain->output_is_softmax);
  g_assert_cmpint (plain->opset, ==, 13);
  /* BN was folded by the exporter: conv(bias) relu pool ×2, flatten, linear */
  g_assert_cmpint (cleave_graph_n_nodes (g), ==, 1 + 8);
  g_assert_cmpint (find_op (g, CLEAVE_OP_BATCHNORM2D, 0), ==, -1);
  g_assert_cmpint (cleave_graph_node (g, 1)->op, ==, CLEAVE_OP_CONV2D);
  g_assert_cmpstr (cleave_graph_node (g, 1)->name, ==, "features.0");
  g_assert_cmpstr (cleave_graph_node (g, 2)->name, ==, "features.2");
  g_assert_cmpint (cleave_graph_node (g, 4)->out_channels, ==, 8);
  g_assert_cmpint (find_op (g, CLEAVE_OP_FLATTEN, 0), ==, 7);
  g_assert_cmpint (cleave_graph_find_param (g, "classifier.weight"), >=, 0);
  g_assert_cmpint (cleave_graph_find_param (g, "features.0.bias"), >=, 0);

  g_autoptr (CleaveOnnxImport) bn = import_fixture ("plain-bn-op11");
  int k = find_op (bn->graph, CLEAVE_OP_BATCHNORM2D, 1);
  g_assert_cmpint (k, >, 0);
  g_assert_cmpstr (cleave_graph_node (bn->graph, k)->name, ==, "features.5");
  g_assert_cmpfloat_with_epsilon (cleave_graph_node (bn->graph, k)->momentum, 0.1f, 1e-6);
  int rv = cleave_graph_find_param (bn->graph, "features.5.running_var");
  g_assert_cmpint (rv, >=, 0);
  g_assert_true (cleave_graph_param (bn->graph, rv)->is_buffer);
  g_assert_cmpfloat (cleave_graph_param (bn->graph, rv)->data[0], !=, 1.0f);
  g_assert_cmpint (bn->opset, ==, 11);

  g_autoptr (CleaveOnnxImport) res = import_fixture ("residual-op17");
  g_assert_true (res->output_is_softmax);
  g_assert_cmpint (res->opset, ==, 17);
  int add = find_op (res->graph, CLEAVE_OP_ADD, 0);
  g_assert_cmpint (add, >, 0);
  /* the add's inputs are the pool (skip path) and conv3 (BN folded into it) */
  CleaveNode *an = cleave_graph_node (res->graph, add);
  g_assert_cmpint (cleave_graph_node (res->graph, an->inputs[0])->op, ==, CLEAVE_OP_MAXPOOL2D);
  g_assert_cmpstr (cleave_graph_node (res->graph, an->inputs[1])->name, ==, "0.conv3");
  g_assert_cmpint (find_op (res->graph, CLEAVE_OP_GLOBAL_AVGPOOL, 0), >, 0);
  g_assert_cmpint (cleave_graph_find_param (res->graph, "0.fc.bias"), >=, 0);
  g_assert_cmpint (cleave_graph_n_mask_sites (res->graph), >, 0);

  g_autoptr (CleaveOnnxImport) inc = import_fixture ("incept-op13");
  g_assert_true (inc->has_normalization);
  g_assert_cmpint (inc->n_channels, ==, 1);
  g_assert_cmpfloat_with_epsilon (inc->mean[0], 0.2860f, 1e-6);
  g_assert_cmpfloat_with_epsilon (inc->std[0], 0.3530f, 1e-6);
  int cat = find_op (inc->graph, CLEAVE_OP_CONCAT, 0);
  g_assert_cmpint (cat, >, 0);
  g_assert_cmpint (cleave_graph_node (inc->graph, cat)->n_inputs, ==, 3);
  g_assert_cmpint (cleave_graph_node (inc->graph, cat)->out_shape[0], ==, 10);
  /* Pad + AveragePool became one pool with pad 1 */
  int pool = find_op (inc->graph, CLEAVE_OP_AVGPOOL2D, 0);
  g_assert_cmpint (pool, >, 0);
  g_assert_cmpint (cleave_graph_node (inc->graph, pool)->pad, ==, 1);
  /* MatMul + Add became one linear with a bias */
  int fc = find_op (inc->graph, CLEAVE_OP_LINEAR, 0);
  g_assert_true (cleave_graph_node (inc->graph, fc)->has_bias);
  g_assert_cmpint (cleave_graph_output (inc->graph), ==, fc);
}

/* Runs an import on raw [0,1] pixels: the import's normalisation, then the net. */
static float *
run_import (CleaveOnnxImport *imp, const float *raw, int batch)
{
  g_autoptr (CleaveBackend) be = cleave_backend_cpu_new ();
  g_autoptr (GError) error = NULL;
  int c, h, w;

  cleave_graph_input_shape (imp->graph, &c, &h, &w);
  gsize per = (gsize) c * h * w;
  g_autofree float *x = g_new (float, batch * per);
  for (int b = 0; b < batch; b++)
    for (gsize k = 0; k < per; k++)
      {
        int ch = k / (h * w);
        x[b * per + k] = (raw[b * per + k] - imp->mean[ch]) / imp->std[ch];
      }
  CleaveNet *net = cleave_net_new (imp->graph, be, &error);
  g_assert_no_error (error);
  g_assert_true (cleave_net_forward (net, x, batch, FALSE, &error));
  g_assert_no_error (error);
  float *out = g_new (float, batch * imp->n_classes);
  g_assert_true (cleave_net_download_output (net, out, &error));
  g_assert_no_error (error);
  cleave_net_free (net);
  if (imp->output_is_softmax)
    for (int b = 0; b < batch; b++)
      {
        float *r = out + b * imp->n_classes, mx = r[0], s = 0;
        for (int k = 1; k < imp->n_classes; k++)
          mx = MAX (mx, r[k]);
        for (int k = 0; k < imp->n_classes; k++)
          s += (r[k] = expf (r[k] - mx));
        for (int k = 0; k < imp->n_classes; k++)
          r[k] /= s;
      }
  return out;
}

static CleaveSafetensors *
load_golden (void)
{
  g_autofree char *path = g_test_build_filename (G_TEST_DIST, "reference", "onnx", "golden.safetensors", NULL);
  g_autoptr (GError) error = NULL;
  CleaveSafetensors *st = cleave_safetensors_load (path, &error);

  g_assert_no_error (error);
  return st;
}

static float *
golden_f32 (CleaveSafetensors *st, const char *name, gsize *numel)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, name);
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (t);
  *numel = cleave_safe_tensor_numel (t);
  float *f = cleave_safe_tensor_to_f32 (t, 0, "golden.safetensors", &error);
  g_assert_no_error (error);
  return f;
}

static void
assert_close (const float *a, const float *b, gsize n, float tol, const char *what)
{
  float worst = 0;

  for (gsize k = 0; k < n; k++)
    worst = MAX (worst, fabsf (a[k] - b[k]));
  g_test_message ("%s: max |diff| %.3g", what, worst);
  if (!(worst <= tol))
    g_error ("%s: max |diff| %g exceeds %g", what, worst, tol);
}

static void
test_import_matches_pytorch (void)
{
  g_autoptr (CleaveSafetensors) st = load_golden ();
  gsize n_in, n_out;
  g_autofree float *input = golden_f32 (st, "input", &n_in);
  int batch = n_in / (28 * 28);

  for (gsize f = 0; f < G_N_ELEMENTS (fixtures); f++)
    {
      g_autoptr (CleaveOnnxImport) imp = import_fixture (fixtures[f]);
      g_autofree char *key = g_strdup_printf ("%s.out", fixtures[f]);
      g_autofree float *want = golden_f32 (st, key, &n_out);
      g_assert_cmpuint (n_out, ==, (gsize) batch * imp->n_classes);
      g_autofree float *got = run_import (imp, input, batch);
      assert_close (got, want, n_out, 1e-4f, fixtures[f]);
    }
}


/* ---- torchvision families (tests/reference/make_torchvision_onnx.py) ---- */

/* max |got - want| / max |want| */
static double
max_rel_error (const float *got, const float *want, gsize n)
{
  double worst = 0, scale = 0;

  for (gsize k = 0; k < n; k++)
    {
      worst = MAX (worst, fabs ((double) got[k] - want[k]));
      scale = MAX (scale, fabs ((double) want[k]));
    }
  return scale > 0 ? worst / scale : worst;
}

/* Imports every model in @dir/families.json and checks its logits against
 * PyTorch's, then exports it and checks that the re-import gives the same
 * logits. Returns the number of models checked. */
static int
check_families (const char *dir)
{
  g_autofree char *manifest = g_build_filename (dir, "families.json", NULL);
  g_autofree char *gpath = g_build_filename (dir, "families.safetensors", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("cleave-families-XXXXXX", NULL);
  int checked = 0;

  g_assert_true (json_parser_load_from_file (parser, manifest, &error));
  g_assert_no_error (error);
  g_autoptr (CleaveSafetensors) st = cleave_safetensors_load (gpath, &error);
  g_assert_no_error (error);
  JsonArray *models = json_node_get_array (json_parser_get_root (parser));
  for (guint k = 0; k < json_array_get_length (models); k++)
    {
      JsonObject *o = json_array_get_object_element (models, k);
      const char *name = json_object_get_string_member (o, "name");
      g_autofree char *path = g_build_filename (dir, json_object_get_string_member (o, "file"), NULL);
      g_autofree char *ikey = g_strdup_printf ("%s.input", name), *okey = g_strdup_printf ("%s.out", name);
      gsize n_in, n_out;
      g_autofree float *input = golden_f32 (st, ikey, &n_in);
      g_autofree float *want = golden_f32 (st, okey, &n_out);
      g_autoptr (GError) local = NULL;
      g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import (path, &local);

      const char *refused = json_object_get_string_member_with_default (o, "refused", NULL);
      if (refused)
        {
          /* a family Cleave does not open yet: the message names the node, op and attribute */
          g_assert_null (imp);
          g_assert_error (local, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED);
          if (!strstr (local->message, refused) || !strstr (local->message, "node '"))
            g_error ("%s: refused with '%s', expected '%s'", name, local->message, refused);
          g_test_message ("%s (%s): refused: %s", name, json_object_get_string_member (o, "family"), local->message);
          continue;
        }
      if (!imp)
        g_error ("%s (%s): not opened: %s", name, json_object_get_string_member (o, "family"), local->message);
      int batch = n_out / imp->n_classes;
      g_assert_cmpuint (n_out, ==, (gsize) batch * imp->n_classes);
      g_autofree float *got = run_import (imp, input, batch);
      double rel = max_rel_error (got, want, n_out);
      g_test_message ("%s (%s, opset %" G_GINT64_FORMAT "): opened, %d layers, max relative error %.2g", name,
                      json_object_get_string_member (o, "family"), json_object_get_int_member (o, "opset"),
                      cleave_graph_n_nodes (imp->graph), rel);
      if (!(rel <= 1e-4))
        g_error ("%s: max relative error %g exceeds 1e-4", name, rel);

      /* Cleave's export of it opens again with the same outputs */
      g_autofree char *out = g_build_filename (tmp, "again.onnx", NULL);
      const gboolean norm = imp->has_normalization;
      g_assert_true (cleave_onnx_export_graph (imp->graph, norm ? imp->mean : NULL, norm ? imp->std : NULL, out, &local));
      g_assert_no_error (local);
      g_autoptr (CleaveOnnxImport) again = cleave_onnx_import (out, &local);
      g_assert_no_error (local);
      g_autofree float *got2 = run_import (again, input, batch);
      g_assert_cmpfloat (max_rel_error (got2, got, n_out), <=, 1e-6);
      g_unlink (out);
      checked++;
    }
  g_rmdir (tmp);
  return checked;
}

static void
test_families_small (void)
{
  g_autofree char *dir = g_test_build_filename (G_TEST_DIST, "reference", "onnx", "families", NULL);

  g_assert_cmpint (check_families (dir), >=, 12);
}

/* The full-size families, when tests/reference/make_torchvision_onnx.py
 * --full wrote them into $CLEAVE_FAMILIES_DIR (see tests/run-families.sh). */
static void
test_families_full (void)
{
  const char *dir = g_getenv ("CLEAVE_FAMILIES_DIR");
  g_autofree char *manifest = dir ? g_build_filename (dir, "families.json", NULL) : NULL;

  if (!manifest || !g_file_test (manifest, G_FILE_TEST_EXISTS))
    {
      g_test_skip ("no full-size families generated (CLEAVE_FAMILIES_DIR unset or empty)");
      return;
    }
  g_assert_cmpint (check_families (dir), >=, 1);
}

static gboolean
python_has_onnx (void)
{
  static int have = -1;

  if (have < 0)
    {
      int status = 1;
      const char *argv[] = { "/usr/bin/python3", "-c", "import onnx", NULL };
      have = g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, &status, NULL)
             && g_spawn_check_wait_status (status, NULL);
    }
  return have == 1;
}

static void
onnx_check_model (const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error,
                                                "/usr/bin/python3", "-c",
                                                "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('ok')",
                                                path, NULL);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, &out, &err, &error));
  g_assert_no_error (error);
  if (!g_subprocess_get_successful (p))
    g_error ("onnx.checker rejected %s: %s", path, err);
  g_assert_cmpstr (out, ==, "ok\n");
}

static void
test_export_reimport (void)
{
  g_autoptr (CleaveSafetensors) st = load_golden ();
  gsize n_in;
  g_autofree float *input = golden_f32 (st, "input", &n_in);
  int batch = n_in / (28 * 28);
  g_autofree char *dir = g_dir_make_tmp ("cleave-onnx-XXXXXX", NULL);

  for (gsize f = 0; f < G_N_ELEMENTS (fixtures); f++)
    {
      g_autoptr (CleaveOnnxImport) imp = import_fixture (fixtures[f]);
      g_autoptr (GError) error = NULL;
      g_autofree char *path = g_build_filename (dir, "out.onnx", NULL);
      const gboolean norm = imp->has_normalization;

      g_assert_true (cleave_onnx_export_graph (imp->graph, norm ? imp->mean : NULL, norm ? imp->std : NULL, path, &error));
      g_assert_no_error (error);
      if (python_has_onnx ())
        onnx_check_model (path);

      g_autoptr (CleaveOnnxImport) again = cleave_onnx_import (path, &error);
      g_assert_no_error (error);
      g_assert_cmpint (again->has_normalization, ==, norm);
      g_assert_false (again->output_is_softmax);
      g_assert_cmpint (cleave_graph_n_nodes (again->graph), ==, cleave_graph_n_nodes (imp->graph));
      for (int i = 0; i < cleave_graph_n_nodes (imp->graph); i++)
        {
          g_assert_cmpstr (cleave_graph_node (again->graph, i)->name, ==, cleave_graph_node (imp->graph, i)->name);
          g_assert_cmpint (cleave_graph_node (again->graph, i)->op, ==, cleave_graph_node (imp->graph, i)->op);
        }
      g_assert_cmpint (cleave_graph_n_params (again->graph), ==, cleave_graph_n_params (imp->graph));
      for (int i = 0; i < cleave_graph_n_params (imp->graph); i++)
        {
          CleaveParam *a = cleave_graph_param (imp->graph, i), *b = cleave_graph_param (again->graph, i);
          g_assert_cmpstr (a->name, ==, b->name);
          g_assert_cmpmem (a->data, cleave_param_numel (a) * 4, b->data, cleave_param_numel (b) * 4);
        }
      imp->output_is_softmax = FALSE;   /* compare raw logits */
      g_autofree float *y0 = run_import (imp, input, batch);
      g_autofree float *y1 = run_import (again, input, batch);
      assert_close (y0, y1, (gsize) batch * imp->n_classes, 1e-5f, fixtures[f]);
      g_remove (path);
    }
  g_rmdir (dir);
}

static void
test_export_small_graph (void)
{
  g_autoptr (CleaveGraph) g = small_graph ();
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("cleave-onnx-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "small.onnx", NULL);
  float mean[2] = { 0.5f, 0.25f }, std[2] = { 0.2f, 0.4f };

  g_assert_true (cleave_onnx_export_graph (g, mean, std, path, &error));
  g_assert_no_error (error);
  if (python_has_onnx ())
    onnx_check_model (path);
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import (path, &error);
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (imp->mean[1], 0.25f, 1e-6);
  g_assert_cmpfloat_with_epsilon (imp->std[0], 0.2f, 1e-6);
  /* dropout is not exported (inference graph) */
  g_assert_cmpint (cleave_graph_n_nodes (imp->graph), ==, cleave_graph_n_nodes (g) - 1);
  g_assert_cmpint (find_op (imp->graph, CLEAVE_OP_BATCHNORM2D, 0), ==, 2);
  int rm = cleave_graph_find_param (imp->graph, "bn1.running_mean");
  g_assert_cmpfloat (cleave_graph_param (imp->graph, rm)->data[2], ==, 0.5f + 0.2f);

  /* same outputs as the source graph on the same raw input */
  float raw[2 * 2 * 36];
  for (gsize k = 0; k < G_N_ELEMENTS (raw); k++)
    raw[k] = (k * 37 % 101) / 100.f;
  g_autofree float *y1 = run_import (imp, raw, 2);
  CleaveOnnxImport src = { .graph = g, .n_classes = 4, .mean = mean, .std = std };
  g_autofree float *y0 = run_import (&src, raw, 2);
  assert_close (y0, y1, 8, 1e-6f, "small graph");
  g_remove (path);
  g_rmdir (dir);
}

static void expect_unsupported (CleaveOnnxBuilder *b, const char *const *needles);

/* Two graphs as branches of one ONNX graph, with Concat and ArgMax glue. */
static void
test_builder_branches (void)
{
  g_autoptr (CleaveGraph) g = small_graph ();
  g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new ("composition");
  g_autoptr (GError) error = NULL;
  float mean[2] = { 0.5f, 0.5f }, std[2] = { 0.5f, 0.5f };

  const char *x = cleave_onnx_builder_add_input (b, "input", 2, 6, 6);
  const char *xa = cleave_onnx_builder_add_normalize (b, x, 2, mean, std, "a.");
  const char *xb = cleave_onnx_builder_add_normalize (b, x, 2, mean, std, "b.");
  const char *ya = cleave_onnx_builder_add_graph (b, g, xa, "a.", &error);
  g_assert_no_error (error);
  const char *yb = cleave_onnx_builder_add_graph (b, g, xb, "b.", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (ya, !=, yb);
  const char *both[2] = { ya, yb };
  int cat = cleave_onnx_builder_add_node (b, "Concat", "/scores/Concat", both, 2);
  cleave_onnx_builder_set_int (b, cat, "axis", 1);
  const char *scores = cleave_onnx_builder_node_output (b, cat);
  int am = cleave_onnx_builder_add_node (b, "ArgMax", "/predict/ArgMax", &scores, 1);
  cleave_onnx_builder_set_int (b, am, "axis", 1);
  cleave_onnx_builder_set_int (b, am, "keepdims", 0);
  gint64 d1[1] = { -1 }, d2[2] = { -1, 8 };
  cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, am), CLEAVE_ONNX_INT64, 1, d1);
  cleave_onnx_builder_add_output (b, scores, CLEAVE_ONNX_FLOAT, 2, d2);

  const CleaveOnnxModel *m = cleave_onnx_builder_model (b);
  g_assert_cmpint (cleave_onnx_builder_model (b)->initializers->len, ==, 2 * (2 + cleave_graph_n_params (g)));
  for (guint k = 0; k < m->initializers->len; k++)
    {
      const char *name = ((CleaveOnnxTensor *) m->initializers->pdata[k])->name;
      g_assert_true (g_str_has_prefix (name, "a.") || g_str_has_prefix (name, "b."));
    }
  g_autofree char *dir = g_dir_make_tmp ("cleave-onnx-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "compose.onnx", NULL);
  g_assert_true (cleave_onnx_builder_save (b, path, &error));
  g_assert_no_error (error);
  if (python_has_onnx ())
    onnx_check_model (path);

  /* Cleave reads the float output (the scores) and skips the ArgMax */
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (imp->n_classes, ==, 8);
  g_assert_cmpint (imp->n_outputs_used, ==, 1);
  float raw[3 * 2 * 36];
  for (gsize k = 0; k < G_N_ELEMENTS (raw); k++)
    raw[k] = (k * 53 % 97) / 96.f;
  CleaveOnnxImport one = { .graph = g, .n_classes = 4, .mean = mean, .std = std };
  g_autofree float *y1 = run_import (&one, raw, 3);
  g_autofree float *y2 = run_import (imp, raw, 3);
  for (int n = 0; n < 3; n++)
    for (int k = 0; k < 8; k++)
      g_assert_cmpfloat_with_epsilon (y2[n * 8 + k], y1[n * 4 + k % 4], 1e-6);
  g_remove (path);

  /* two float outputs that are not one score each: refused, naming them */
  g_autoptr (CleaveOnnxBuilder) b2 = cleave_onnx_builder_new ("two-heads");
  const char *x2 = cleave_onnx_builder_add_input (b2, "input", 2, 6, 6);
  const char *h1 = cleave_onnx_builder_add_graph (b2, g, x2, "a.", &error);
  const char *h2 = cleave_onnx_builder_add_graph (b2, g, x2, "b.", &error);
  g_assert_no_error (error);
  gint64 d4[2] = { -1, 4 };
  cleave_onnx_builder_add_output (b2, h1, CLEAVE_ONNX_FLOAT, 2, d4);
  cleave_onnx_builder_add_output (b2, h2, CLEAVE_ONNX_FLOAT, 2, d4);
  const char *needles[] = { "graph.output", "2 outputs", h1, h2, "one classification output", NULL };
  expect_unsupported (b2, needles);
  g_rmdir (dir);
}

static void
expect_unsupported (CleaveOnnxBuilder *b, const char *const *needles)
{
  g_autoptr (GBytes) bytes = cleave_onnx_builder_to_bytes (b);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import_bytes (data, len, "u.onnx", &error);

  g_assert_null (imp);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED);
  for (int k = 0; needles[k]; k++)
    if (!strstr (error->message, needles[k]))
      g_error ("message '%s' lacks '%s'", error->message, needles[k]);
  g_test_message ("%s", error->message);
}

static void
test_unsupported (void)
{
  gint64 dims[2] = { -1, 4 };
  gint64 wd[4] = { 4, 1, 3, 3 };
  float w[36] = { 0 };

  {
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    int n = cleave_onnx_builder_add_node (b, "LeakyRelu", "/act/LeakyRelu", &x, 1);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "u.onnx", "/act/LeakyRelu", "LeakyRelu", "not supported", NULL });
  }
  {
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    const char *wn = cleave_onnx_builder_add_initializer (b, "conv.weight", 4, wd, w);
    const char *in[2] = { x, wn };
    int n = cleave_onnx_builder_add_node (b, "Conv", "/conv/Conv", in, 2);
    gint64 dil[2] = { 2, 2 };
    cleave_onnx_builder_set_ints (b, n, "dilations", dil, 2);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/conv/Conv", "(Conv)", "dilations", NULL });
  }
  {
    /* rectangular strides */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    const char *wn = cleave_onnx_builder_add_initializer (b, "conv.weight", 4, wd, w);
    const char *in[2] = { x, wn };
    int n = cleave_onnx_builder_add_node (b, "Conv", "/conv/Conv", in, 2);
    gint64 st[2] = { 1, 2 };
    cleave_onnx_builder_set_ints (b, n, "strides", st, 2);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/conv/Conv", "strides", "[1,2]", NULL });
  }
  {
    /* an unknown attribute on a known op */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    int n = cleave_onnx_builder_add_node (b, "Relu", "/r/Relu", &x, 1);
    cleave_onnx_builder_set_float (b, n, "alpha", 0.1f);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/r/Relu", "(Relu)", "'alpha'", NULL });
  }
  {
    /* Mul of two computed tensors that neither match nor scale per channel */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    const char *wn = cleave_onnx_builder_add_initializer (b, "conv.weight", 4, wd, w);
    const char *in[2] = { x, wn };
    int n = cleave_onnx_builder_add_node (b, "Conv", "/conv/Conv", in, 2);
    const char *c = cleave_onnx_builder_node_output (b, n);
    int r = cleave_onnx_builder_add_node (b, "Relu", "/relu/Relu", &x, 1);
    const char *in2[2] = { c, cleave_onnx_builder_node_output (b, r) };
    int m = cleave_onnx_builder_add_node (b, "Mul", "/sq/Mul", in2, 2);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, m), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/sq/Mul", "(Mul)", "[N,4,6,6]", "[N,C,1,1]", NULL });
  }
  {
    /* a rectangular kernel that no square one can hold with the same padding */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    gint64 rd[4] = { 4, 1, 1, 4 }, pads[4] = { 0, 1, 0, 2 };
    const char *wn = cleave_onnx_builder_add_initializer (b, "rect.weight", 4, rd, w);
    const char *in[2] = { x, wn };
    int n = cleave_onnx_builder_add_node (b, "Conv", "/rect/Conv", in, 2);
    cleave_onnx_builder_set_ints (b, n, "pads", pads, 4);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/rect/Conv", "(Conv)", "1x4", "'pads' = [0,1,0,2]", NULL });
  }
  {
    /* a Transpose other than a channel shuffle's */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    int r = cleave_onnx_builder_add_node (b, "Relu", "/relu/Relu", &x, 1);
    const char *rx = cleave_onnx_builder_node_output (b, r);
    int t = cleave_onnx_builder_add_node (b, "Transpose", "/t/Transpose", &rx, 1);
    gint64 perm[4] = { 0, 1, 3, 2 };
    cleave_onnx_builder_set_ints (b, t, "perm", perm, 4);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, t), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/t/Transpose", "(Transpose)", "'perm'", "[0,1,3,2]", NULL });
  }
  {
    /* Split along H */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    int r = cleave_onnx_builder_add_node (b, "Relu", "/relu/Relu", &x, 1);
    const char *rx = cleave_onnx_builder_node_output (b, r);
    int sp = cleave_onnx_builder_add_node (b, "Split", "/s/Split", &rx, 1);
    cleave_onnx_builder_set_int (b, sp, "axis", 2);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, sp), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/s/Split", "(Split)", "'axis' = 2", NULL });
  }
  {
    /* a per-channel constant Mul after a Relu cannot be folded anywhere (a scalar becomes a scale layer) */
    g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
    const char *x = cleave_onnx_builder_add_input (b, "input", 1, 8, 8);
    const char *wn = cleave_onnx_builder_add_initializer (b, "conv.weight", 4, wd, w);
    const char *in[2] = { x, wn };
    int n = cleave_onnx_builder_add_node (b, "Conv", "/conv/Conv", in, 2);
    const char *c = cleave_onnx_builder_node_output (b, n);
    int r = cleave_onnx_builder_add_node (b, "Relu", "/relu/Relu", &c, 1);
    gint64 cd[4] = { 1, 4, 1, 1 };
    float two[4] = { 2.f, 3.f, 4.f, 5.f };
    const char *k = cleave_onnx_builder_add_initializer (b, "two", 4, cd, two);
    const char *in2[2] = { cleave_onnx_builder_node_output (b, r), k };
    int m = cleave_onnx_builder_add_node (b, "Mul", "/scale/Mul", in2, 2);
    cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, m), CLEAVE_ONNX_FLOAT, 2, dims);
    expect_unsupported (b, (const char *const[]) { "/scale/Mul", "relu", NULL });
  }
}

/* Constants after conv and linear layers fold into their parameters. */
static void
test_fold_constants (void)
{
  g_autoptr (CleaveOnnxBuilder) b = cleave_onnx_builder_new (NULL);
  g_autoptr (GError) error = NULL;
  gint64 wd[4] = { 2, 1, 1, 1 }, cd[3] = { 2, 1, 1 }, ld[2] = { 2, 3 }, bd[1] = { 3 };
  float w[2] = { 1.f, -1.f }, scale[2] = { 2.f, 3.f }, shift[2] = { 0.5f, -0.5f };
  float lw[6] = { 1, 2, 3, 4, 5, 6 }, lb[3] = { 0.1f, 0.2f, 0.3f };

  const char *x = cleave_onnx_builder_add_input (b, "input", 1, 1, 1);
  const char *in[2] = { x, cleave_onnx_builder_add_initializer (b, "c.weight", 4, wd, w) };
  int n = cleave_onnx_builder_add_node (b, "Conv", "/c/Conv", in, 2);
  const char *in2[2] = { cleave_onnx_builder_node_output (b, n), cleave_onnx_builder_add_initializer (b, "s", 3, cd, scale) };
  n = cleave_onnx_builder_add_node (b, "Mul", "/c/Mul", in2, 2);
  const char *in3[2] = { cleave_onnx_builder_node_output (b, n), cleave_onnx_builder_add_initializer (b, "t", 3, cd, shift) };
  n = cleave_onnx_builder_add_node (b, "Sub", "/c/Sub", in3, 2);
  const char *fo = cleave_onnx_builder_node_output (b, n);
  n = cleave_onnx_builder_add_node (b, "Flatten", "/f/Flatten", &fo, 1);
  const char *in4[2] = { cleave_onnx_builder_node_output (b, n), cleave_onnx_builder_add_initializer (b, "w", 2, ld, lw) };
  n = cleave_onnx_builder_add_node (b, "MatMul", "/fc/MatMul", in4, 2);
  const char *in5[2] = { cleave_onnx_builder_add_initializer (b, "fc.b", 1, bd, lb), cleave_onnx_builder_node_output (b, n) };
  n = cleave_onnx_builder_add_node (b, "Add", "/fc/Add", in5, 2);
  gint64 od[2] = { -1, 3 };
  cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, n), CLEAVE_ONNX_FLOAT, 2, od);

  g_autoptr (GBytes) bytes = cleave_onnx_builder_to_bytes (b);
  gsize len;
  const guint8 *data = g_bytes_get_data (bytes, &len);
  g_autoptr (CleaveOnnxImport) imp = cleave_onnx_import_bytes (data, len, "fold.onnx", &error);
  g_assert_no_error (error);
  CleaveGraph *g = imp->graph;
  g_assert_cmpint (cleave_graph_n_nodes (g), ==, 4);   /* input conv flatten linear */
  CleaveNode *conv = cleave_graph_node (g, 1);
  g_assert_cmpstr (conv->name, ==, "c");
  g_assert_true (conv->has_bias);
  CleaveParam *cw = cleave_graph_param (g, conv->param[CLEAVE_PARAM_WEIGHT]);
  CleaveParam *cb = cleave_graph_param (g, conv->param[CLEAVE_PARAM_BIAS]);
  g_assert_cmpfloat (cw->data[0], ==, 2.f);
  g_assert_cmpfloat (cw->data[1], ==, -3.f);
  g_assert_cmpfloat (cb->data[0], ==, -0.5f);
  g_assert_cmpfloat (cb->data[1], ==, 0.5f);
  CleaveNode *fc = cleave_graph_node (g, 3);
  g_assert_cmpstr (fc->name, ==, "fc");
  g_assert_true (fc->has_bias);
  CleaveParam *fw = cleave_graph_param (g, fc->param[CLEAVE_PARAM_WEIGHT]);
  /* MatMul's [in, out] weight is transposed to PyTorch's [out, in] */
  g_assert_cmpint (fw->shape[0], ==, 3);
  g_assert_cmpfloat (fw->data[0 * 2 + 1], ==, 4.f);
  g_assert_cmpfloat (fw->data[2 * 2 + 0], ==, 3.f);
  g_assert_cmpfloat (cleave_graph_param (g, fc->param[CLEAVE_PARAM_BIAS])->data[2], ==, 0.3f);
}

static void
test_load_model (void)
{
  g_autofree char *path = fixture_path ("incept-op13");
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveModel) m = cleave_onnx_load_model (path, &error);

  g_assert_no_error (error);
  g_assert_cmpint (m->n_classes, ==, 10);
  g_assert_cmpint (m->n_channels, ==, 1);
  g_assert_cmpfloat_with_epsilon (m->mean[0], 0.2860f, 1e-6);
  g_assert_cmpfloat_with_epsilon (m->std[0], 0.3530f, 1e-6);
  g_assert_cmpstr (m->class_names[9], ==, "9");
  g_assert_nonnull (m->provenance_json);
  g_assert_nonnull (strstr (m->provenance_json, "incept-op13.onnx"));
  g_assert_nonnull (strstr (m->provenance_json, "\"opset\""));

  g_autofree char *missing = g_build_filename (g_get_tmp_dir (), "cleave-no-such-file.onnx", NULL);
  g_autoptr (CleaveModel) none = cleave_onnx_load_model (missing, &error);
  g_assert_null (none);
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/onnx/protobuf/encode-parse-roundtrip", test_roundtrip_encoding);
  g_test_add_func ("/core/onnx/protobuf/malformed-crafted", test_malformed_crafted);
  g_test_add_func ("/core/onnx/protobuf/truncations", test_truncations);
  g_test_add_func ("/core/onnx/protobuf/empty-packed-array", test_empty_packed_array);
  g_test_add_func ("/core/onnx/protobuf/random-byte-flips", test_random_flips);
  g_test_add_func ("/core/onnx/import/structure", test_import_structure);
  g_test_add_func ("/core/onnx/import/unsupported-names-node-op-attr", test_unsupported);
  g_test_add_func ("/core/onnx/import/fold-constants", test_fold_constants);
  g_test_add_func ("/core/onnx/import/bad-values-and-duplicates-refused", test_import_bad_values);
  g_test_add_func ("/core/onnx/import/matches-pytorch", test_import_matches_pytorch);
  g_test_add_func ("/core/onnx/import/load-model", test_load_model);
  g_test_add_func ("/core/onnx/import/torchvision-families", test_families_small);
  g_test_add_func ("/core/onnx/import/torchvision-families-full", test_families_full);
  g_test_add_func ("/core/onnx/export/small-graph", test_export_small_graph);
  g_test_add_func ("/core/onnx/export/reimport-same-outputs", test_export_reimport);
  g_test_add_func ("/core/onnx/export/builder-branches", test_builder_branches);
  return g_test_run ();
}
