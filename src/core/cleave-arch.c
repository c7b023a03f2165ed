/* cleave-arch.c: the paper's architectures (SimCNN, ResCNN, InceCNN), a weak
 * CNN and the benchmark CNN, named like the reference PyTorch classes
 * (GradSplitter's: conv_i.0 = Conv2d, conv_i.1 = BatchNorm2d, fc_i = Linear;
 * with ref=cnnsplitter, CNNSplitter's: no BatchNorm, SimCNN's conv_i = Conv2d
 * and 512 hidden units, ResCNN's conv_i.0 = Conv2d and classifier.2 = Linear). */
#include "cleave-arch.h"
#include "cleave-error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const presets[] = { "simcnn", "rescnn", "incecnn", "weak", "bench", NULL };

const char *const *
cleave_arch_presets (void)
{
  return presets;
}

typedef struct {
  CleaveGraph *g;
  int cur;       /* current node */
  int h, w;      /* current spatial size */
  gboolean cnnsplitter;      /* CNNSplitter's variant: no BatchNorm, its own names */
  const char *conv_name;     /* printf format of conv i's Conv2d */
} Builder;

static int
scale (int c, double w)
{
  int v = (int) lround (c * w);
  return MAX (v, 1);
}

/* conv_i: Conv2d + BatchNorm2d + ReLU, "same" padding; CNNSplitter's
 * variant has no BatchNorm. */
static int
conv_bn_relu (Builder *b, int i, int input, int out, int kernel)
{
  g_autofree char *cname = g_strdup_printf (b->conv_name, i);
  g_autofree char *bname = g_strdup_printf ("conv_%d.1", i);
  g_autofree char *rname = g_strdup_printf ("relu_%d", i);
  int c = cleave_graph_add_conv2d (b->g, cname, input, out, kernel, 1, (kernel - 1) / 2, 1, TRUE);
  if (!b->cnnsplitter)
    c = cleave_graph_add_batchnorm2d (b->g, bname, c);
  return cleave_graph_add_relu (b->g, rname, c);
}

/* 2×2 max pool, skipped once the map is too small: with 28×28 inputs the
 * paper's fifth pool would act on a 1×1 map. */
static int
maybe_pool (Builder *b, int input, const char *name)
{
  if (b->h < 2 || b->w < 2)
    return input;
  b->h /= 2;
  b->w /= 2;
  return cleave_graph_add_maxpool2d (b->g, name, input, 2, 2, 0);
}

static void
build_simcnn (Builder *b, double w, int n_classes)
{
  static const int ch[13] = { 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512 };
  static const gboolean pool_after[13] = { 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1 };
  int x = 0, hidden = scale (b->cnnsplitter ? 512 : 4096, w);

  for (int i = 0; i < 13; i++)
    {
      x = conv_bn_relu (b, i, x, scale (ch[i], w), 3);
      if (pool_after[i])
        {
          g_autofree char *name = g_strdup_printf ("pool_%d", i);
          x = maybe_pool (b, x, name);
        }
    }
  x = cleave_graph_add_flatten (b->g, "flatten", x);
  x = cleave_graph_add_dropout (b->g, "dropout_13", x, 0.5f);
  x = cleave_graph_add_linear (b->g, "fc_13", x, hidden, TRUE);
  x = cleave_graph_add_relu (b->g, "relu_13", x);
  x = cleave_graph_add_dropout (b->g, "dropout_14", x, 0.5f);
  x = cleave_graph_add_linear (b->g, "fc_14", x, hidden, TRUE);
  x = cleave_graph_add_relu (b->g, "relu_14", x);
  cleave_graph_add_linear (b->g, "fc_15", x, n_classes, TRUE);
}

static void
build_rescnn (Builder *b, double w, int n_classes)
{
  static const int ch[12] = { 64, 128, 128, 128, 256, 512, 512, 512, 512, 512, 512, 512 };
  int x = 0, res = 0;

  for (int i = 0; i < 12; i++)
    {
      g_autofree char *pname = g_strdup_printf ("pool_%d", i);
      g_autofree char *aname = g_strdup_printf ("add_%d", i);
      if (i == 2 || i == 6 || i == 10)
        res = x;
      x = conv_bn_relu (b, i, x, scale (ch[i], w), 3);
      if (i == 3 || i == 7 || i == 11)
        x = cleave_graph_add_add (b->g, aname, x, res);
      if (i == 1 || i == 4 || i == 5 || i == 8 || i == 9)
        x = maybe_pool (b, x, pname);
    }
  /* At 32×32 the map is 1×1 here; at other sizes average what is left. */
  if (b->h > 1 || b->w > 1)
    x = cleave_graph_add_global_avgpool (b->g, "avg_pool_12", x);
  x = cleave_graph_add_flatten (b->g, "flatten", x);
  x = cleave_graph_add_dropout (b->g, "dropout_12", x, b->cnnsplitter ? 0.4f : 0.5f);
  cleave_graph_add_linear (b->g, b->cnnsplitter ? "classifier.2" : "fc_12", x, n_classes, TRUE);
}

static void
build_incecnn (Builder *b, double w, int n_classes)
{
  static const int stem[3] = { 64, 128, 256 };
  static const int branch[3][3] = { { 256, 256, 64 }, { 512, 512, 64 }, { 512, 512, 64 } };
  static const int ksize[3] = { 1, 3, 5 };
  int x = 0, idx = 0;

  for (int i = 0; i < 3; i++)
    x = conv_bn_relu (b, idx++, x, scale (stem[i], w), 3);
  x = maybe_pool (b, x, "pool_2");
  for (int blk = 0; blk < 3; blk++)
    {
      int outs[3];
      g_autofree char *cname = g_strdup_printf ("cat_%d", blk);
      g_autofree char *pname = g_strdup_printf ("pool_%d", idx - 1 + 3);
      for (int k = 0; k < 3; k++)
        outs[k] = conv_bn_relu (b, idx++, x, scale (branch[blk][k], w), ksize[k]);
      x = cleave_graph_add_concat (b->g, cname, outs, 3);
      if (blk < 2)
        x = maybe_pool (b, x, pname);
    }
  x = cleave_graph_add_global_avgpool (b->g, "avg_pool_12", x);
  x = cleave_graph_add_dropout (b->g, "dropout_12", x, 0.4f);
  cleave_graph_add_linear (b->g, "fc_12", x, n_classes, TRUE);
}

/* Four conv layers, a pool after every second one, then one or two linear
 * layers (@hidden = 0: one). */
static void
build_four_conv (Builder *b, const int *ch, double w, int hidden, int n_classes)
{
  int x = 0;
  for (int i = 0; i < 4; i++)
    {
      g_autofree char *pname = g_strdup_printf ("pool_%d", i);
      x = conv_bn_relu (b, i, x, scale (ch[i], w), 3);
      if (i % 2 == 1)
        x = maybe_pool (b, x, pname);
    }
  x = cleave_graph_add_flatten (b->g, "flatten", x);
  if (hidden > 0)
    {
      x = cleave_graph_add_linear (b->g, "fc_4", x, scale (hidden, w), TRUE);
      x = cleave_graph_add_relu (b->g, "relu_4", x);
      cleave_graph_add_linear (b->g, "fc_5", x, n_classes, TRUE);
    }
  else
    cleave_graph_add_linear (b->g, "fc_4", x, n_classes, TRUE);
}

/* An overly simple architecture for weak models: 4 small conv layers. */
static void
build_weak (Builder *b, double w, int n_classes)
{
  static const int ch[4] = { 8, 8, 16, 16 };
  build_four_conv (b, ch, w, 0, n_classes);
}

/* The benchmark CNN of the engine issue. */
static void
build_bench (Builder *b, double w, int n_classes)
{
  static const int ch[4] = { 32, 32, 64, 64 };
  build_four_conv (b, ch, w, 256, n_classes);
}

CleaveGraph *
cleave_arch_build (const char *spec, int in_c, int in_h, int in_w, int n_classes, GError **error)
{
  g_auto(GStrv) parts = NULL;
  g_autofree char *name = NULL;
  double width = 1.0;
  Builder b = { 0 };

  g_return_val_if_fail (spec != NULL, NULL);
  parts = g_strsplit (spec, ":", 2);
  name = g_ascii_strdown (parts[0], -1);
  if (parts[1] != NULL)
    {
      g_auto(GStrv) opts = g_strsplit (parts[1], ",", -1);
      for (int i = 0; opts[i]; i++)
        {
          char *end = NULL;
          if (g_str_has_prefix (opts[i], "w="))
            {
              const char *v = opts[i] + 2;
              const char *slash = strchr (v, '/');
              width = g_ascii_strtod (v, &end);
              if (slash && end == slash)
                width /= g_ascii_strtod (slash + 1, &end);
              if (end == NULL || *end != 0 || !(width > 0 && width <= 16))
                {
                  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                               "architecture '%s': width '%s' must be a number in (0, 16], e.g. w=0.125 or w=1/8", spec, v);
                  return NULL;
                }
            }
          else if (g_str_equal (opts[i], "ref=cnnsplitter") || g_str_equal (opts[i], "ref=gradsplitter"))
            b.cnnsplitter = g_str_equal (opts[i], "ref=cnnsplitter");
          else
            {
              g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                           "architecture '%s': unknown option '%s' (known: w=WIDTH, ref=gradsplitter|cnnsplitter)",
                           spec, opts[i]);
              return NULL;
            }
        }
    }
  if (b.cnnsplitter && !g_str_equal (name, "simcnn") && !g_str_equal (name, "rescnn"))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "architecture '%s': CNNSplitter defines only simcnn and rescnn", spec);
      return NULL;
    }
  if (n_classes < 2 || in_c < 1 || in_h < 4 || in_w < 4)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "architecture '%s': input %d×%d×%d with %d classes is not supported", spec, in_c, in_h, in_w, n_classes);
      return NULL;
    }
  b.g = cleave_graph_new (in_c, in_h, in_w);
  b.conv_name = b.cnnsplitter && g_str_equal (name, "simcnn") ? "conv_%d" : "conv_%d.0";
  b.h = in_h;
  b.w = in_w;
  if (g_str_equal (name, "simcnn"))
    build_simcnn (&b, width, n_classes);
  else if (g_str_equal (name, "rescnn"))
    build_rescnn (&b, width, n_classes);
  else if (g_str_equal (name, "incecnn"))
    build_incecnn (&b, width, n_classes);
  else if (g_str_equal (name, "weak"))
    build_weak (&b, width, n_classes);
  else if (g_str_equal (name, "bench"))
    build_bench (&b, width, n_classes);
  else
    {
      g_autofree char *known = g_strjoinv (", ", (char **) presets);
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "unknown architecture '%s' (known: %s, or a JSON architecture file)", parts[0], known);
      cleave_graph_free (b.g);
      return NULL;
    }
  if (!cleave_graph_finalize (b.g, error))
    {
      cleave_graph_free (b.g);
      return NULL;
    }
  return b.g;
}
