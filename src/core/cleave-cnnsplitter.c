/* cleave-cnnsplitter.c: CNNSplitter, the genetic-algorithm decomposition
 * (docs/ALGORITHMS.md, CNNSplitter).
 *
 * Pipeline:
 *  1. Kernel importance per class: mean |post-ReLU activation| of each kernel
 *     at its mask site over validation images of the class that the model
 *     classifies as the class with softmax confidence >= 0.9 (all images of
 *     the class when fewer than MIN_CONFIDENT_IMAGES qualify; noted in the
 *     options JSON). Mean instead of the L1 sum only rescales a layer's
 *     values, so per-layer rankings are the same as the reference's.
 *  2. Sensitivity: per layer (tie group) and keep ratio 0.1…0.9, every
 *     class's module keeps that layer's top kernels (by its own class's
 *     importance), all other layers whole; the composition's accuracy on the
 *     sensitivity images gives a table. A layer's initial ratio list is the
 *     smallest ratio r* such that every ratio >= r* loses at most
 *     sensitivity_threshold points, up to 1.0: sensitive layers start with
 *     more kernels. Default threshold 5 points: with ~100–200 images the
 *     composition's accuracy has a standard error of 2–3 points, so smaller
 *     thresholds mostly measure noise.
 *  3. Grouped encoding per class (see cleave-split.h), importance-biased
 *     initialisation (group j drawn with weight g − j), one population per
 *     class. Individual 0 of each population is the whole model, so the
 *     search can never do worse than keeping everything.
 *  4. GA per generation, class by class (each class sees the other classes'
 *     latest best modules): keep the `parents` best, the `elites` best
 *     survive unchanged, the rest are children of two random parents by
 *     single-point crossover, then mutation flips each gene with
 *     probability `mutation`; layers left with no gene get their most
 *     important group back.
 *  Fitness of a candidate for class c, composed with the current best
 *  modules of the other classes (score = a module's own-class logit,
 *  prediction = argmax over classes) on the evaluation images:
 *   - reference: acc + diff_weight × mean over k != c of (1 − Jaccard(kept
 *     kernels of the candidate, of best module k)). The reference code
 *     reports composed accuracy and this "diff" side by side and trades them
 *     off; diff_weight 0.1 makes 10 points of dissimilarity worth one point
 *     of accuracy.
 *   - krr: acc − krr_weight × KRR (kept kernels / all kernels); weight 0.1
 *     makes 10% of the kernels worth one point of accuracy.
 *  The returned modules are the per-class bests of the generation with the
 *  highest mean best fitness (classes co-evolve, so the last generation can
 *  be worse than an earlier one); the options JSON names it.
 *  Measured on SimCNN w=1/8, Fashion-MNIST, 12 generations: diff_weight 0.1
 *  kept 80% of the kernels at a 2-point composed-accuracy loss; 0.5 kept
 *  47% but lost 27 points, because without retraining a few generations
 *  cannot repair the accuracy that dissimilarity buys.
 *  A candidate's scores do not depend on the other modules, so they are
 *  computed once (masked forward, no retraining) and cached with the
 *  individual; fitness is recomputed from the cache whenever the other
 *  classes' best modules change. Candidates are evaluated eval_groups at a
 *  time with grouped channel masks: one forward of G × B images runs G
 *  candidates on the same B images.
 *
 * Defaults (cleave_ga_split_options_init) are smaller than the reference's
 * (population 100, 200 generations, 50 parents, 20 elites, mutation 5%, all
 * validation images) so that a split of SimCNN w=1/8 on Fashion-MNIST fits
 * in minutes on two CPU cores: population 16, 12 generations, 8 parents,
 * 4 elites, mutation 5%, 200 evaluation images, 100 sensitivity images.
 * The cost is (classes × (population + generations × (population −
 * elites)) × val_images + layers × 9 × classes × sensitivity_images) masked
 * image forwards. */
#include "cleave-split.h"
#include "cleave-options.h"
#include "cleave-error.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define MIN_CONFIDENT_IMAGES 10
#define N_RATIOS 10            /* keep ratios 0.1 … 1.0 */

void
cleave_ga_split_options_init (CleaveGaSplitOptions *opt)
{
  guint n;
  const CleaveOptionDesc *table = cleave_ga_split_option_table (&n);

  g_return_if_fail (opt != NULL);
  memset (opt, 0, sizeof *opt);
  cleave_options_set_defaults (table, n, opt);
  opt->seed = 0;
}

/* ---- flat kernel layout ---- */

static int *
site_offsets (const CleaveGraph *g)
{
  int n = cleave_graph_n_mask_sites (g);
  int *off = g_new (int, n + 1);
  off[0] = 0;
  for (int s = 0; s < n; s++)
    off[s + 1] = off[s] + cleave_graph_mask_site (g, s)->channels;
  return off;
}

/* ---- importance ---- */

typedef void (*BatchDone) (gpointer data, int images);

static float *
kernel_importance (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                   const int *indices, int n, double min_confidence, int min_images,
                   gboolean *fallback, double *accuracy, GCancellable *cancellable,
                   BatchDone batch_done, gpointer batch_data, GError **error)
{
  CleaveGraph *g = model->graph;
  int n_sites = cleave_graph_n_mask_sites (g);
  int total = cleave_graph_total_kernels (g);
  int n_out = cleave_graph_n_outputs (g);
  int nc = model->n_classes;
  int c, h, w, batch = 128, correct = 0;
  g_autofree int *off = site_offsets (g);
  g_autofree double *conf_sum = g_new0 (double, (gsize) nc * total);
  g_autofree double *all_sum = g_new0 (double, (gsize) nc * total);
  g_autofree int *conf_n = g_new0 (int, nc);
  g_autofree int *all_n = g_new0 (int, nc);
  g_autofree float *x = NULL, *y = NULL, *out = NULL, *act = NULL, *per = NULL;
  g_autofree int *all_idx = NULL;
  gsize max_act = 0;
  CleaveNet *net;
  float *imp;

  cleave_graph_input_shape (g, &c, &h, &w);
  if (ds->c != c || ds->h != h || ds->w != w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset '%s' has %d×%d×%d images, the model expects %d×%d×%d",
                   ds->name, ds->c, ds->h, ds->w, c, h, w);
      return NULL;
    }
  if (n_sites == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the model has no conv layers to split");
      return NULL;
    }
  if (indices == NULL)
    {
      n = ds->n;
      all_idx = g_new (int, n);
      for (int i = 0; i < n; i++)
        all_idx[i] = i;
      indices = all_idx;
    }
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveNode *node = cleave_graph_node (g, cleave_graph_mask_site (g, s)->node);
      gsize sz = node->out_ndim == 3 ? (gsize) node->out_shape[0] * node->out_shape[1] * node->out_shape[2]
                                     : (gsize) node->out_shape[0];
      max_act = MAX (max_act, sz);
    }
  net = cleave_net_new (g, backend, error);
  if (net == NULL)
    return NULL;
  x = g_new (float, (gsize) batch * c * h * w);
  y = g_new (float, batch);
  out = g_new (float, (gsize) batch * n_out);
  act = g_new (float, (gsize) batch * max_act);
  per = g_new (float, (gsize) batch * total);

  for (int i0 = 0; i0 < n; i0 += batch)
    {
      int b = MIN (batch, n - i0);
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto fail;
      cleave_dataset_fill_batch (ds, indices + i0, b, model->mean, model->std, NULL, NULL, x, y);
      if (!cleave_net_infer (net, x, b, error) || !cleave_net_download_output (net, out, error))
        goto fail;
      for (int s = 0; s < n_sites; s++)
        {
          const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
          CleaveTensor *t = cleave_net_node_output (net, site->node);
          gsize numel = cleave_tensor_numel (t);
          gsize plane = numel / ((gsize) b * site->channels);
          if (!cleave_tensor_download (t, act, numel, error))
            goto fail;
          for (int j = 0; j < b; j++)
            for (int k = 0; k < site->channels; k++)
              {
                const float *p = act + ((gsize) j * site->channels + k) * plane;
                double sum = 0;
                for (gsize q = 0; q < plane; q++)
                  sum += fabsf (p[q]);
                per[(gsize) j * total + off[s] + k] = (float) (sum / plane);
              }
        }
      for (int j = 0; j < b; j++)
        {
          const float *row = out + (gsize) j * n_out;
          int truth = (int) y[j], best = 0;
          double se = 0;
          if (truth < 0 || truth >= nc)
            continue;
          for (int k = 1; k < n_out; k++)
            if (row[k] > row[best])
              best = k;
          for (int k = 0; k < n_out; k++)
            se += exp (row[k] - row[best]);
          correct += best == truth;
          for (int k = 0; k < total; k++)
            all_sum[(gsize) truth * total + k] += per[(gsize) j * total + k];
          all_n[truth]++;
          if (best == truth && 1.0 / se >= min_confidence)
            {
              for (int k = 0; k < total; k++)
                conf_sum[(gsize) truth * total + k] += per[(gsize) j * total + k];
              conf_n[truth]++;
            }
        }
      if (batch_done)
        batch_done (batch_data, b);
    }
  cleave_net_free (net);

  imp = g_new0 (float, (gsize) nc * total);
  for (int k = 0; k < nc; k++)
    {
      gboolean fb = conf_n[k] < MAX (1, min_images);
      const double *src = fb ? all_sum : conf_sum;
      int cnt = fb ? all_n[k] : conf_n[k];
      if (fallback)
        fallback[k] = fb;
      for (int q = 0; cnt > 0 && q < total; q++)
        imp[(gsize) k * total + q] = (float) (src[(gsize) k * total + q] / cnt);
    }
  if (accuracy)
    *accuracy = n ? (double) correct / n : NAN;
  return imp;

fail:
  cleave_net_free (net);
  return NULL;
}

float *
cleave_ga_kernel_importance (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                             const int *indices, int n, double min_confidence, int min_images,
                             gboolean *fallback, double *accuracy, GCancellable *cancellable, GError **error)
{
  return kernel_importance (model, backend, ds, indices, n, min_confidence, min_images, fallback, accuracy,
                            cancellable, NULL, NULL, error);
}

/* ---- encoding ---- */

typedef struct {
  int root;          /* first site of the tie group */
  int channels;
  int n_groups;
  int gene0;         /* first gene */
  int *order;        /* channels, most important first */
} GaLayer;

struct _CleaveGaEncoding {
  int n_sites, total, n_layers, n_genes;
  int *off;          /* n_sites + 1 */
  int *tie;          /* per site */
  int *layer_of_site;
  GaLayer *layers;
};

static const float *sort_key;

static int
cmp_importance_desc (const void *a, const void *b)
{
  int i = *(const int *) a, j = *(const int *) b;
  if (sort_key[i] != sort_key[j])
    return sort_key[i] > sort_key[j] ? -1 : 1;
  return i - j;
}

CleaveGaEncoding *
cleave_ga_encoding_new (const CleaveGraph *graph, const float *importance)
{
  CleaveGaEncoding *enc = g_new0 (CleaveGaEncoding, 1);
  int n_sites = cleave_graph_n_mask_sites (graph);

  enc->n_sites = n_sites;
  enc->off = site_offsets (graph);
  enc->total = enc->off[n_sites];
  enc->tie = g_new (int, MAX (1, n_sites));
  enc->layer_of_site = g_new (int, MAX (1, n_sites));
  enc->layers = g_new0 (GaLayer, MAX (1, n_sites));
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (graph, s);
      enc->tie[s] = site->tie;
      if (site->tie == s)
        {
          GaLayer *L = &enc->layers[enc->n_layers];
          int g = site->channels < 256 ? 10 : 100;
          L->root = s;
          L->channels = site->channels;
          L->n_groups = MIN (g, site->channels);
          L->gene0 = enc->n_genes;
          enc->n_genes += L->n_groups;
          enc->layer_of_site[s] = enc->n_layers++;
        }
      else
        enc->layer_of_site[s] = enc->layer_of_site[site->tie];
    }
  for (int l = 0; l < enc->n_layers; l++)
    {
      GaLayer *L = &enc->layers[l];
      g_autofree float *key = g_new0 (float, L->channels);
      /* Tied layers share one mask, so their importances add up. */
      for (int s = 0; s < n_sites; s++)
        if (enc->tie[s] == L->root && importance)
          for (int k = 0; k < L->channels; k++)
            key[k] += importance[enc->off[s] + k];
      L->order = g_new (int, L->channels);
      for (int k = 0; k < L->channels; k++)
        L->order[k] = k;
      sort_key = key;   /* qsort has no user data; the splitter runs on one thread at a time per call */
      qsort (L->order, L->channels, sizeof (int), cmp_importance_desc);
      sort_key = NULL;
    }
  return enc;
}

void
cleave_ga_encoding_free (CleaveGaEncoding *enc)
{
  if (enc == NULL)
    return;
  for (int l = 0; l < enc->n_layers; l++)
    g_free (enc->layers[l].order);
  g_free (enc->layers);
  g_free (enc->off);
  g_free (enc->tie);
  g_free (enc->layer_of_site);
  g_free (enc);
}

int
cleave_ga_encoding_n_genes (const CleaveGaEncoding *enc)
{
  return enc->n_genes;
}

int
cleave_ga_encoding_n_layers (const CleaveGaEncoding *enc)
{
  return enc->n_layers;
}

void
cleave_ga_encoding_layer (const CleaveGaEncoding *enc, int layer, int *first, int *count, int *root)
{
  g_return_if_fail (layer >= 0 && layer < enc->n_layers);
  if (first)
    *first = enc->layers[layer].gene0;
  if (count)
    *count = enc->layers[layer].n_groups;
  if (root)
    *root = enc->layers[layer].root;
}

/* Sorted positions [lo, hi) of group j. */
static void
group_range (const GaLayer *L, int j, int *lo, int *hi)
{
  *lo = (int) ((gint64) j * L->channels / L->n_groups);
  *hi = (int) ((gint64) (j + 1) * L->channels / L->n_groups);
}

void
cleave_ga_encoding_decode (const CleaveGaEncoding *enc, const guint8 *genes, guint8 *keep)
{
  memset (keep, 0, enc->total);
  for (int l = 0; l < enc->n_layers; l++)
    {
      const GaLayer *L = &enc->layers[l];
      guint8 *dst = keep + enc->off[L->root];
      gboolean any = FALSE;
      for (int j = 0; j < L->n_groups; j++)
        if (genes[L->gene0 + j])
          {
            int lo, hi;
            group_range (L, j, &lo, &hi);
            for (int q = lo; q < hi; q++)
              dst[L->order[q]] = 1;
            any = TRUE;
          }
      if (!any)
        dst[L->order[0]] = 1;
    }
  for (int s = 0; s < enc->n_sites; s++)
    if (enc->tie[s] != s)
      memcpy (keep + enc->off[s], keep + enc->off[enc->tie[s]], enc->off[s + 1] - enc->off[s]);
}

int
cleave_ga_encoding_repair (const CleaveGaEncoding *enc, guint8 *genes)
{
  int fixed = 0;
  for (int l = 0; l < enc->n_layers; l++)
    {
      const GaLayer *L = &enc->layers[l];
      gboolean any = FALSE;
      for (int j = 0; j < L->n_groups && !any; j++)
        any = genes[L->gene0 + j] != 0;
      if (!any)
        {
          genes[L->gene0] = 1;
          fixed++;
        }
    }
  return fixed;
}

void
cleave_ga_crossover (const guint8 *a, const guint8 *b, int n, int point, guint8 *child)
{
  point = CLAMP (point, 0, n);
  memcpy (child, a, point);
  memcpy (child + point, b + point, n - point);
}

int
cleave_ga_mutate (guint8 *genes, int n, double rate, GRand *rng)
{
  int flips = 0;
  for (int i = 0; i < n; i++)
    if (g_rand_double (rng) < rate)
      {
        genes[i] = !genes[i];
        flips++;
      }
  return flips;
}

/* ---- the search ---- */

typedef struct {
  guint8 *genes;
  guint8 *keep;      /* total */
  float *scores;     /* n_eval: own-class logit on each evaluation image */
  int kept;
  double fitness, acc, diss;
} Indiv;

typedef struct {
  CleaveModel *model;
  CleaveGraph *graph;
  CleaveBackend *backend;
  CleaveNet *net;
  const CleaveGaSplitOptions *opt;
  int n_sites, total, n_classes, n_out, in_size, n_genes;
  int *off;
  int n_eval;
  float *x_eval;     /* n_eval images, normalised */
  int *y_eval;
  CleaveGaEncoding **enc;   /* per class */
  double **ratios;          /* per layer: initial keep ratios */
  int *n_ratios;
  GRand *rng;
  GCancellable *cancellable;
  CleaveProgressFunc progress;
  gpointer user_data;
  gint64 start_us;
  double work_done, work_total;
  gint64 last_report_us;
} Ga;

static void
report_work (Ga *ga, CleavePhase phase, int gen, int n_images)
{
  gint64 now = g_get_monotonic_time ();
  ga->work_done += n_images;
  if (ga->progress == NULL || now - ga->last_report_us < 200000)
    return;
  ga->last_report_us = now;
  {
    CleaveProgress p = { 0 };
    double secs = (now - ga->start_us) / 1e6;
    p.fraction = ga->work_total > 0 ? MIN (1.0, ga->work_done / ga->work_total) : 0;
    p.phase = phase;
    p.epoch = gen;
    p.epochs = ga->opt->generations;
    p.loss = p.accuracy = p.val_accuracy = p.krr = p.fitness = NAN;
    p.images_per_s = secs > 0 ? ga->work_done / secs : 0;
    ga->progress (&p, ga->user_data);
  }
}

static void
importance_batch_done (gpointer data, int images)
{
  report_work (data, CLEAVE_PHASE_IMPORTANCE, 0, images);
}

/* Own-class scores of n_cand candidates (flat keep flags, class cls[i]) on
 * images x[0..n_img): scores[i * n_img + j]. Grouped masks: one forward runs
 * up to eval_groups candidates on the same images. */
static gboolean
score_candidates (Ga *ga, guint8 *const *keeps, const int *cls, int n_cand, const float *x, int n_img,
                  float *scores, CleavePhase phase, int gen, GError **error)
{
  int G = MAX (1, ga->opt->eval_groups);
  int B = MAX (1, ga->opt->eval_batch / G);
  int n_sites = ga->n_sites;
  CleaveTensor **masks = g_new0 (CleaveTensor *, n_sites);
  float *host = NULL, *input = NULL, *out = NULL;
  gboolean ok = FALSE;
  int cur_g = -1;

  B = MIN (B, n_img);
  input = g_new (float, (gsize) G * B * ga->in_size);
  out = g_new (float, (gsize) G * B * ga->n_out);
  host = g_new (float, ga->total * (gsize) G);
  for (int c0 = 0; c0 < n_cand; c0 += G)
    {
      int g = MIN (G, n_cand - c0);
      if (g != cur_g)
        {
          for (int s = 0; s < n_sites; s++)
            {
              cleave_tensor_free (masks[s]);
              masks[s] = cleave_tensor_new_2d (ga->backend, g, ga->off[s + 1] - ga->off[s], error);
              if (masks[s] == NULL)
                goto out;
            }
          cur_g = g;
        }
      for (int s = 0; s < n_sites; s++)
        {
          int ch = ga->off[s + 1] - ga->off[s];
          for (int q = 0; q < g; q++)
            for (int k = 0; k < ch; k++)
              host[(gsize) q * ch + k] = keeps[c0 + q][ga->off[s] + k] ? 1.0f : 0.0f;
          if (!cleave_tensor_upload (masks[s], host, (gsize) g * ch, error))
            goto out;
        }
      if (!cleave_net_set_masks (ga->net, masks, g, FALSE, error))
        goto out;
      for (int i0 = 0; i0 < n_img; i0 += B)
        {
          int b = MIN (B, n_img - i0);
          if (g_cancellable_set_error_if_cancelled (ga->cancellable, error))
            goto out;
          for (int q = 0; q < g; q++)
            memcpy (input + (gsize) q * b * ga->in_size, x + (gsize) i0 * ga->in_size,
                    sizeof (float) * b * ga->in_size);
          if (!cleave_net_infer (ga->net, input, g * b, error) ||
              !cleave_net_download_output (ga->net, out, error))
            goto out;
          for (int q = 0; q < g; q++)
            for (int j = 0; j < b; j++)
              scores[(gsize) (c0 + q) * n_img + i0 + j] = out[((gsize) q * b + j) * ga->n_out + cls[c0 + q]];
          report_work (ga, phase, gen, g * b);
        }
    }
  ok = TRUE;

out:
  cleave_net_set_masks (ga->net, NULL, 0, FALSE, NULL);
  for (int s = 0; s < n_sites; s++)
    cleave_tensor_free (masks[s]);
  g_free (masks);
  g_free (host);
  g_free (input);
  g_free (out);
  return ok;
}

static double
jaccard_flat (const guint8 *a, const guint8 *b, int n)
{
  int inter = 0, uni = 0;
  for (int i = 0; i < n; i++)
    {
      inter += a[i] & b[i];
      uni += a[i] | b[i];
    }
  return uni ? (double) inter / uni : 1.0;
}

static int
count_kept (const guint8 *keep, int n)
{
  int k = 0;
  for (int i = 0; i < n; i++)
    k += keep[i];
  return k;
}

/* Composed accuracy with @scores_of[k] for every class (NULL entries are not allowed). */
static double
composed_accuracy (Ga *ga, float *const *scores_of, int n_img)
{
  int correct = 0;
  for (int i = 0; i < n_img; i++)
    {
      int best = 0;
      for (int k = 1; k < ga->n_classes; k++)
        if (scores_of[k][i] > scores_of[best][i])
          best = k;
      correct += best == ga->y_eval[i];
    }
  return n_img ? (double) correct / n_img : 0;
}

static void
compute_fitness (Ga *ga, Indiv *ind, int c, Indiv *const *best)
{
  float **sc = g_newa (float *, ga->n_classes);
  double diss = 0;
  for (int k = 0; k < ga->n_classes; k++)
    sc[k] = k == c ? ind->scores : best[k]->scores;
  ind->acc = composed_accuracy (ga, sc, ga->n_eval);
  for (int k = 0; k < ga->n_classes; k++)
    if (k != c)
      diss += 1.0 - jaccard_flat (ind->keep, best[k]->keep, ga->total);
  ind->diss = ga->n_classes > 1 ? diss / (ga->n_classes - 1) : 0;
  if (ga->opt->fitness == CLEAVE_GA_FITNESS_KRR)
    ind->fitness = ind->acc - ga->opt->krr_weight * ((double) ind->kept / ga->total);
  else
    ind->fitness = ind->acc + ga->opt->diff_weight * ind->diss;
}

static Indiv *
indiv_new (Ga *ga)
{
  Indiv *ind = g_new0 (Indiv, 1);
  ind->genes = g_new0 (guint8, MAX (1, ga->n_genes));
  ind->keep = g_new0 (guint8, MAX (1, ga->total));
  ind->scores = g_new0 (float, MAX (1, ga->n_eval));
  return ind;
}

static void
indiv_free (Indiv *ind)
{
  if (ind == NULL)
    return;
  g_free (ind->genes);
  g_free (ind->keep);
  g_free (ind->scores);
  g_free (ind);
}

static void
indiv_copy (Ga *ga, Indiv *dst, const Indiv *src)
{
  memcpy (dst->genes, src->genes, ga->n_genes);
  memcpy (dst->keep, src->keep, ga->total);
  memcpy (dst->scores, src->scores, sizeof (float) * ga->n_eval);
  dst->kept = src->kept;
  dst->fitness = src->fitness;
  dst->acc = src->acc;
  dst->diss = src->diss;
}

static void
indiv_decode (Ga *ga, Indiv *ind, int c)
{
  cleave_ga_encoding_repair (ga->enc[c], ind->genes);
  cleave_ga_encoding_decode (ga->enc[c], ind->genes, ind->keep);
  ind->kept = count_kept (ind->keep, ga->total);
}

/* Draws a layer's ratio from its list and turns on ⌊g·r⌋ groups (at least
 * one), sampled without replacement with weight g − j for group j. */
static void
init_genes (Ga *ga, int c, guint8 *genes)
{
  const CleaveGaEncoding *enc = ga->enc[c];
  memset (genes, 0, ga->n_genes);
  for (int l = 0; l < enc->n_layers; l++)
    {
      const GaLayer *L = &enc->layers[l];
      double r = ga->ratios[l][g_rand_int_range (ga->rng, 0, ga->n_ratios[l])];
      int on = MAX (1, (int) floor (L->n_groups * r + 1e-9));
      double wsum = 0;
      for (int j = 0; j < L->n_groups; j++)
        wsum += L->n_groups - j;
      for (int t = 0; t < on; t++)
        {
          double u = g_rand_double (ga->rng) * wsum;
          int pick = -1;
          for (int j = 0; j < L->n_groups; j++)
            {
              if (genes[L->gene0 + j])
                continue;
              pick = j;
              u -= L->n_groups - j;
              if (u < 0)
                break;
            }
          if (pick < 0)
            break;
          genes[L->gene0 + pick] = 1;
          wsum -= L->n_groups - pick;
        }
    }
}

static int
cmp_indiv_desc (const void *a, const void *b)
{
  const Indiv *x = *(Indiv *const *) a, *y = *(Indiv *const *) b;
  if (x->fitness != y->fitness)
    return x->fitness > y->fitness ? -1 : 1;
  return x->kept - y->kept;   /* equal fitness: the smaller module first */
}

/* Picks evaluation images from @idx round-robin over classes after a seeded
 * shuffle, so any prefix is class balanced. */
static int *
balanced_subset (const CleaveDataset *ds, const int *idx, int n, int want, int n_classes, guint64 seed, int *n_out)
{
  g_autofree int *shuf = g_memdup2 (idx, sizeof (int) * MAX (1, n));
  g_autoptr(GRand) rng = g_rand_new_with_seed ((guint32) (seed * 2654435761u + 11));
  GArray **by = g_new0 (GArray *, n_classes + 1);
  int *res, got = 0;
  gsize *pos = g_new0 (gsize, n_classes + 1);

  cleave_shuffle_indices (shuf, n, rng);
  for (int k = 0; k <= n_classes; k++)
    by[k] = g_array_new (FALSE, FALSE, sizeof (int));
  for (int i = 0; i < n; i++)
    {
      int lab = ds->labels[shuf[i]];
      g_array_append_val (by[lab < n_classes ? lab : n_classes], shuf[i]);
    }
  if (want <= 0 || want > n)
    want = n;
  res = g_new (int, MAX (1, want));
  while (got < want)
    for (int k = 0; k <= n_classes && got < want; k++)
      if (pos[k] < by[k]->len)
        res[got++] = g_array_index (by[k], int, pos[k]++);
  for (int k = 0; k <= n_classes; k++)
    g_array_unref (by[k]);
  g_free (by);
  g_free (pos);
  *n_out = got;
  return res;
}

static void
ga_clear (Ga *ga)
{
  if (ga->net)
    cleave_net_free (ga->net);
  if (ga->enc)
    for (int c = 0; c < ga->n_classes; c++)
      cleave_ga_encoding_free (ga->enc[c]);
  g_free (ga->enc);
  if (ga->ratios)
    for (int l = 0; l < ga->n_sites; l++)
      g_free (ga->ratios[l]);
  g_free (ga->ratios);
  g_free (ga->n_ratios);
  g_free (ga->off);
  g_free (ga->x_eval);
  g_free (ga->y_eval);
  if (ga->rng)
    g_rand_free (ga->rng);
}

static void
json_add_double_array (JsonBuilder *b, const double *v, int n)
{
  json_builder_begin_array (b);
  for (int i = 0; i < n; i++)
    json_builder_add_double_value (b, v[i]);
  json_builder_end_array (b);
}

static char *
builder_to_string (JsonBuilder *b)
{
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}


/* The sensitivity table: acc[l * N_RATIOS + r] for ratio (r + 1) / 10. */
static gboolean
sensitivity_analysis (Ga *ga, int n_img, double base_acc, double *acc, GError **error)
{
  const CleaveGaEncoding *e0 = ga->enc[0];
  int n_layers = e0->n_layers, nc = ga->n_classes;
  int n_cand = n_layers * (N_RATIOS - 1) * nc;
  g_autofree guint8 *keep_all = g_new (guint8, (gsize) n_cand * ga->total);
  g_autofree guint8 **keeps = g_new (guint8 *, n_cand);
  g_autofree int *cls = g_new (int, n_cand);
  g_autofree float *scores = g_new (float, (gsize) n_cand * n_img);
  float **sc = g_newa (float *, nc);
  int q = 0;

  for (int l = 0; l < n_layers; l++)
    for (int r = 0; r < N_RATIOS - 1; r++)
      for (int c = 0; c < nc; c++, q++)
        {
          const GaLayer *L = &ga->enc[c]->layers[l];
          int n_keep = MAX (1, (int) ceil (L->channels * (r + 1) / (double) N_RATIOS - 1e-9));
          guint8 *k = keep_all + (gsize) q * ga->total;
          memset (k, 1, ga->total);
          for (int s = 0; s < ga->n_sites; s++)
            if (e0->tie[s] == L->root)
              {
                memset (k + ga->off[s], 0, L->channels);
                for (int t = 0; t < n_keep; t++)
                  k[ga->off[s] + L->order[t]] = 1;
              }
          keeps[q] = k;
          cls[q] = c;
        }
  if (!score_candidates (ga, keeps, cls, n_cand, ga->x_eval, n_img, scores, CLEAVE_PHASE_SENSITIVITY, 0, error))
    return FALSE;
  for (int l = 0; l < n_layers; l++)
    {
      for (int r = 0; r < N_RATIOS - 1; r++)
        {
          for (int c = 0; c < nc; c++)
            sc[c] = scores + ((gsize) (l * (N_RATIOS - 1) + r) * nc + c) * n_img;
          acc[l * N_RATIOS + r] = composed_accuracy (ga, sc, n_img);
        }
      acc[l * N_RATIOS + N_RATIOS - 1] = base_acc;
    }
  return TRUE;
}

static CleaveModuleSet *
ga_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
          const int *val_idx, int n_val, const CleaveGaSplitOptions *opt,
          CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
          gboolean *cancelled, int *generation, GError **error)
{
  Ga ga = { 0 };
  CleaveGaSplitOptions defaults;
  g_autofree int *eval_idx = NULL, *imp_idx = NULL;
  g_autofree float *importance = NULL, *full_scores = NULL, *eval_y = NULL;
  g_autofree gboolean *fallback = NULL;
  g_autofree double *sens = NULL, *layer_r0 = NULL;
  g_autofree int *all_val = NULL;
  g_autoptr(GError) local = NULL;
  g_autoptr(CleaveSplitLog) log = cleave_split_log_new ();
  Indiv ***pop = NULL, **best = NULL, **chosen = NULL;
  int chosen_gen = -1;
  double chosen_fit = -G_MAXDOUBLE;
  CleaveModuleSet *set = NULL;
  int nc = 0, n_imp = 0, n_sens = 0, n_layers = 0, gens_done = -1, P = 0, E;
  double source_acc_imp = NAN, base_acc = NAN;
  gboolean was_cancelled = FALSE;

  if (cancelled)
    *cancelled = FALSE;
  if (opt == NULL)
    {
      cleave_ga_split_options_init (&defaults);
      opt = &defaults;
    }
  if (!cleave_ga_split_options_validate (opt, error))
    goto fail;
  if (model->n_classes < 2 || model->n_classes > cleave_graph_n_outputs (model->graph))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "GA split needs a model with at least 2 classes and one output per class");
      goto fail;
    }
  if (!cleave_module_check_extractable (model->graph, error))
    goto fail;
  if (val_idx == NULL)
    {
      n_val = ds->n;
      all_val = g_new (int, MAX (1, n_val));
      for (int i = 0; i < n_val; i++)
        all_val[i] = i;
      val_idx = all_val;
    }
  if (n_val < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "GA split needs validation images");
      goto fail;
    }

  ga.model = model;
  ga.graph = model->graph;
  ga.backend = backend;
  ga.opt = opt;
  ga.n_sites = cleave_graph_n_mask_sites (model->graph);
  ga.total = cleave_graph_total_kernels (model->graph);
  ga.n_classes = nc = model->n_classes;
  ga.n_out = cleave_graph_n_outputs (model->graph);
  ga.off = site_offsets (model->graph);
  ga.in_size = ds->c * ds->h * ds->w;
  ga.cancellable = cancellable;
  ga.progress = progress;
  ga.user_data = user_data;
  ga.start_us = g_get_monotonic_time ();
  {
    guint32 seeds[2] = { (guint32) opt->seed, (guint32) (opt->seed >> 32) };
    ga.rng = g_rand_new_with_seed_array (seeds, 2);
  }

  /* 1. importance (also checks the dataset's shape) */
  imp_idx = balanced_subset (ds, val_idx, n_val, opt->importance_images, nc, opt->seed, &n_imp);
  fallback = g_new0 (gboolean, nc);
  P = opt->population;
  E = opt->elites;
  {
    /* progress counts image forwards of every phase */
    int layers = 0, n_ev = opt->val_images > 0 ? MIN (opt->val_images, n_val) : n_val;
    int n_se = opt->sensitivity_images > 0 ? MIN (opt->sensitivity_images, n_ev) : n_ev;
    for (int s = 0; s < ga.n_sites; s++)
      layers += cleave_graph_mask_site (model->graph, s)->tie == s;
    ga.work_total = n_imp + (double) layers * (N_RATIOS - 1) * nc * n_se
                    + (double) nc * n_ev * (1 + P + (double) opt->generations * (P - E));
  }
  if (progress)
    {
      CleaveProgress p = { 0 };
      p.phase = CLEAVE_PHASE_IMPORTANCE;
      p.epochs = opt->generations;
      p.loss = p.accuracy = p.val_accuracy = p.krr = p.fitness = NAN;
      progress (&p, user_data);
    }
  importance = kernel_importance (model, backend, ds, imp_idx, n_imp, opt->min_confidence, MIN_CONFIDENT_IMAGES,
                                  fallback, &source_acc_imp, cancellable, importance_batch_done, &ga, &local);
  /* A cancel before the search has a best individual keeps the whole model
   * for every class: that is the best result so far. */
#define CHECK_LOCAL(ok)                                                        \
  if (!(ok))                                                                   \
    {                                                                          \
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))           \
        {                                                                      \
          g_clear_error (&local);                                              \
          was_cancelled = TRUE;                                                \
          goto finish;                                                         \
        }                                                                      \
      g_propagate_error (error, g_steal_pointer (&local));                     \
      goto fail;                                                               \
    }
  CHECK_LOCAL (importance != NULL);
  ga.enc = g_new0 (CleaveGaEncoding *, nc);
  for (int c = 0; c < nc; c++)
    ga.enc[c] = cleave_ga_encoding_new (model->graph, importance + (gsize) c * ga.total);
  ga.n_genes = cleave_ga_encoding_n_genes (ga.enc[0]);
  n_layers = cleave_ga_encoding_n_layers (ga.enc[0]);

  /* evaluation images, normalised once */
  eval_idx = balanced_subset (ds, val_idx, n_val, opt->val_images, nc, opt->seed + 1, &ga.n_eval);
  ga.x_eval = g_new (float, (gsize) ga.n_eval * ga.in_size);
  eval_y = g_new (float, ga.n_eval);
  ga.y_eval = g_new (int, ga.n_eval);
  cleave_dataset_fill_batch (ds, eval_idx, ga.n_eval, model->mean, model->std, NULL, NULL, ga.x_eval, eval_y);
  for (int i = 0; i < ga.n_eval; i++)
    ga.y_eval[i] = (int) eval_y[i];
  n_sens = opt->sensitivity_images > 0 ? MIN (opt->sensitivity_images, ga.n_eval) : ga.n_eval;

  ga.net = cleave_net_new (model->graph, backend, error);
  if (ga.net == NULL)
    goto fail;

  /* the whole model's own-class scores: every module's starting point */
  {
    g_autofree guint8 *ones = g_new (guint8, ga.total);
    g_autofree guint8 **keeps = g_new (guint8 *, nc);
    g_autofree int *cls = g_new (int, nc);
    memset (ones, 1, ga.total);
    for (int c = 0; c < nc; c++)
      {
        keeps[c] = ones;
        cls[c] = c;
      }
    full_scores = g_new (float, (gsize) nc * ga.n_eval);
    CHECK_LOCAL (score_candidates (&ga, keeps, cls, nc, ga.x_eval, ga.n_eval, full_scores, CLEAVE_PHASE_IMPORTANCE, 0, &local));
  }
  {
    float **sc = g_newa (float *, nc);
    for (int c = 0; c < nc; c++)
      sc[c] = full_scores + (gsize) c * ga.n_eval;
    base_acc = composed_accuracy (&ga, sc, n_sens);
  }

  /* 2. sensitivity */
  sens = g_new (double, (gsize) n_layers * N_RATIOS);
  CHECK_LOCAL (sensitivity_analysis (&ga, n_sens, base_acc, sens, &local));
  ga.ratios = g_new0 (double *, MAX (1, ga.n_sites));
  ga.n_ratios = g_new0 (int, MAX (1, ga.n_sites));
  layer_r0 = g_new (double, n_layers);
  for (int l = 0; l < n_layers; l++)
    {
      int r0 = N_RATIOS - 1;
      while (r0 > 0 && (base_acc - sens[l * N_RATIOS + r0 - 1]) * 100.0 <= opt->sensitivity_threshold)
        r0--;
      ga.n_ratios[l] = N_RATIOS - r0;
      ga.ratios[l] = g_new (double, ga.n_ratios[l]);
      for (int r = r0; r < N_RATIOS; r++)
        ga.ratios[l][r - r0] = (r + 1) / (double) N_RATIOS;
      layer_r0[l] = (r0 + 1) / (double) N_RATIOS;
    }

  /* 3. populations: individual 0 is the whole model */
  pop = g_new0 (Indiv **, nc);
  best = g_new0 (Indiv *, nc);
  {
    Indiv **fresh = g_new0 (Indiv *, (gsize) nc * P);
    g_autofree guint8 **keeps = g_new (guint8 *, (gsize) nc * P);
    g_autofree int *cls = g_new (int, (gsize) nc * P);
    g_autofree float *sc = g_new (float, (gsize) nc * P * ga.n_eval);
    Indiv **full = g_newa (Indiv *, nc);
    for (int c = 0; c < nc; c++)
      {
        pop[c] = fresh + (gsize) c * P;
        best[c] = indiv_new (&ga);
        for (int i = 0; i < P; i++)
          {
            Indiv *ind = pop[c][i] = indiv_new (&ga);
            if (i == 0)
              memset (ind->genes, 1, ga.n_genes);
            else
              init_genes (&ga, c, ind->genes);
            indiv_decode (&ga, ind, c);
            keeps[c * P + i] = ind->keep;
            cls[c * P + i] = c;
          }
      }
    /* the whole-model individuals need no forward */
    for (int c = 0; c < nc; c++)
      {
        memcpy (pop[c][0]->scores, full_scores + (gsize) c * ga.n_eval, sizeof (float) * ga.n_eval);
        full[c] = pop[c][0];
      }
    {
      g_autofree guint8 **k2 = g_new (guint8 *, (gsize) nc * P);
      g_autofree int *c2 = g_new (int, (gsize) nc * P);
      int m = 0;
      for (int c = 0; c < nc; c++)
        for (int i = 1; i < P; i++, m++)
          {
            k2[m] = keeps[c * P + i];
            c2[m] = cls[c * P + i];
          }
      if (!score_candidates (&ga, k2, c2, m, ga.x_eval, ga.n_eval, sc, CLEAVE_PHASE_GENERATION, 0, &local))
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            {
              /* the whole model is the best so far */
              for (int c = 0; c < nc; c++)
                {
                  compute_fitness (&ga, pop[c][0], c, full);
                  indiv_copy (&ga, best[c], pop[c][0]);
                }
            }
          CHECK_LOCAL (FALSE);
        }
      m = 0;
      for (int c = 0; c < nc; c++)
        for (int i = 1; i < P; i++, m++)
          memcpy (pop[c][i]->scores, sc + (gsize) m * ga.n_eval, sizeof (float) * ga.n_eval);
    }
    for (int c = 0; c < nc; c++)
      {
        for (int i = 0; i < P; i++)
          compute_fitness (&ga, pop[c][i], c, full);
        qsort (pop[c], P, sizeof (Indiv *), cmp_indiv_desc);
      }
    for (int c = 0; c < nc; c++)
      indiv_copy (&ga, best[c], pop[c][0]);
  }


  /* 4. generations (generation 0 is the initial population) */
  {
    g_autofree guint8 **keeps = g_new (guint8 *, P);
    g_autofree int *cls = g_new (int, P);
    g_autofree float *sc = g_new (float, (gsize) P * ga.n_eval);
    Indiv **children = g_new0 (Indiv *, P);
    for (int i = 0; i < P; i++)
      children[i] = indiv_new (&ga);

    for (int gen = 0; gen <= opt->generations && !was_cancelled; gen++)
      {
        double mean_fit = 0, mean_krr = 0, acc;
        float **bs = g_newa (float *, nc);

        for (int c = 0; c < nc && gen > 0; c++)
          {
            int n_child = P - E;
            for (int i = 0; i < P; i++)
              compute_fitness (&ga, pop[c][i], c, best);
            qsort (pop[c], P, sizeof (Indiv *), cmp_indiv_desc);
            for (int i = 0; i < n_child; i++)
              {
                Indiv *ch = children[i];
                const Indiv *a = pop[c][g_rand_int_range (ga.rng, 0, opt->parents)];
                const Indiv *b = pop[c][g_rand_int_range (ga.rng, 0, opt->parents)];
                int point = ga.n_genes > 1 ? g_rand_int_range (ga.rng, 1, ga.n_genes) : 0;
                cleave_ga_crossover (a->genes, b->genes, ga.n_genes, point, ch->genes);
                cleave_ga_mutate (ch->genes, ga.n_genes, opt->mutation, ga.rng);
                indiv_decode (&ga, ch, c);
                keeps[i] = ch->keep;
                cls[i] = c;
              }
            if (!score_candidates (&ga, keeps, cls, n_child, ga.x_eval, ga.n_eval, sc, CLEAVE_PHASE_GENERATION, gen, &local))
              {
                if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
                  {
                    was_cancelled = TRUE;
                    g_clear_error (&local);
                    break;
                  }
                g_propagate_error (error, g_steal_pointer (&local));
                for (int i = 0; i < P; i++)
                  indiv_free (children[i]);
                g_free (children);
                goto fail;
              }
            /* children replace the non-elites (swap storage, nothing is freed) */
            for (int i = 0; i < n_child; i++)
              {
                Indiv *t = pop[c][E + i];
                memcpy (children[i]->scores, sc + (gsize) i * ga.n_eval, sizeof (float) * ga.n_eval);
                pop[c][E + i] = children[i];
                children[i] = t;
              }
            for (int i = 0; i < P; i++)
              compute_fitness (&ga, pop[c][i], c, best);
            qsort (pop[c], P, sizeof (Indiv *), cmp_indiv_desc);
            indiv_copy (&ga, best[c], pop[c][0]);
          }
        if (was_cancelled)
          break;
        gens_done = gen;
        for (int c = 0; c < nc; c++)
          {
            compute_fitness (&ga, best[c], c, best);
            mean_fit += best[c]->fitness / nc;
            mean_krr += (double) best[c]->kept / ga.total / nc;
            bs[c] = best[c]->scores;
          }
        acc = composed_accuracy (&ga, bs, ga.n_eval);
        /* Classes evolve against each other, so the last generation is not
         * always the best composition: keep the one with the best mean
         * fitness (a function of the whole composition). */
        if (mean_fit > chosen_fit)
          {
            if (chosen == NULL)
              {
                chosen = g_new0 (Indiv *, nc);
                for (int c = 0; c < nc; c++)
                  chosen[c] = indiv_new (&ga);
              }
            for (int c = 0; c < nc; c++)
              indiv_copy (&ga, chosen[c], best[c]);
            chosen_fit = mean_fit;
            chosen_gen = gen;
          }
        {
          CleaveSplitLogEntry *e = cleave_split_log_append (log, gen, CLEAVE_PHASE_GENERATION);
          e->val_accuracy = acc;
          e->mean_krr = mean_krr;
          e->best_fitness = mean_fit;
          e->seconds = (g_get_monotonic_time () - ga.start_us) / 1e6;
        }
        if (progress)
          {
            CleaveProgress p = { 0 };
            double secs = (g_get_monotonic_time () - ga.start_us) / 1e6;
            p.fraction = ga.work_total > 0 ? MIN (1.0, ga.work_done / ga.work_total) : 1;
            p.phase = CLEAVE_PHASE_GENERATION;
            p.epoch = gen;
            p.epochs = opt->generations;
            p.loss = NAN;
            p.accuracy = acc;
            p.val_accuracy = acc;
            p.krr = mean_krr;
            p.fitness = mean_fit;
            p.images_per_s = secs > 0 ? ga.work_done / secs : 0;
            p.epoch_done = TRUE;
            progress (&p, user_data);
          }
      }
    for (int i = 0; i < P; i++)
      indiv_free (children[i]);
    g_free (children);
  }

finish:
#undef CHECK_LOCAL
  /* 5. modules from the best individuals (the whole model when the search
   * was cancelled before it had any) */
  {
    g_autofree guint8 *ones = g_new (guint8, MAX (1, ga.total));
    /* best[] exists only once the initial population is scored (or the
     * whole model was copied into it on a cancel while scoring it) */
    gboolean have_best = best != NULL && best[nc - 1] != NULL;
    Indiv **final = chosen ? chosen : best;
    memset (ones, 1, MAX (1, ga.total));
    set = cleave_module_set_new (model, "ga");
    for (int c = 0; c < nc; c++)
      {
        const guint8 **kp = g_newa (const guint8 *, MAX (1, ga.n_sites));
        const float **ip = g_newa (const float *, MAX (1, ga.n_sites));
        CleaveModule *m;
        for (int s = 0; s < ga.n_sites; s++)
          {
            kp[s] = (have_best ? final[c]->keep : ones) + ga.off[s];
            ip[s] = importance ? importance + (gsize) c * ga.total + ga.off[s] : NULL;
          }
        m = cleave_module_extract (model->graph, c, model->class_names ? model->class_names[c] : NULL,
                                   (const guint8 *const *) kp, importance ? (const float *const *) ip : NULL, error);
        if (m == NULL || !cleave_module_set_add (set, m, error))
          {
            cleave_module_free (m);
            goto fail;
          }
      }
    /* on the importance images: all validation images unless importance_images caps them */
    set->source_accuracy = source_acc_imp;
    if (have_best || full_scores)
      {
        float **bs = g_newa (float *, nc);
        for (int c = 0; c < nc; c++)
          bs[c] = have_best ? final[c]->scores : full_scores + (gsize) c * ga.n_eval;
        set->composed_accuracy = composed_accuracy (&ga, bs, ga.n_eval);
      }
    else
      set->composed_accuracy = source_acc_imp;
  }

  cleave_split_log_free (set->log);
  set->log = g_steal_pointer (&log);

  {
    g_autoptr(JsonBuilder) b = json_builder_new ();
    double *ratio_list = g_newa (double, N_RATIOS);
    for (int r = 0; r < N_RATIOS; r++)
      ratio_list[r] = (r + 1) / (double) N_RATIOS;
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "method");
    json_builder_add_string_value (b, "ga");
    json_builder_set_member_name (b, "population");
    json_builder_add_int_value (b, opt->population);
    json_builder_set_member_name (b, "generations");
    json_builder_add_int_value (b, opt->generations);
    json_builder_set_member_name (b, "generations_done");
    json_builder_add_int_value (b, MAX (0, gens_done));
    json_builder_set_member_name (b, "selected_generation");
    json_builder_add_int_value (b, chosen_gen);
    json_builder_set_member_name (b, "parents");
    json_builder_add_int_value (b, opt->parents);
    json_builder_set_member_name (b, "elites");
    json_builder_add_int_value (b, opt->elites);
    json_builder_set_member_name (b, "mutation");
    json_builder_add_double_value (b, opt->mutation);
    json_builder_set_member_name (b, "fitness");
    json_builder_add_string_value (b, opt->fitness == CLEAVE_GA_FITNESS_KRR ? "krr" : "reference");
    json_builder_set_member_name (b, "diff_weight");
    json_builder_add_double_value (b, opt->diff_weight);
    json_builder_set_member_name (b, "krr_weight");
    json_builder_add_double_value (b, opt->krr_weight);
    json_builder_set_member_name (b, "sensitivity_threshold");
    json_builder_add_double_value (b, opt->sensitivity_threshold);
    json_builder_set_member_name (b, "min_confidence");
    json_builder_add_double_value (b, opt->min_confidence);
    json_builder_set_member_name (b, "seed");
    json_builder_add_int_value (b, (gint64) opt->seed);
    json_builder_set_member_name (b, "eval_images");
    json_builder_add_int_value (b, ga.n_eval);
    json_builder_set_member_name (b, "importance_images");
    json_builder_add_int_value (b, n_imp);
    json_builder_set_member_name (b, "importance_fallback_classes");
    json_builder_begin_array (b);
    for (int c = 0; c < nc && importance; c++)
      if (fallback[c])
        json_builder_add_int_value (b, c);
    json_builder_end_array (b);
    json_builder_set_member_name (b, "cancelled");
    json_builder_add_boolean_value (b, was_cancelled);
    json_builder_set_member_name (b, "seconds");
    json_builder_add_double_value (b, (g_get_monotonic_time () - ga.start_us) / 1e6);
    json_builder_set_member_name (b, "sensitivity");
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "complete");
    json_builder_add_boolean_value (b, layer_r0 != NULL);
    json_builder_set_member_name (b, "images");
    json_builder_add_int_value (b, n_sens);
    json_builder_set_member_name (b, "base_accuracy");
    json_builder_add_double_value (b, base_acc);
    json_builder_set_member_name (b, "ratios");
    json_add_double_array (b, ratio_list, N_RATIOS);
    json_builder_set_member_name (b, "layers");
    json_builder_begin_array (b);
    for (int l = 0; l < n_layers && layer_r0 != NULL; l++)
      {
        int root;
        cleave_ga_encoding_layer (ga.enc[0], l, NULL, NULL, &root);
        json_builder_begin_object (b);
        json_builder_set_member_name (b, "layer");
        json_builder_add_string_value (b, cleave_graph_node (model->graph, cleave_graph_mask_site (model->graph, root)->conv)->name);
        json_builder_set_member_name (b, "sites");
        json_builder_begin_array (b);
        for (int s = 0; s < ga.n_sites; s++)
          if (cleave_graph_mask_site (model->graph, s)->tie == root)
            json_builder_add_int_value (b, s);
        json_builder_end_array (b);
        json_builder_set_member_name (b, "kernels");
        json_builder_add_int_value (b, cleave_graph_mask_site (model->graph, root)->channels);
        json_builder_set_member_name (b, "accuracy");
        json_add_double_array (b, sens + l * N_RATIOS, N_RATIOS);
        json_builder_set_member_name (b, "sensitive");
        json_builder_add_boolean_value (b, layer_r0[l] > 0.1 + 1e-9);
        json_builder_set_member_name (b, "min_initial_ratio");
        json_builder_add_double_value (b, layer_r0[l]);
        json_builder_end_object (b);
      }
    json_builder_end_array (b);
    json_builder_end_object (b);
    json_builder_end_object (b);
    g_free (set->options_json);
    set->options_json = builder_to_string (b);
  }

  /* metrics on the whole validation set; skipped when cancelled, so that a
   * cancel returns promptly (the set keeps the evaluation-subset accuracy) */
  if (!was_cancelled && !g_cancellable_is_cancelled (cancellable))
    {
      if (!cleave_module_set_evaluate (set, backend, ds, val_idx, n_val, NULL, cancellable, &local))
        {
          if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            was_cancelled = TRUE;
          else
            {
              g_propagate_error (error, g_steal_pointer (&local));
              goto fail;
            }
          g_clear_error (&local);
        }
    }
  else
    was_cancelled = TRUE;
  if (cancelled)
    *cancelled = was_cancelled;
  if (generation)
    *generation = MAX (0, gens_done);

  if (pop)
    for (int c = 0; c < nc; c++)
      if (pop[c])
        for (int i = 0; i < P; i++)
          indiv_free (pop[c][i]);
  if (pop)
    g_free (pop[0]);
  g_free (pop);
  if (best)
    for (int c = 0; c < nc; c++)
      indiv_free (best[c]);
  g_free (best);
  if (chosen)
    for (int c = 0; c < nc; c++)
      indiv_free (chosen[c]);
  g_free (chosen);
  ga_clear (&ga);
  return set;

fail:
  if (set)
    cleave_module_set_free (set);
  if (pop)
    for (int c = 0; c < nc; c++)
      if (pop[c])
        for (int i = 0; i < opt->population; i++)
          indiv_free (pop[c][i]);
  if (pop)
    g_free (pop[0]);
  g_free (pop);
  if (best)
    for (int c = 0; c < nc; c++)
      indiv_free (best[c]);
  g_free (best);
  if (chosen)
    for (int c = 0; c < nc; c++)
      indiv_free (chosen[c]);
  g_free (chosen);
  ga_clear (&ga);
  return NULL;
}

gboolean
cleave_ga_split (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                 const int *val_idx, int n_val, const CleaveGaSplitOptions *opt,
                 CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable,
                 CleaveSplitResult *result, GError **error)
{
  gboolean cancelled = FALSE;
  int generation = 0;
  CleaveModuleSet *set;

  g_return_val_if_fail (model != NULL && backend != NULL && ds != NULL, FALSE);
  g_return_val_if_fail (result != NULL && result->set == NULL, FALSE);
  set = ga_split (model, backend, ds, val_idx, n_val, opt, progress, user_data, cancellable, &cancelled, &generation,
                  error);
  return cleave_split_finish (set, cancelled, generation, result, error);
}
