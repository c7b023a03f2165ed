/* make-corpus.c: writes the seed corpus of the fuzz harnesses: small valid
 * files of every kind, made by Cleave's own writers from random weights.
 * Usage: make-corpus OUTDIR (make-corpus.sh runs it and adds the ONNX
 * reference files). Deterministic: the same build writes the same bytes. */
#include "cleave-arch.h"
#include "cleave-compose.h"
#include "cleave-onnx.h"
#include "cleave-error.h"

#include <gdk-pixbuf/gdk-pixbuf.h>
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CLASSES 3

static const char *out_dir;

static void
check (gboolean ok, GError *error)
{
  if (!ok)
    {
      fprintf (stderr, "make-corpus: %s\n", error ? error->message : "failed");
      exit (1);
    }
}

static char *
out_path (const char *corpus, const char *name)
{
  g_autofree char *dir = g_build_filename (out_dir, corpus, NULL);
  g_mkdir_with_parents (dir, 0755);
  return g_build_filename (dir, name, NULL);
}

static void
write_bytes (const char *corpus, const char *name, const void *data, gsize len)
{
  g_autofree char *path = out_path (corpus, name);
  GError *error = NULL;
  check (g_file_set_contents (path, data, len, &error), error);
}

static CleaveModel *
model (const char *arch, int c, int h, int w, guint64 seed)
{
  GError *error = NULL;
  CleaveGraph *g = cleave_arch_build (arch, c, h, w, N_CLASSES, &error);
  const char *names[] = { "ant", "bee", "cat", NULL };
  CleaveModel *m;

  check (g != NULL, error);
  cleave_graph_init_params (g, seed);
  m = cleave_model_new (g, N_CLASSES, names);
  for (int k = 0; k < c; k++)
    {
      m->mean[k] = 0.25f + 0.125f * k;
      m->std[k] = 0.5f;
    }
  return m;
}

/* A module for @cls keeping about half the kernels; a head when @head. */
static CleaveModule *
module (CleaveModel *m, int cls, guint64 seed, gboolean head)
{
  GError *error = NULL;
  g_autoptr (GRand) rng = g_rand_new_with_seed ((guint32) seed);
  int n_sites = cleave_graph_n_mask_sites (m->graph);
  guint8 **keep = g_new0 (guint8 *, n_sites);
  CleaveModule *mod;

  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (m->graph, s);
      keep[s] = g_new0 (guint8, site->channels);
      for (int k = 0; k < site->channels; k++)
        keep[s][k] = site->tie != s ? keep[site->tie][k] : (k == 0 || g_rand_boolean (rng));
    }
  mod = cleave_module_extract (m->graph, cls, m->class_names[cls], (const guint8 *const *) keep, NULL, &error);
  check (mod != NULL, error);
  for (int s = 0; s < n_sites; s++)
    g_free (keep[s]);
  g_free (keep);
  if (head)
    {
      mod->has_head = TRUE;
      mod->head_w1 = g_new (float, CLEAVE_HEAD_HIDDEN * mod->n_logits);
      mod->head_b1 = g_new (float, CLEAVE_HEAD_HIDDEN);
      mod->head_w2 = g_new (float, CLEAVE_HEAD_HIDDEN);
      for (int i = 0; i < CLEAVE_HEAD_HIDDEN * mod->n_logits; i++)
        mod->head_w1[i] = (float) g_rand_double_range (rng, -1, 1);
      for (int i = 0; i < CLEAVE_HEAD_HIDDEN; i++)
        {
          mod->head_b1[i] = (float) g_rand_double_range (rng, -0.5, 0.5);
          mod->head_w2[i] = (float) g_rand_double_range (rng, -1, 1);
        }
      mod->head_b2 = 0.25f;
    }
  mod->score_min = -1.0f;
  mod->score_max = 2.0f;
  mod->val_f1 = 0.5;
  return mod;
}

static CleaveModuleSet *
module_set (CleaveModel *m, guint64 seed, gboolean heads)
{
  GError *error = NULL;
  CleaveModuleSet *set = cleave_module_set_new (m, heads ? "grad" : "ga");

  for (int c = 0; c < N_CLASSES; c++)
    check (cleave_module_set_add (set, module (m, c, seed * 10 + c, heads), &error), error);
  set->source_accuracy = 0.75;
  set->composed_accuracy = 0.5;
  return set;
}

/* A tiny graph with every op kind: conv (the second without bias),
 * batchnorm, relu, both pools, a residual add, concat, sigmoid, dropout,
 * global pooling, flatten and linear. Modules cannot be cut from grouped
 * convolutions or through a sigmoid: with @cuttable the second conv has one
 * group and the gate is a relu. */
static CleaveModel *
all_ops_model (guint64 seed, gboolean cuttable)
{
  GError *error = NULL;
  CleaveGraph *g = cleave_graph_new (2, 6, 6);
  const char *names[] = { "ant", "bee", "cat", NULL };
  int c1, r1, p1, c2, c3, sum, cat[2], sg, ap, mp2, dr, gap, fl, fc;
  CleaveModel *m;

  c1 = cleave_graph_add_conv2d (g, "conv1", 0, 4, 3, 1, 1, 1, TRUE);
  r1 = cleave_graph_add_relu (g, "relu1", cleave_graph_add_batchnorm2d (g, "bn1", c1));
  p1 = cleave_graph_add_maxpool2d (g, "pool1", r1, 2, 2, 0);
  c2 = cleave_graph_add_conv2d (g, "conv2", p1, 4, 3, 1, 1, cuttable ? 1 : 2, FALSE);
  c3 = cleave_graph_add_conv2d (g, "conv3", p1, 4, 1, 1, 0, 1, TRUE);
  sum = cleave_graph_add_add (g, "add", c2, c3);
  cat[0] = sum;
  cat[1] = p1;
  sg = cleave_graph_add_concat (g, "cat", cat, 2);
  sg = cuttable ? cleave_graph_add_relu (g, "gate", sg) : cleave_graph_add_sigmoid (g, "gate", sg);
  ap = cleave_graph_add_avgpool2d (g, "pool2", sg, 2, 1, 0);
  mp2 = cleave_graph_add_maxpool2d (g, "pool3", ap, 2, 1, 1);
  dr = cleave_graph_add_dropout (g, "drop", mp2, 0.25f);
  gap = cleave_graph_add_global_avgpool (g, "gap", dr);
  fl = cleave_graph_add_flatten (g, "flat", gap);
  fc = cleave_graph_add_linear (g, "fc", fl, N_CLASSES, TRUE);
  (void) fc;
  check (cleave_graph_finalize (g, &error), error);
  cleave_graph_init_params (g, seed);
  m = cleave_model_new (g, N_CLASSES, names);
  m->mean[0] = m->mean[1] = 0.5f;
  m->std[0] = m->std[1] = 0.25f;
  return m;
}

static void
model_files (CleaveModel *m, const char *name)
{
  g_autofree char *file = g_strconcat (name, ".safetensors", NULL);
  g_autofree char *onnx_file = g_strconcat (name, ".onnx", NULL);
  g_autofree char *path = out_path ("model", file);
  g_autofree char *onnx = out_path ("onnx", onnx_file);
  GError *error = NULL;

  check (cleave_model_save (m, path, &error), error);
  check (cleave_onnx_export_graph (m->graph, m->mean, m->std, onnx, &error), error);
}

static void
models_and_graphs (void)
{
  static const struct { const char *arch; int c, hw; } archs[] = {
    { "weak", 1, 28 }, { "simcnn", 3, 32 }, { "rescnn", 1, 28 }, { "incecnn", 3, 32 },
  };
  g_autoptr (CleaveModel) weak = model ("weak", 1, 8, 8, 1);
  g_autoptr (CleaveModel) all = all_ops_model (2, FALSE);
  g_autofree char *all_json = cleave_graph_to_json (all->graph);
  GError *error = NULL;

  model_files (weak, "weak");
  model_files (all, "all-ops");
  write_bytes ("graph-json", "all-ops.json", all_json, strlen (all_json));
  /* the presets' architectures at their usual sizes (no weights in JSON) */
  for (guint i = 0; i < G_N_ELEMENTS (archs); i++)
    {
      g_autoptr (CleaveGraph) g = cleave_arch_build (archs[i].arch, archs[i].c, archs[i].hw, archs[i].hw, 10, &error);
      g_autofree char *json = NULL;
      g_autofree char *file = g_strconcat (archs[i].arch, ".json", NULL);

      check (g != NULL, error);
      json = cleave_graph_to_json (g);
      write_bytes ("graph-json", file, json, strlen (json));
    }
}

static void
modules_compositions_patched (void)
{
  g_autoptr (CleaveModel) m1 = all_ops_model (11, TRUE);
  g_autoptr (CleaveModel) m2 = all_ops_model (12, TRUE);
  g_autoptr (CleaveModuleSet) grad = module_set (m1, 1, TRUE);
  g_autoptr (CleaveModuleSet) ga = module_set (m2, 2, FALSE);
  g_autoptr (CleaveComposition) mixed = cleave_composition_new ();
  g_autoptr (CleaveComposition) single = cleave_composition_new ();
  g_autoptr (CleavePatched) patched = cleave_patched_new (all_ops_model (13, TRUE));
  g_autoptr (CleavePatched) bare = cleave_patched_new (all_ops_model (14, TRUE));
  g_autofree char *p_grad = out_path ("module-set", "grad.modules");
  g_autofree char *p_ga = out_path ("module-set", "ga.modules");
  g_autofree char *p_mixed = out_path ("composition", "mixed.safetensors");
  g_autofree char *p_single = out_path ("composition", "single.safetensors");
  g_autofree char *p_patched = out_path ("patched", "patched.safetensors");
  g_autofree char *p_bare = out_path ("patched", "no-modules.safetensors");
  GError *error = NULL;

  grad->log_json = g_strdup ("[{\"epoch\": 1, \"val_accuracy\": 0.5, \"mean_krr\": 0.6}]");
  grad->options_json = g_strdup ("{\"alpha\": 0.1, \"seed\": 1}");
  check (cleave_module_set_save (grad, p_grad, &error), error);
  check (cleave_module_set_save (ga, p_ga, &error), error);

  check (cleave_composition_add (mixed, grad, 0, "first", &error), error);
  check (cleave_composition_add (mixed, ga, 2, NULL, &error), error);
  check (cleave_composition_save (mixed, p_mixed, &error), error);
  for (int k = 0; k < N_CLASSES; k++)
    check (cleave_composition_add (single, ga, k, NULL, &error), error);
  check (cleave_composition_save (single, p_single, &error), error);

  check (cleave_patched_add (patched, grad, 1, 1, &error), error);
  check (cleave_patched_add (patched, ga, 2, 2, &error), error);
  check (cleave_patched_save (patched, p_patched, &error), error);
  check (cleave_patched_save (bare, p_bare, &error), error);
}

static GBytes *
gzip (const guint8 *data, gsize len)
{
  g_autoptr (GZlibCompressor) z = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 9);
  guint8 out[4096];
  gsize r = 0, w = 0;
  GError *error = NULL;
  GConverterResult res = g_converter_convert (G_CONVERTER (z), data, len, out, sizeof out,
                                              G_CONVERTER_INPUT_AT_END, &r, &w, &error);
  check (res == G_CONVERTER_FINISHED, error);
  return g_bytes_new (out, w);
}

static void
idx (void)
{
  /* 2 images of 4×3 and their labels (the harness pairs each file with a
   * valid two-item partner) */
  guint8 images[16 + 24], labels[8 + 2] = { 0, 0, 8, 1, 0, 0, 0, 2, 4, 9 };
  const guint8 head[16] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 3 };
  g_autoptr (GBytes) gz_images = NULL, gz_labels = NULL;

  memcpy (images, head, 16);
  for (int i = 0; i < 24; i++)
    images[16 + i] = (guint8) (i * 7);
  write_bytes ("idx", "images-idx3-ubyte", images, sizeof images);
  write_bytes ("idx", "labels-idx1-ubyte", labels, sizeof labels);
  gz_images = gzip (images, sizeof images);
  gz_labels = gzip (labels, sizeof labels);
  write_bytes ("idx", "images-idx3-ubyte.gz", g_bytes_get_data (gz_images, NULL), g_bytes_get_size (gz_images));
  write_bytes ("idx", "labels-idx1-ubyte.gz", g_bytes_get_data (gz_labels, NULL), g_bytes_get_size (gz_labels));
}

static void
cifar (void)
{
  enum { RECORD = 1 + 3 * 32 * 32 };
  static guint8 batch[2 * RECORD];
  const char meta[] = "\x01" "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

  for (int r = 0; r < 2; r++)
    {
      batch[r * RECORD] = (guint8) (r * 6);      /* labels 0 and 6 */
      for (int i = 1; i < RECORD; i++)
        batch[r * RECORD + i] = (guint8) (i * (r + 3));
    }
  /* even first byte: the input is the batch (its first label is 0) */
  write_bytes ("cifar", "data_batch.bin", batch, sizeof batch);
  /* odd first byte: the rest is batches.meta.txt */
  write_bytes ("cifar", "meta.txt", meta, sizeof meta - 1);
}

static void
image (const char *type, const char *name, int w, int h, gboolean alpha, gboolean grey)
{
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new (GDK_COLORSPACE_RGB, alpha, 8, w, h);
  guint8 *px = gdk_pixbuf_get_pixels (pb);
  int stride = gdk_pixbuf_get_rowstride (pb), nch = gdk_pixbuf_get_n_channels (pb);
  g_autofree char *buf = NULL;
  gsize len;
  GError *error = NULL;

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < nch; c++)
        px[y * stride + x * nch + c] = (guint8) (grey && c < 3 ? 40 * x + 20 * y : 30 * x + 50 * y + 70 * c);
  check (gdk_pixbuf_save_to_buffer (pb, &buf, &len, type, &error, NULL), error);
  write_bytes ("image", name, buf, len);
}

int
main (int argc, char **argv)
{
  if (argc != 2)
    {
      fprintf (stderr, "usage: make-corpus OUTDIR\n");
      return 2;
    }
  out_dir = argv[1];
  models_and_graphs ();
  modules_compositions_patched ();
  idx ();
  cifar ();
  image ("png", "rgb.png", 5, 4, FALSE, FALSE);
  image ("png", "grey-alpha.png", 3, 3, TRUE, TRUE);
  image ("jpeg", "rgb.jpg", 8, 8, FALSE, FALSE);
  return 0;
}
