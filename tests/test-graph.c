/* test-graph.c: architecture JSON, shape inference, parameters, mask sites
 * and ties, FLOP counts, and the errors bad architectures get. */
#include "cleave-error.h"
#include "cleave-graph.h"
#include "json-mutate.h"

#include <string.h>

static CleaveGraph *
parse (const char *json)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_from_json (json, &error);
  g_assert_no_error (error);
  return g;
}

static void
expect_error (const char *json, const char *needle)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_from_json (json, &error);
  g_assert_null (g);
  g_assert_nonnull (error);
  g_assert_true (error->domain == CLEAVE_ERROR);
  if (strstr (error->message, needle) == NULL)
    g_error ("error '%s' should mention '%s'", error->message, needle);
}

static void
test_shapes_and_params (void)
{
  g_autoptr(CleaveGraph) g = parse (
    "{\"input\":[3,32,32],\"nodes\":["
    "{\"name\":\"c\",\"op\":\"conv2d\",\"out_channels\":8,\"kernel\":5,\"stride\":2,\"pad\":2},"
    "{\"name\":\"b\",\"op\":\"batchnorm2d\"},{\"name\":\"r\",\"op\":\"relu\"},"
    "{\"name\":\"p\",\"op\":\"avgpool2d\",\"kernel\":3,\"stride\":2,\"pad\":1},"
    "{\"name\":\"f\",\"op\":\"flatten\"},{\"name\":\"d\",\"op\":\"dropout\",\"p\":0.25},"
    "{\"name\":\"fc\",\"op\":\"linear\",\"out_features\":7,\"bias\":false}]}");
  CleaveNode *c = cleave_graph_node (g, cleave_graph_find_node (g, "c"));
  CleaveNode *p = cleave_graph_node (g, cleave_graph_find_node (g, "p"));
  CleaveNode *fc = cleave_graph_node (g, cleave_graph_find_node (g, "fc"));

  g_assert_cmpint (c->out_shape[0], ==, 8);
  g_assert_cmpint (c->out_shape[1], ==, 16);
  g_assert_cmpint (p->out_shape[1], ==, 8);
  g_assert_cmpint (fc->in_features, ==, 8 * 8 * 8);
  g_assert_cmpint (cleave_graph_n_outputs (g), ==, 7);
  g_assert_cmpint (fc->param[CLEAVE_PARAM_BIAS], ==, -1);
  /* conv weight+bias, BN γ β mean var, fc weight */
  g_assert_cmpint (cleave_graph_n_params (g), ==, 7);
  g_assert_true (cleave_graph_param (g, cleave_graph_find_param (g, "b.running_var"))->is_buffer);
  g_assert_cmpuint (cleave_graph_count_params (g), ==, 8 * 3 * 25 + 8 + 16 + 7 * 512);
  /* 2 × MACs: conv 8×16×16 outputs × 3×25 inputs; linear 7 × 512 */
  g_assert_cmpuint (cleave_graph_node_flops (g, cleave_graph_find_node (g, "c")), ==, 2ull * 8 * 16 * 16 * 75);
  g_assert_cmpuint (cleave_graph_node_flops (g, cleave_graph_find_node (g, "fc")), ==, 2ull * 7 * 512);
  /* one mask site, after the ReLU */
  g_assert_cmpint (cleave_graph_n_mask_sites (g), ==, 1);
  g_assert_cmpint (cleave_graph_mask_site (g, 0)->node, ==, cleave_graph_find_node (g, "r"));
}

static void
test_json_round_trip (void)
{
  g_autoptr(CleaveGraph) g = parse (
    "{\"input\":[1,9,9],\"nodes\":["
    "{\"name\":\"a\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":2,\"kernel\":1},"
    "{\"name\":\"b\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":3,\"kernel\":3,\"pad\":1,\"groups\":1},"
    "{\"name\":\"cat\",\"op\":\"concat\",\"inputs\":[\"a\",\"b\"]},"
    "{\"name\":\"m\",\"op\":\"maxpool2d\",\"kernel\":3,\"stride\":2,\"pad\":1},"
    "{\"name\":\"g\",\"op\":\"global_avgpool\"},{\"name\":\"l\",\"op\":\"linear\",\"out_features\":4},"
    "{\"name\":\"s\",\"op\":\"sigmoid\"}]}");
  g_autofree char *json = cleave_graph_to_json (g);
  g_autoptr(CleaveGraph) back = parse (json);
  g_autofree char *json2 = cleave_graph_to_json (back);
  g_autoptr(CleaveGraph) copy = cleave_graph_copy (g);

  g_assert_cmpstr (json, ==, json2);
  g_assert_cmpint (cleave_graph_node (back, cleave_graph_find_node (back, "cat"))->out_shape[0], ==, 5);
  g_assert_cmpint (cleave_graph_n_mask_sites (back), ==, 2);
  g_assert_cmpint (cleave_graph_total_kernels (back), ==, 5);
  g_assert_cmpint (cleave_graph_n_nodes (copy), ==, cleave_graph_n_nodes (g));
  g_assert_true (cleave_graph_param (copy, 0)->data != cleave_graph_param (g, 0)->data);
}

/* Residual adds tie masks, also through a pool and across chained blocks. */
static void
test_residual_ties (void)
{
  g_autoptr(CleaveGraph) g = parse (
    "{\"input\":[1,8,8],\"nodes\":["
    "{\"name\":\"c0\",\"op\":\"conv2d\",\"out_channels\":4,\"pad\":1},{\"name\":\"r0\",\"op\":\"relu\"},"
    "{\"name\":\"p0\",\"op\":\"maxpool2d\"},"
    "{\"name\":\"c1\",\"op\":\"conv2d\",\"out_channels\":4,\"pad\":1},{\"name\":\"r1\",\"op\":\"relu\"},"
    "{\"name\":\"a1\",\"op\":\"add\",\"inputs\":[\"r1\",\"p0\"]},"
    "{\"name\":\"c2\",\"op\":\"conv2d\",\"out_channels\":4,\"pad\":1},{\"name\":\"b2\",\"op\":\"batchnorm2d\"},"
    "{\"name\":\"r2\",\"op\":\"relu\"},{\"name\":\"a2\",\"op\":\"add\",\"inputs\":[\"r2\",\"a1\"]},"
    "{\"name\":\"c3\",\"op\":\"conv2d\",\"out_channels\":6,\"pad\":1},{\"name\":\"r3\",\"op\":\"relu\"},"
    "{\"name\":\"g\",\"op\":\"global_avgpool\"},{\"name\":\"l\",\"op\":\"linear\",\"out_features\":3}]}");
  g_assert_cmpint (cleave_graph_n_mask_sites (g), ==, 4);
  g_assert_cmpint (cleave_graph_mask_site (g, 0)->tie, ==, 0);
  g_assert_cmpint (cleave_graph_mask_site (g, 1)->tie, ==, 0);
  g_assert_cmpint (cleave_graph_mask_site (g, 2)->tie, ==, 0);
  g_assert_cmpint (cleave_graph_mask_site (g, 3)->tie, ==, 3);
}

static void
test_bad_architectures (void)
{
  expect_error ("{\"input\":[1,8,8]", "JSON");
  expect_error ("[]", "root");
  expect_error ("{\"nodes\":[]}", "input");
  expect_error ("{\"input\":[1,8],\"nodes\":[]}", "input");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[]}", "no layers");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"op\":\"relu\"}]}", "name");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"teleport\"}]}", "teleport");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"conv2d\"}]}", "out_channels");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"conv2d\",\"out_channels\":2,\"kernel\":0}]}", "kernel");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"conv2d\",\"out_channels\":2,\"kernel\":11}]}", "larger");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"linear\",\"out_features\":2}]}", "flatten");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"relu\",\"inputs\":[\"later\"]}]}", "later");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"conv2d\",\"out_channels\":3,\"groups\":2}]}", "groups");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"a\",\"op\":\"conv2d\",\"out_channels\":2},"
                "{\"name\":\"s\",\"op\":\"add\",\"inputs\":[\"a\",\"input\"]}]}", "different shapes");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"dropout\",\"p\":1.5}]}", "'p'");
  expect_error ("{\"input\":[1,8,8],\"nodes\":[{\"name\":\"x\",\"op\":\"conv2d\",\"out_channels\":\"many\"}]}", "integer");
}

/* Sizes come from the JSON: a parameter or an activation too large to hold is
 * refused with an error before anything is allocated from it. */
static void
test_param_size_checked (void)
{
  /* a 2^20 × 2^20 × 3 × 3 weight: 40 TB */
  expect_error ("{\"input\":[1,8,8],\"nodes\":["
                "{\"name\":\"a\",\"op\":\"conv2d\",\"out_channels\":1048576,\"pad\":1},"
                "{\"name\":\"b\",\"op\":\"conv2d\",\"out_channels\":1048576,\"pad\":1}]}", "too large");
  /* 4096 × 4096 × 4096 features overflow an int when flattened */
  expect_error ("{\"input\":[4096,4096,4096],\"nodes\":[{\"name\":\"f\",\"op\":\"flatten\"},"
                "{\"name\":\"l\",\"op\":\"linear\",\"out_features\":2}]}", "too large");
  /* a concat of eight 2^20-channel maps overflows the channel count of a later conv's weight */
  expect_error ("{\"input\":[1,64,64],\"nodes\":["
                "{\"name\":\"a\",\"op\":\"conv2d\",\"out_channels\":1048576,\"kernel\":1},"
                "{\"name\":\"c\",\"op\":\"concat\",\"inputs\":[\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\",\"a\"]},"
                "{\"name\":\"f\",\"op\":\"flatten\"}]}", "too large");
}

static void
parse_variant (const char *json, gpointer user_data)
{
  g_autoptr(GError) error = NULL;
  CleaveGraph *g = cleave_graph_from_json (json, &error);
  int *n = user_data;
  g_assert_true ((g == NULL) != (error == NULL));
  cleave_graph_free (g);
  (*n)++;
}

/* Every field of an architecture given a value of the wrong type: a clean
 * error or a graph, never a json-glib critical (fatal in tests). */
static void
test_json_wrong_types (void)
{
  int n = 0;
  json_mutate_max_elements = 100;
  json_mutate_each ("{\"input\":[1,9,9],\"nodes\":["
                    "{\"name\":\"a\",\"op\":\"conv2d\",\"inputs\":[\"input\"],\"out_channels\":2,\"kernel\":1,"
                    "\"stride\":1,\"pad\":0,\"groups\":1,\"bias\":true},"
                    "{\"name\":\"b\",\"op\":\"batchnorm2d\",\"eps\":1e-5,\"momentum\":0.1},"
                    "{\"name\":\"m\",\"op\":\"maxpool2d\",\"kernel\":3,\"stride\":2,\"pad\":1},"
                    "{\"name\":\"d\",\"op\":\"dropout\",\"p\":0.5},"
                    "{\"name\":\"g\",\"op\":\"global_avgpool\"},{\"name\":\"l\",\"op\":\"linear\",\"out_features\":4,\"bias\":false}]}",
                    parse_variant, &n);
  g_test_message ("%d variants", n);
  g_assert_cmpint (n, >, 300);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/graph/shapes-params-flops", test_shapes_and_params);
  g_test_add_func ("/core/graph/json-round-trip", test_json_round_trip);
  g_test_add_func ("/core/graph/residual-ties", test_residual_ties);
  g_test_add_func ("/core/graph/bad-architectures-name-the-field", test_bad_architectures);
  g_test_add_func ("/core/graph/param-size-checked-before-alloc", test_param_size_checked);
  g_test_add_func ("/core/graph/json-wrong-types-no-criticals", test_json_wrong_types);
  return g_test_run ();
}
