/* cleave-compose.c: compositions, patched models, the scorer API and their
 * files and ONNX export (docs/ALGORITHMS.md, Reuse; cleave-compose.h explains the
 * score calibration and what shared execution can and cannot share). */
#include "cleave-compose.h"
#include "cleave-safetensors.h"
#include "cleave-onnx.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#define CHUNK 256

/* ---- small helpers ---- */

const char *
cleave_calibration_to_string (CleaveCalibration c)
{
  switch (c)
    {
    case CLEAVE_CALIBRATION_RAW: return "raw";
    case CLEAVE_CALIBRATION_MINMAX: return "minmax";
    default: return "auto";
    }
}

int
cleave_calibration_from_string (const char *s)
{
  if (s == NULL)
    return -1;
  if (g_str_equal (s, "auto"))
    return CLEAVE_CALIBRATION_AUTO;
  if (g_str_equal (s, "raw"))
    return CLEAVE_CALIBRATION_RAW;
  if (g_str_equal (s, "minmax"))
    return CLEAVE_CALIBRATION_MINMAX;
  return -1;
}

static CleaveModule *
module_copy (const CleaveModule *m)
{
  CleaveModule *c = g_new0 (CleaveModule, 1);

  *c = *m;
  c->class_name = g_strdup (m->class_name);
  c->n_kept = g_memdup2 (m->n_kept, sizeof (int) * MAX (1, m->n_sites));
  c->kept = g_new0 (int *, MAX (1, m->n_sites));
  for (int s = 0; s < m->n_sites; s++)
    c->kept[s] = g_memdup2 (m->kept[s], sizeof (int) * MAX (1, m->n_kept[s]));
  c->graph = cleave_graph_copy (m->graph);
  if (m->has_head)
    {
      c->head_w1 = g_memdup2 (m->head_w1, sizeof (float) * CLEAVE_HEAD_HIDDEN * m->n_logits);
      c->head_b1 = g_memdup2 (m->head_b1, sizeof (float) * CLEAVE_HEAD_HIDDEN);
      c->head_w2 = g_memdup2 (m->head_w2, sizeof (float) * CLEAVE_HEAD_HIDDEN);
    }
  else
    c->head_w1 = c->head_b1 = c->head_w2 = NULL;
  return c;
}

/* A set with the same source description and no modules. */
static CleaveModuleSet *
set_shell_copy (const CleaveModuleSet *s)
{
  CleaveModuleSet *c = g_new0 (CleaveModuleSet, 1);

  c->method = g_strdup (s->method);
  c->source_path = g_strdup (s->source_path);
  c->source_sha256 = g_strdup (s->source_sha256);
  c->dataset = g_strdup (s->dataset);
  c->in_c = s->in_c, c->in_h = s->in_h, c->in_w = s->in_w;
  memcpy (c->mean, s->mean, sizeof c->mean);
  memcpy (c->std, s->std, sizeof c->std);
  c->n_classes = s->n_classes;
  c->class_names = g_strdupv (s->class_names);
  c->total_kernels = s->total_kernels;
  c->source_accuracy = s->source_accuracy;
  c->composed_accuracy = s->composed_accuracy;
  c->modules = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_module_free);
  c->options_json = g_strdup (s->options_json);
  c->n_sites = s->n_sites;
  c->site_channels = g_memdup2 (s->site_channels, sizeof (int) * MAX (1, s->n_sites));
  c->site_tie = g_memdup2 (s->site_tie, sizeof (int) * MAX (1, s->n_sites));
  c->site_names = g_strdupv (s->site_names);
  return c;
}

static gboolean
modules_identical (const CleaveModule *a, const CleaveModule *b, int upto_site)
{
  if (a->n_sites != b->n_sites)
    return FALSE;
  for (int s = 0; s < MIN (upto_site, a->n_sites); s++)
    if (a->n_kept[s] != b->n_kept[s] || memcmp (a->kept[s], b->kept[s], sizeof (int) * a->n_kept[s]) != 0)
      return FALSE;
  return TRUE;
}

static void
softmax_inplace (float *v, int n)
{
  float mx = -INFINITY;
  double sum = 0;
  for (int i = 0; i < n; i++)
    mx = MAX (mx, v[i]);
  for (int i = 0; i < n; i++)
    sum += (v[i] = expf (v[i] - mx));
  for (int i = 0; i < n; i++)
    v[i] = (float) (v[i] / sum);
}

/* ---- compositions ---- */

CleaveComposition *
cleave_composition_new (void)
{
  CleaveComposition *c = g_new0 (CleaveComposition, 1);
  c->sources = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_module_set_free);
  c->classes = g_array_new (FALSE, TRUE, sizeof (CleaveComposedClass));
  c->calibration = CLEAVE_CALIBRATION_AUTO;
  c->shared = TRUE;
  c->origin = g_hash_table_new (NULL, NULL);
  return c;
}

void
cleave_composition_free (CleaveComposition *c)
{
  if (c == NULL)
    return;
  for (guint i = 0; i < c->classes->len; i++)
    g_free (g_array_index (c->classes, CleaveComposedClass, i).class_name);
  g_array_unref (c->classes);
  g_ptr_array_unref (c->sources);
  g_hash_table_unref (c->origin);
  g_free (c);
}

int
cleave_composition_n_classes (const CleaveComposition *c)
{
  return (int) c->classes->len;
}

const CleaveModule *
cleave_composition_module (const CleaveComposition *c, int k)
{
  const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
  const CleaveModuleSet *set = c->sources->pdata[cc->source];
  return set->modules->pdata[cc->module];
}

gboolean
cleave_composition_add (CleaveComposition *c, const CleaveModuleSet *set, int module_index,
                        const char *class_name, GError **error)
{
  gpointer found;
  int src;
  CleaveModuleSet *copy;
  CleaveComposedClass cc = { 0 };
  const CleaveModule *m;

  if (module_index < 0 || module_index >= (int) set->modules->len)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "module %d does not exist (the set has %u)", module_index, set->modules->len);
      return FALSE;
    }
  if (c->sources->len > 0 && (set->in_c != c->in_c || set->in_h != c->in_h || set->in_w != c->in_w))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "modules take %d×%d×%d images, the composition %d×%d×%d",
                   set->in_c, set->in_h, set->in_w, c->in_c, c->in_h, c->in_w);
      return FALSE;
    }
  c->in_c = set->in_c, c->in_h = set->in_h, c->in_w = set->in_w;
  if (g_hash_table_lookup_extended (c->origin, set, NULL, &found))
    src = GPOINTER_TO_INT (found);
  else
    {
      src = (int) c->sources->len;
      g_ptr_array_add (c->sources, set_shell_copy (set));
      g_hash_table_insert (c->origin, (gpointer) set, GINT_TO_POINTER (src));
    }
  copy = c->sources->pdata[src];
  m = set->modules->pdata[module_index];
  /* The same module twice is stored once. */
  cc.module = -1;
  for (guint k = 0; k < copy->modules->len; k++)
    {
      const CleaveModule *o = copy->modules->pdata[k];
      if (o->class_index == m->class_index && modules_identical (o, m, m->n_sites) && o->head_b2 == m->head_b2)
        cc.module = (int) k;
    }
  if (cc.module < 0)
    {
      cc.module = (int) copy->modules->len;
      g_ptr_array_add (copy->modules, module_copy (m));
    }
  cc.source = src;
  cc.class_name = g_strdup (class_name ? class_name : m->class_name);
  g_array_append_val (c->classes, cc);
  return TRUE;
}

gboolean
cleave_composition_uses_minmax (const CleaveComposition *c)
{
  if (c->calibration != CLEAVE_CALIBRATION_AUTO)
    return c->calibration == CLEAVE_CALIBRATION_MINMAX;
  if (c->sources->len > 1)
    return TRUE;
  for (int k = 0; k < cleave_composition_n_classes (c); k++)
    if (!cleave_composition_module (c, k)->has_head)
      return TRUE;
  return FALSE;
}

float
cleave_composition_calibrate (const CleaveComposition *c, int k, float raw)
{
  const CleaveModule *m = cleave_composition_module (c, k);
  if (!cleave_composition_uses_minmax (c) || !isfinite (m->score_min) || !isfinite (m->score_max) ||
      m->score_max <= m->score_min)
    return raw;
  return (raw - m->score_min) / (m->score_max - m->score_min);
}

CleaveComposition *
cleave_composition_best_of (CleaveModuleSet **sets, int n_sets, int **chosen_set, GError **error)
{
  g_autoptr(CleaveComposition) c = cleave_composition_new ();
  int n_classes;
  g_autofree int *chosen = NULL;

  if (n_sets < 1)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "best-of needs at least one module set");
      return NULL;
    }
  n_classes = sets[0]->n_classes;
  for (int i = 1; i < n_sets; i++)
    if (sets[i]->n_classes != n_classes)
      {
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                     "best-of: module set %d has %d classes, set 0 has %d (one task only)",
                     i, sets[i]->n_classes, n_classes);
        return NULL;
      }
  chosen = g_new0 (int, MAX (1, n_classes));
  for (int cls = 0; cls < n_classes; cls++)
    {
      int best_set = -1, best_mod = -1;
      double best_f1 = -INFINITY;
      for (int i = 0; i < n_sets; i++)
        for (guint k = 0; k < sets[i]->modules->len; k++)
          {
            const CleaveModule *m = sets[i]->modules->pdata[k];
            double f1 = isfinite (m->val_f1) ? m->val_f1 : -1.0;
            if (m->class_index == cls && f1 > best_f1)
              best_f1 = f1, best_set = i, best_mod = (int) k;
          }
      if (best_set < 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "best-of: no module set has a module for class %d", cls);
          return NULL;
        }
      if (!cleave_composition_add (c, sets[best_set], best_mod, sets[0]->class_names[cls], error))
        return NULL;
      chosen[cls] = best_set;
    }
  if (chosen_set)
    *chosen_set = g_steal_pointer (&chosen);
  return g_steal_pointer (&c);
}

/* Execution groups of one source: classes whose modules keep identical
 * kernels everywhere run one network. rep[k] is the representative class. */
static int *
exec_groups (const CleaveComposition *c)
{
  int n = cleave_composition_n_classes (c);
  int *rep = g_new (int, MAX (1, n));

  for (int k = 0; k < n; k++)
    {
      const CleaveComposedClass *ck = &g_array_index (c->classes, CleaveComposedClass, k);
      const CleaveModule *mk = cleave_composition_module (c, k);
      rep[k] = k;
      if (!c->shared)
        continue;
      for (int j = 0; j < k; j++)
        {
          const CleaveComposedClass *cj = &g_array_index (c->classes, CleaveComposedClass, j);
          if (rep[j] == j && cj->source == ck->source &&
              modules_identical (cleave_composition_module (c, j), mk, mk->n_sites))
            {
              rep[k] = j;
              break;
            }
        }
    }
  return rep;
}

static guint64
head_flops (const CleaveModule *m)
{
  return m->has_head ? 2 * ((guint64) CLEAVE_HEAD_HIDDEN * m->n_logits + CLEAVE_HEAD_HIDDEN) : 0;
}

void
cleave_composition_flops (const CleaveComposition *c, CleaveComposeFlops *out)
{
  int n = cleave_composition_n_classes (c);
  g_autofree int *rep = exec_groups (c);

  memset (out, 0, sizeof *out);
  for (int k = 0; k < n; k++)
    {
      const CleaveModule *m = cleave_composition_module (c, k);
      out->one_by_one += cleave_module_flops (m);
      out->executed += rep[k] == k ? cleave_module_flops (m) : head_flops (m);
    }
  /* Prefix sharing: at conv site s, modules of one source whose kept sets
   * agree at every earlier site read identical inputs, so the union of their
   * kernels at s is computed once. Only conv FLOPs are counted as saved. */
  out->prefix_shared = out->one_by_one;
  for (guint src = 0; src < c->sources->len; src++)
    {
      const CleaveModuleSet *set = c->sources->pdata[src];
      int nm = (int) set->modules->len;
      gboolean ok = TRUE;
      for (int k = 0; k < nm && ok; k++)
        ok = cleave_graph_n_mask_sites (((CleaveModule *) set->modules->pdata[k])->graph) == set->n_sites;
      if (!ok || nm < 2)
        continue;
      for (int s = 0; s < set->n_sites; s++)
        {
          g_autofree gboolean *done = g_new0 (gboolean, nm);
          for (int a = 0; a < nm; a++)
            {
              const CleaveModule *ma = set->modules->pdata[a];
              const CleaveGraph *ga = ma->graph;
              int conv = cleave_graph_mask_site (ga, s)->conv;
              double per_kernel = (double) cleave_graph_node_flops (ga, conv) / MAX (1, ma->n_kept[s]);
              g_autofree guint8 *uni = NULL;
              guint64 sum = 0, u = 0;
              if (done[a])
                continue;
              uni = g_new0 (guint8, set->site_channels[s]);
              for (int b = a; b < nm; b++)
                {
                  const CleaveModule *mb = set->modules->pdata[b];
                  if (done[b] || !modules_identical (ma, mb, s))
                    continue;
                  done[b] = TRUE;
                  sum += cleave_graph_node_flops (mb->graph, cleave_graph_mask_site (mb->graph, s)->conv);
                  for (int i = 0; i < mb->n_kept[s]; i++)
                    uni[mb->kept[s][i]] = 1;
                }
              for (int i = 0; i < set->site_channels[s]; i++)
                u += uni[i];
              {
                guint64 shared = (guint64) (per_kernel * u + 0.5);
                if (shared < sum)
                  out->prefix_shared -= sum - shared;
              }
            }
        }
    }
  /* Classes that reuse one stored module count it once in the bound too. */
  for (int k = 0; k < n; k++)
    {
      const CleaveComposedClass *ck = &g_array_index (c->classes, CleaveComposedClass, k);
      for (int j = 0; j < k; j++)
        {
          const CleaveComposedClass *cj = &g_array_index (c->classes, CleaveComposedClass, j);
          if (cj->source == ck->source && cj->module == ck->module)
            {
              guint64 f = cleave_graph_count_flops (cleave_composition_module (c, k)->graph);
              out->prefix_shared = out->prefix_shared > f ? out->prefix_shared - f : 0;
              break;
            }
        }
    }
  out->prefix_shared = MIN (out->prefix_shared, out->executed);
}

static gboolean
check_dataset_shape (const CleaveDataset *ds, int c, int h, int w, GError **error)
{
  if (ds->c != c || ds->h != h || ds->w != w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset images are %d×%d×%d, the model takes %d×%d×%d", ds->c, ds->h, ds->w, c, h, w);
      return FALSE;
    }
  return TRUE;
}

static int *
index_range (const int *indices, int n)
{
  int *idx = g_new (int, MAX (1, n));
  for (int i = 0; i < n; i++)
    idx[i] = indices ? indices[i] : i;
  return idx;
}

/* Raw (uncalibrated) module scores, n × K. */
static gboolean
composition_raw_scores (CleaveComposition *c, CleaveBackend *backend, const CleaveDataset *ds,
                        const int *indices, int n, float *out, GCancellable *cancellable, GError **error)
{
  int K = cleave_composition_n_classes (c);
  gsize img = (gsize) c->in_c * c->in_h * c->in_w;
  g_autofree int *rep = exec_groups (c);
  g_autofree int *idx = index_range (indices, n);
  CleaveNet **nets = g_new0 (CleaveNet *, MAX (1, K));
  g_autofree float *x = g_new (float, CHUNK * img);
  g_autofree float *logits = NULL;
  int max_logits = 1;
  gboolean ok = TRUE;

  if (!check_dataset_shape (ds, c->in_c, c->in_h, c->in_w, error))
    {
      g_free (nets);
      return FALSE;
    }
  for (int k = 0; k < K; k++)
    max_logits = MAX (max_logits, cleave_composition_module (c, k)->n_logits);
  logits = g_new (float, (gsize) CHUNK * max_logits);
  for (int k = 0; k < K && ok; k++)
    if (rep[k] == k)
      ok = (nets[k] = cleave_net_new (cleave_composition_module (c, k)->graph, backend, error)) != NULL;
  for (int start = 0; start < n && ok; start += CHUNK)
    {
      int b = MIN (CHUNK, n - start);
      int filled_for = -1;
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          ok = FALSE;
          break;
        }
      for (int k = 0; k < K && ok; k++)
        {
          const CleaveComposedClass *ck = &g_array_index (c->classes, CleaveComposedClass, k);
          const CleaveModuleSet *set = c->sources->pdata[ck->source];
          const CleaveModule *mk;
          if (rep[k] != k)
            continue;
          mk = cleave_composition_module (c, k);
          if (filled_for != ck->source)
            {
              cleave_dataset_fill_batch (ds, idx + start, b, set->mean, set->std, NULL, NULL, x, NULL);
              filled_for = ck->source;
            }
          ok = cleave_net_infer (nets[k], x, b, error) && cleave_net_download_output (nets[k], logits, error);
          for (int j = k; j < K && ok; j++)
            if (rep[j] == k)
              {
                const CleaveModule *mj = cleave_composition_module (c, j);
                for (int i = 0; i < b; i++)
                  out[(gsize) (start + i) * K + j] = cleave_module_head (mj, logits + (gsize) i * mk->n_logits);
              }
        }
    }
  for (int k = 0; k < K; k++)
    cleave_net_free (nets[k]);
  g_free (nets);
  return ok;
}

gboolean
cleave_composition_scores (CleaveComposition *c, CleaveBackend *backend, const CleaveDataset *ds,
                           const int *indices, int n, float *out, GCancellable *cancellable, GError **error)
{
  int K = cleave_composition_n_classes (c);
  if (!composition_raw_scores (c, backend, ds, indices, n, out, cancellable, error))
    return FALSE;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < K; k++)
      out[(gsize) i * K + k] = cleave_composition_calibrate (c, k, out[(gsize) i * K + k]);
  return TRUE;
}

/* ---- files ----
 * A composition embeds each source module set exactly as cleave-modules/1
 * writes it, under the tensor prefix "source.S." and the metadata key
 * "cleave.source.S" (that set's "cleave.modules" JSON), so the module-set
 * reader validates every module. A patched model embeds the weak model as
 * cleave-model/1 writes it, under "weak." (tensors and metadata keys). */

static gboolean
copy_tensors (CleaveSafetensors *dst, const CleaveSafetensors *src, const char *from_prefix, const char *to_prefix,
              const char *file, GError **error)
{
  gsize plen = strlen (from_prefix);
  for (guint i = 0; i < src->tensors->len; i++)
    {
      const CleaveSafeTensor *t = src->tensors->pdata[i];
      g_autofree char *name = NULL;
      int shape[8];
      if (strncmp (t->name, from_prefix, plen) != 0)
        continue;
      name = g_strconcat (to_prefix, t->name + plen, NULL);
      for (int d = 0; d < t->ndim; d++)
        shape[d] = (int) t->shape[d];
      if (g_str_equal (t->dtype, "I32") || g_str_equal (t->dtype, "I64"))
        {
          g_autofree gint32 *v = cleave_safe_tensor_to_i32 (t, file, error);
          if (v == NULL)
            return FALSE;
          cleave_safetensors_add_i32 (dst, name, t->ndim, shape, v);
        }
      else
        {
          g_autofree float *v = cleave_safe_tensor_to_f32 (t, 0, file, error);
          if (v == NULL)
            return FALSE;
          cleave_safetensors_add_f32 (dst, name, t->ndim, shape, v);
        }
    }
  return TRUE;
}

static gboolean
embed_module_set (CleaveSafetensors *st, const CleaveModuleSet *set, const char *prefix, GError **error)
{
  g_autoptr(CleaveSafetensors) part = cleave_module_set_to_safetensors (set, error);
  g_autofree char *tprefix = g_strconcat (prefix, ".", NULL);
  g_autofree char *mkey = g_strconcat ("cleave.", prefix, NULL);

  if (part == NULL || !copy_tensors (st, part, "", tprefix, prefix, error))
    return FALSE;
  cleave_safetensors_set_metadata (st, mkey, cleave_safetensors_get_metadata (part, "cleave.modules"));
  return TRUE;
}

static CleaveModuleSet *
extract_module_set (const CleaveSafetensors *st, const char *prefix, const char *file, GError **error)
{
  g_autofree char *tprefix = g_strconcat (prefix, ".", NULL);
  g_autofree char *mkey = g_strconcat ("cleave.", prefix, NULL);
  const char *meta = cleave_safetensors_get_metadata (st, mkey);
  g_autoptr(CleaveSafetensors) part = cleave_safetensors_new ();
  g_autofree char *where = g_strdup_printf ("%s (%s)", file, prefix);

  if (meta == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: __metadata__ '%s' is missing", file, mkey);
      return NULL;
    }
  if (!copy_tensors (part, st, tprefix, "", file, error))
    return NULL;
  cleave_safetensors_set_metadata (part, "cleave.format", "cleave-modules/1");
  cleave_safetensors_set_metadata (part, "cleave.modules", meta);
  return cleave_module_set_from_safetensors (part, where, error);
}

static char *
composition_recipe (const CleaveComposition *c)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "calibration");
  json_builder_add_string_value (b, cleave_calibration_to_string (c->calibration));
  json_builder_set_member_name (b, "shared");
  json_builder_add_boolean_value (b, c->shared);
  json_builder_set_member_name (b, "input");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, c->in_c);
  json_builder_add_int_value (b, c->in_h);
  json_builder_add_int_value (b, c->in_w);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "sources");
  json_builder_add_int_value (b, c->sources->len);
  json_builder_set_member_name (b, "classes");
  json_builder_begin_array (b);
  for (guint k = 0; k < c->classes->len; k++)
    {
      const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, cc->class_name);
      json_builder_set_member_name (b, "source");
      json_builder_add_int_value (b, cc->source);
      json_builder_set_member_name (b, "module");
      json_builder_add_int_value (b, cc->module);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static gboolean
composition_to_st (const CleaveComposition *c, CleaveSafetensors *st, const char *prefix, GError **error)
{
  g_autofree char *recipe = composition_recipe (c);
  g_autofree char *rkey = g_strconcat ("cleave.", prefix, "composition", NULL);

  if (c->classes->len == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the composition has no classes");
      return FALSE;
    }
  for (guint s = 0; s < c->sources->len; s++)
    {
      g_autofree char *p = g_strdup_printf ("%ssource.%u", prefix, s);
      if (!embed_module_set (st, c->sources->pdata[s], p, error))
        return FALSE;
    }
  cleave_safetensors_set_metadata (st, rkey, recipe);
  return TRUE;
}

static gboolean
read_int_member (JsonObject *o, const char *key, gint64 lo, gint64 hi, gint64 *out, const char *file,
                 const char *where, GError **error)
{
  JsonNode *n = json_object_get_member (o, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64 ||
      json_node_get_int (n) < lo || json_node_get_int (n) > hi)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: %s.%s must be an integer in [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                   file, where, key, lo, hi);
      return FALSE;
    }
  *out = json_node_get_int (n);
  return TRUE;
}

static CleaveComposition *
composition_from_st (const CleaveSafetensors *st, const char *prefix, const char *file, GError **error)
{
  g_autofree char *rkey = g_strconcat ("cleave.", prefix, "composition", NULL);
  const char *recipe = cleave_safetensors_get_metadata (st, rkey);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(CleaveComposition) c = cleave_composition_new ();
  JsonObject *o;
  JsonNode *n;
  JsonArray *classes, *input;
  gint64 n_sources;

  if (recipe == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: __metadata__ '%s' is missing", file, rkey);
      return NULL;
    }
  if (!json_parser_load_from_data (parser, recipe, -1, NULL) || !cleave_json_root (parser, JSON_NODE_OBJECT))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s is not a JSON object", file, rkey);
      return NULL;
    }
  o = json_node_get_object (json_parser_get_root (parser));
  n = json_object_get_member (o, "calibration");
  if (cleave_json_string (n) == NULL || cleave_calibration_from_string (cleave_json_string (n)) < 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: %s.calibration must be \"auto\", \"raw\" or \"minmax\"", file, rkey);
      return NULL;
    }
  c->calibration = cleave_calibration_from_string (json_node_get_string (n));
  n = json_object_get_member (o, "shared");
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_BOOLEAN)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s.shared must be true or false", file, rkey);
      return NULL;
    }
  c->shared = json_node_get_boolean (n);
  if (!read_int_member (o, "sources", 1, 4096, &n_sources, file, rkey, error))
    return NULL;
  n = json_object_get_member (o, "input");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n) || json_array_get_length (input = json_node_get_array (n)) != 3)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s.input must be [C, H, W]", file, rkey);
      return NULL;
    }
  for (guint k = 0; k < 3; k++)
    {
      int *dims[3] = { &c->in_c, &c->in_h, &c->in_w };
      JsonNode *e = json_array_get_element (input, k);
      gint64 v = e && JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_INT64 ? json_node_get_int (e) : 0;
      if (v < 1 || v > 4096)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s.input must be [C, H, W]", file, rkey);
          return NULL;
        }
      *dims[k] = (int) v;
    }
  for (gint64 s = 0; s < n_sources; s++)
    {
      g_autofree char *p = g_strdup_printf ("%ssource.%" G_GINT64_FORMAT, prefix, s);
      CleaveModuleSet *set = extract_module_set (st, p, file, error);
      if (set == NULL)
        return NULL;
      g_ptr_array_add (c->sources, set);
      if (set->in_c != c->in_c || set->in_h != c->in_h || set->in_w != c->in_w)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                       "%s: %s: modules take %d×%d×%d images, %s.input says %d×%d×%d", file, p,
                       set->in_c, set->in_h, set->in_w, rkey, c->in_c, c->in_h, c->in_w);
          return NULL;
        }
    }
  n = json_object_get_member (o, "classes");
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n) || json_array_get_length (classes = json_node_get_array (n)) == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s.classes must be a non-empty array", file, rkey);
      return NULL;
    }
  for (guint k = 0; k < json_array_get_length (classes); k++)
    {
      JsonNode *e = json_array_get_element (classes, k);
      g_autofree char *where = g_strdup_printf ("%s.classes[%u]", rkey, k);
      CleaveComposedClass cc = { 0 };
      gint64 src, mod;
      JsonNode *name;
      if (!JSON_NODE_HOLDS_OBJECT (e))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s must be an object", file, where);
          return NULL;
        }
      if (!read_int_member (json_node_get_object (e), "source", 0, n_sources - 1, &src, file, where, error))
        return NULL;
      if (!read_int_member (json_node_get_object (e), "module", 0,
                            (gint64) ((CleaveModuleSet *) c->sources->pdata[src])->modules->len - 1, &mod, file,
                            where, error))
        return NULL;
      name = json_object_get_member (json_node_get_object (e), "name");
      if (cleave_json_string (name) == NULL)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s.name must be a string", file, where);
          return NULL;
        }
      cc.source = (int) src, cc.module = (int) mod;
      cc.class_name = g_strdup (json_node_get_string (name));
      g_array_append_val (c->classes, cc);
    }
  return g_steal_pointer (&c);
}

gboolean
cleave_composition_save (const CleaveComposition *c, const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_new ();
  if (!composition_to_st (c, st, "", error))
    return FALSE;
  cleave_safetensors_set_metadata (st, "cleave.format", CLEAVE_COMPOSITION_FORMAT);
  return cleave_safetensors_save (st, path, error);
}

static gboolean
check_format (const CleaveSafetensors *st, const char *want, const char *path, GError **error)
{
  const char *fmt = cleave_safetensors_get_metadata (st, "cleave.format");
  if (fmt == NULL || !g_str_equal (fmt, want))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: __metadata__ cleave.format is %s%s%s, want \"%s\"",
                   path, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "", want);
      return FALSE;
    }
  return TRUE;
}

CleaveComposition *
cleave_composition_load (const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, error);
  if (st == NULL || !check_format (st, CLEAVE_COMPOSITION_FORMAT, path, error))
    return NULL;
  return composition_from_st (st, "", path, error);
}

/* ---- patched models ---- */

CleavePatched *
cleave_patched_new (CleaveModel *weak)
{
  CleavePatched *p = g_new0 (CleavePatched, 1);
  p->weak = weak;
  p->modules = cleave_composition_new ();
  p->modules->calibration = CLEAVE_CALIBRATION_RAW;
  return p;
}

void
cleave_patched_free (CleavePatched *p)
{
  if (p == NULL)
    return;
  cleave_model_free (p->weak);
  cleave_composition_free (p->modules);
  g_free (p->target);
  g_free (p);
}

gboolean
cleave_patched_add (CleavePatched *p, const CleaveModuleSet *set, int module_index, int target_class, GError **error)
{
  const CleaveModule *m;
  int c, h, w, n;

  if (module_index < 0 || module_index >= (int) set->modules->len)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "module %d does not exist", module_index);
      return FALSE;
    }
  m = set->modules->pdata[module_index];
  if (target_class < 0 || target_class >= p->weak->n_classes)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "target class %d: the weak model has %d classes",
                   target_class, p->weak->n_classes);
      return FALSE;
    }
  if (!isfinite (m->score_min) || !isfinite (m->score_max) || m->score_max <= m->score_min)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "module for class %d has no score range (evaluate the module set on validation images first)",
                   m->class_index);
      return FALSE;
    }
  cleave_graph_input_shape (p->weak->graph, &c, &h, &w);
  if (c != set->in_c || h != set->in_h || w != set->in_w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "the weak model takes %d×%d×%d images, the module %d×%d×%d", c, h, w, set->in_c, set->in_h, set->in_w);
      return FALSE;
    }
  for (n = 0; n < cleave_composition_n_classes (p->modules); n++)
    if (p->target[n] == target_class)
      {
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "class %d is patched twice", target_class);
        return FALSE;
      }
  if (!cleave_composition_add (p->modules, set, module_index, p->weak->class_names[target_class], error))
    return FALSE;
  p->target = g_renew (int, p->target, n + 1);
  p->target[n] = target_class;
  return TRUE;
}

void
cleave_patched_combine (const CleavePatched *p, float *softmax, const float *module_scores)
{
  for (int e = 0; e < cleave_composition_n_classes (p->modules); e++)
    {
      const CleaveModule *m = cleave_composition_module (p->modules, e);
      softmax[p->target[e]] = (module_scores[e] - m->score_min) / (m->score_max - m->score_min);
    }
}

static gboolean
model_logits (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds, const int *indices, int n,
              float *out, GCancellable *cancellable, GError **error)
{
  int c, h, w, F = cleave_graph_n_outputs (model->graph);
  CleaveNet *net;
  g_autofree int *idx = index_range (indices, n);
  g_autofree float *x = NULL;
  gboolean ok = TRUE;

  cleave_graph_input_shape (model->graph, &c, &h, &w);
  if (!check_dataset_shape (ds, c, h, w, error))
    return FALSE;
  if ((net = cleave_net_new (model->graph, backend, error)) == NULL)
    return FALSE;
  x = g_new (float, (gsize) CHUNK * c * h * w);
  for (int start = 0; start < n && ok; start += CHUNK)
    {
      int b = MIN (CHUNK, n - start);
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        ok = FALSE;
      else
        {
          cleave_dataset_fill_batch (ds, idx + start, b, model->mean, model->std, NULL, NULL, x, NULL);
          ok = cleave_net_infer (net, x, b, error) &&
               cleave_net_download_output (net, out + (gsize) start * F, error);
        }
    }
  cleave_net_free (net);
  return ok;
}

gboolean
cleave_patched_scores (CleavePatched *p, CleaveBackend *backend, const CleaveDataset *ds,
                       const int *indices, int n, float *out, GCancellable *cancellable, GError **error)
{
  int C = p->weak->n_classes, E = cleave_composition_n_classes (p->modules);
  g_autofree float *ms = g_new (float, MAX (1, (gsize) n * E));

  if (cleave_graph_n_outputs (p->weak->graph) != C)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the weak model has %d outputs for %d classes",
                   cleave_graph_n_outputs (p->weak->graph), C);
      return FALSE;
    }
  if (!model_logits (p->weak, backend, ds, indices, n, out, cancellable, error))
    return FALSE;
  if (E > 0 && !composition_raw_scores (p->modules, backend, ds, indices, n, ms, cancellable, error))
    return FALSE;
  for (int i = 0; i < n; i++)
    {
      softmax_inplace (out + (gsize) i * C, C);
      cleave_patched_combine (p, out + (gsize) i * C, ms + (gsize) i * E);
    }
  return TRUE;
}

static char *
patched_recipe (const CleavePatched *p)
{
  GString *s = g_string_new ("{\"targets\": [");
  for (int e = 0; e < cleave_composition_n_classes (p->modules); e++)
    g_string_append_printf (s, "%s%d", e ? ", " : "", p->target[e]);
  g_string_append (s, "]}");
  return g_string_free (s, FALSE);
}

gboolean
cleave_patched_save (const CleavePatched *p, const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_new ();
  g_autoptr(CleaveSafetensors) weak = cleave_model_to_safetensors (p->weak);
  g_autofree char *recipe = patched_recipe (p);

  if (!copy_tensors (st, weak, "", "weak.", "weak model", error))
    return FALSE;
  {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init (&it, weak->metadata);
    while (g_hash_table_iter_next (&it, &k, &v))
      {
        g_autofree char *key = g_strconcat ("weak.", (char *) k, NULL);
        cleave_safetensors_set_metadata (st, key, v);
      }
  }
  if (cleave_composition_n_classes (p->modules) > 0 && !composition_to_st (p->modules, st, "patch.", error))
    return FALSE;
  cleave_safetensors_set_metadata (st, "cleave.patched", recipe);
  cleave_safetensors_set_metadata (st, "cleave.format", CLEAVE_PATCHED_FORMAT);
  return cleave_safetensors_save (st, path, error);
}

CleavePatched *
cleave_patched_load (const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, error);
  g_autoptr(CleaveSafetensors) weak_st = cleave_safetensors_new ();
  g_autoptr(CleavePatched) p = NULL;
  g_autoptr(JsonParser) parser = json_parser_new ();
  const char *recipe;
  JsonNode *targets;
  CleaveModel *weak;
  int E = 0;

  if (st == NULL || !check_format (st, CLEAVE_PATCHED_FORMAT, path, error))
    return NULL;
  if (!copy_tensors (weak_st, st, "weak.", "", path, error))
    return NULL;
  {
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init (&it, st->metadata);
    while (g_hash_table_iter_next (&it, &k, &v))
      if (g_str_has_prefix (k, "weak."))
        cleave_safetensors_set_metadata (weak_st, (char *) k + 5, v);
  }
  {
    g_autofree char *where = g_strdup_printf ("%s (weak model)", path);
    if ((weak = cleave_model_from_safetensors (weak_st, where, error)) == NULL)
      return NULL;
  }
  weak->path = g_strdup (path);
  p = cleave_patched_new (weak);
  recipe = cleave_safetensors_get_metadata (st, "cleave.patched");
  if (recipe == NULL || !json_parser_load_from_data (parser, recipe, -1, NULL) ||
      !cleave_json_root (parser, JSON_NODE_OBJECT) ||
      (targets = json_object_get_member (json_node_get_object (json_parser_get_root (parser)), "targets")) == NULL ||
      !JSON_NODE_HOLDS_ARRAY (targets))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: __metadata__ cleave.patched must be {\"targets\": [...]}", path);
      return NULL;
    }
  E = (int) json_array_get_length (json_node_get_array (targets));
  /* Modules are embedded exactly when there are targets: without this, a
   * damaged target list would silently drop the patch. */
  if ((E > 0) != (cleave_safetensors_get_metadata (st, "cleave.patch.composition") != NULL))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: cleave.patched.targets has %d entries, but the file %s modules (cleave.patch.composition)",
                   path, E, E > 0 ? "embeds no" : "embeds");
      return NULL;
    }
  if (E > 0)
    {
      cleave_composition_free (p->modules);
      if ((p->modules = composition_from_st (st, "patch.", path, error)) == NULL)
        return NULL;
      p->modules->calibration = CLEAVE_CALIBRATION_RAW;
    }
  if (E != cleave_composition_n_classes (p->modules))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: cleave.patched.targets has %d entries, the embedded composition %d modules", path, E,
                   cleave_composition_n_classes (p->modules));
      return NULL;
    }
  p->target = g_new0 (int, MAX (1, E));
  for (int i = 0; i < E; i++)
    {
      JsonNode *t = json_array_get_element (json_node_get_array (targets), i);
      const CleaveModule *m = cleave_composition_module (p->modules, i);
      int c, h, w;
      if (!JSON_NODE_HOLDS_VALUE (t) || json_node_get_value_type (t) != G_TYPE_INT64 || json_node_get_int (t) < 0 ||
          json_node_get_int (t) >= p->weak->n_classes)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                       "%s: cleave.patched.targets[%d] must be a class of the weak model (0..%d)", path, i,
                       p->weak->n_classes - 1);
          return NULL;
        }
      p->target[i] = (int) json_node_get_int (t);
      for (int j = 0; j < i; j++)
        if (p->target[j] == p->target[i])
          {
            g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                         "%s: cleave.patched.targets[%d] repeats class %d", path, i, p->target[i]);
            return NULL;
          }
      if (!isfinite (m->score_min) || !isfinite (m->score_max) || m->score_max <= m->score_min)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                       "%s: patch %d: the module's score_range is missing or empty", path, i);
          return NULL;
        }
      cleave_graph_input_shape (p->weak->graph, &c, &h, &w);
      if (c != p->modules->in_c || h != p->modules->in_h || w != p->modules->in_w)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                       "%s: the weak model takes %d×%d×%d images, its modules another shape", path, c, h, w);
          return NULL;
        }
    }
  return g_steal_pointer (&p);
}

/* ---- scorer ---- */

struct _CleaveScorer {
  CleaveScorerKind kind;
  CleaveModel *model;
  CleaveComposition *comp;
  CleavePatched *patched;
  char **class_names;
};

static CleaveScorer *
scorer_alloc (CleaveScorerKind kind)
{
  CleaveScorer *s = g_new0 (CleaveScorer, 1);
  s->kind = kind;
  return s;
}

CleaveScorer *
cleave_scorer_new_model (CleaveModel *model)
{
  CleaveScorer *s = scorer_alloc (CLEAVE_SCORER_MODEL);
  s->model = model;
  s->class_names = g_strdupv (model->class_names);
  return s;
}

CleaveScorer *
cleave_scorer_new_composition (CleaveComposition *c)
{
  CleaveScorer *s = scorer_alloc (CLEAVE_SCORER_COMPOSITION);
  int K = cleave_composition_n_classes (c);
  s->comp = c;
  s->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    s->class_names[k] = g_strdup (g_array_index (c->classes, CleaveComposedClass, k).class_name);
  return s;
}

CleaveScorer *
cleave_scorer_new_patched (CleavePatched *p)
{
  CleaveScorer *s = scorer_alloc (CLEAVE_SCORER_PATCHED);
  s->patched = p;
  s->class_names = g_strdupv (p->weak->class_names);
  return s;
}

void
cleave_scorer_free (CleaveScorer *s)
{
  if (s == NULL)
    return;
  cleave_model_free (s->model);
  cleave_composition_free (s->comp);
  cleave_patched_free (s->patched);
  g_strfreev (s->class_names);
  g_free (s);
}

CleaveScorer *
cleave_scorer_load (const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = NULL;
  const char *fmt;
  CleaveModel *m;

  if (g_str_has_suffix (path, ".onnx") || g_str_has_suffix (path, ".ONNX"))
    {
      m = cleave_onnx_load_model (path, error);
      return m ? cleave_scorer_new_model (m) : NULL;
    }
  if ((st = cleave_safetensors_load (path, error)) == NULL)
    return NULL;
  fmt = cleave_safetensors_get_metadata (st, "cleave.format");
  if (fmt && g_str_equal (fmt, CLEAVE_COMPOSITION_FORMAT))
    {
      CleaveComposition *c = composition_from_st (st, "", path, error);
      return c ? cleave_scorer_new_composition (c) : NULL;
    }
  if (fmt && g_str_equal (fmt, CLEAVE_PATCHED_FORMAT))
    {
      CleavePatched *p = cleave_patched_load (path, error);
      return p ? cleave_scorer_new_patched (p) : NULL;
    }
  if (fmt && g_str_equal (fmt, "cleave-modules/1"))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "%s is a module set; compose it first (cleave-cli compose -o NEW %s:0,1,…)", path, path);
      return NULL;
    }
  if (fmt && !g_str_equal (fmt, "cleave-model/1"))
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE,
                   "%s: __metadata__ cleave.format \"%s\" is none of cleave-model/1, %s, %s", path, fmt,
                   CLEAVE_COMPOSITION_FORMAT, CLEAVE_PATCHED_FORMAT);
      return NULL;
    }
  m = cleave_model_load (path, error);
  return m ? cleave_scorer_new_model (m) : NULL;
}

CleaveScorerKind
cleave_scorer_kind (const CleaveScorer *s)
{
  return s->kind;
}

const char *
cleave_scorer_kind_name (const CleaveScorer *s)
{
  return s->kind == CLEAVE_SCORER_MODEL ? "model" : s->kind == CLEAVE_SCORER_COMPOSITION ? "composition" : "patched";
}

int
cleave_scorer_n_classes (const CleaveScorer *s)
{
  return (int) g_strv_length (s->class_names);
}

const char *const *
cleave_scorer_class_names (const CleaveScorer *s)
{
  return (const char *const *) s->class_names;
}

void
cleave_scorer_input_shape (const CleaveScorer *s, int *c, int *h, int *w)
{
  if (s->kind == CLEAVE_SCORER_COMPOSITION)
    *c = s->comp->in_c, *h = s->comp->in_h, *w = s->comp->in_w;
  else
    cleave_graph_input_shape (s->kind == CLEAVE_SCORER_MODEL ? s->model->graph : s->patched->weak->graph, c, h, w);
}

guint64
cleave_scorer_flops (const CleaveScorer *s)
{
  CleaveComposeFlops f;
  switch (s->kind)
    {
    case CLEAVE_SCORER_MODEL:
      return cleave_graph_count_flops (s->model->graph);
    case CLEAVE_SCORER_COMPOSITION:
      cleave_composition_flops (s->comp, &f);
      return f.executed;
    default:
      cleave_composition_flops (s->patched->modules, &f);
      return cleave_graph_count_flops (s->patched->weak->graph) + f.executed;
    }
}

CleaveModel *
cleave_scorer_model (CleaveScorer *s)
{
  return s->model;
}

CleaveComposition *
cleave_scorer_composition (CleaveScorer *s)
{
  return s->comp;
}

CleavePatched *
cleave_scorer_patched (CleaveScorer *s)
{
  return s->patched;
}

gboolean
cleave_scorer_scores (CleaveScorer *s, CleaveBackend *backend, const CleaveDataset *ds,
                      const int *indices, int n, float *out, GCancellable *cancellable, GError **error)
{
  switch (s->kind)
    {
    case CLEAVE_SCORER_MODEL:
      if (cleave_graph_n_outputs (s->model->graph) != s->model->n_classes)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the model has %d outputs for %d classes",
                       cleave_graph_n_outputs (s->model->graph), s->model->n_classes);
          return FALSE;
        }
      return model_logits (s->model, backend, ds, indices, n, out, cancellable, error);
    case CLEAVE_SCORER_COMPOSITION:
      return cleave_composition_scores (s->comp, backend, ds, indices, n, out, cancellable, error);
    default:
      return cleave_patched_scores (s->patched, backend, ds, indices, n, out, cancellable, error);
    }
}

CleaveMetrics *
cleave_scorer_evaluate (CleaveScorer *s, CleaveBackend *backend, const CleaveDataset *ds,
                        const int *indices, int n, float **scores_out,
                        CleaveProgressFunc progress, gpointer user_data,
                        GCancellable *cancellable, GError **error)
{
  int K = cleave_scorer_n_classes (s);
  g_autoptr(CleaveMetrics) m = NULL;
  g_autofree float *scores = NULL;
  g_autofree int *idx = NULL;
  const int step = 1024;
  gint64 t0 = g_get_monotonic_time ();

  if (indices == NULL)
    n = ds->n;
  if (ds->n_classes != K)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "the dataset has %d classes, the %s %d (pick classes with --mix DATASET:LIST)",
                   ds->n_classes, cleave_scorer_kind_name (s), K);
      return NULL;
    }
  idx = index_range (indices, n);
  scores = g_new (float, MAX (1, (gsize) n * K));
  for (int start = 0; start < n; start += step)
    {
      int b = MIN (step, n - start);
      if (!cleave_scorer_scores (s, backend, ds, idx + start, b, scores + (gsize) start * K, cancellable, error))
        return NULL;
      if (progress)
        {
          CleaveProgress pr = { 0 };
          double dt = (g_get_monotonic_time () - t0) / 1e6;
          pr.fraction = (double) (start + b) / MAX (1, n);
          pr.phase = CLEAVE_PHASE_EVALUATE;
          pr.loss = pr.accuracy = pr.val_accuracy = pr.krr = NAN;
          pr.images_per_s = dt > 0 ? (start + b) / dt : 0;
          progress (&pr, user_data);
        }
    }
  m = cleave_metrics_new (K);
  for (int i = 0; i < n; i++)
    {
      cleave_metrics_add_outputs (m, ds->labels[idx[i]], scores + (gsize) i * K, K);
    }
  cleave_metrics_finish (m);
  m->loss = NAN;
  if (scores_out)
    *scores_out = g_steal_pointer (&scores);
  return g_steal_pointer (&m);
}

/* ---- ONNX export ---- */

/* Emits one module's score [N,1] reading the normalised input. */
static const char *
onnx_module_score (CleaveOnnxBuilder *b, const CleaveModule *m, const char *input, const char *prefix, GError **error)
{
  const char *logits = cleave_onnx_builder_add_graph (b, m->graph, input, prefix, error);
  g_autofree char *name = NULL;
  int node;

  if (logits == NULL)
    return NULL;
  if (!m->has_head)
    {
      gint64 idx = m->class_index, one = 1;
      const char *ins[2];
      g_autofree char *iname = g_strconcat (prefix, "class_index", NULL);
      ins[0] = logits;
      ins[1] = cleave_onnx_builder_add_initializer_i64 (b, iname, 1, &one, &idx);
      name = g_strconcat (prefix, "score", NULL);
      node = cleave_onnx_builder_add_node (b, "Gather", name, ins, 2);
      cleave_onnx_builder_set_int (b, node, "axis", 1);
      return cleave_onnx_builder_node_output (b, node);
    }
  {
    gint64 d_w1[2] = { CLEAVE_HEAD_HIDDEN, m->n_logits }, d_b1[1] = { CLEAVE_HEAD_HIDDEN };
    gint64 d_w2[2] = { 1, CLEAVE_HEAD_HIDDEN }, d_b2[1] = { 1 };
    g_autofree char *n_relu0 = g_strconcat (prefix, "head/relu0", NULL);
    g_autofree char *n_fc1 = g_strconcat (prefix, "head/fc1", NULL);
    g_autofree char *n_relu1 = g_strconcat (prefix, "head/relu1", NULL);
    g_autofree char *n_fc2 = g_strconcat (prefix, "head/fc2", NULL);
    g_autofree char *n_sig = g_strconcat (prefix, "score", NULL);
    g_autofree char *i_w1 = g_strconcat (prefix, "head.w1", NULL);
    g_autofree char *i_b1 = g_strconcat (prefix, "head.b1", NULL);
    g_autofree char *i_w2 = g_strconcat (prefix, "head.w2", NULL);
    g_autofree char *i_b2 = g_strconcat (prefix, "head.b2", NULL);
    const char *ins[3];
    const char *v;

    ins[0] = logits;
    node = cleave_onnx_builder_add_node (b, "Relu", n_relu0, ins, 1);
    ins[0] = cleave_onnx_builder_node_output (b, node);
    ins[1] = cleave_onnx_builder_add_initializer (b, i_w1, 2, d_w1, m->head_w1);
    ins[2] = cleave_onnx_builder_add_initializer (b, i_b1, 1, d_b1, m->head_b1);
    node = cleave_onnx_builder_add_node (b, "Gemm", n_fc1, ins, 3);
    cleave_onnx_builder_set_int (b, node, "transB", 1);
    ins[0] = cleave_onnx_builder_node_output (b, node);
    node = cleave_onnx_builder_add_node (b, "Relu", n_relu1, ins, 1);
    ins[0] = cleave_onnx_builder_node_output (b, node);
    ins[1] = cleave_onnx_builder_add_initializer (b, i_w2, 2, d_w2, m->head_w2);
    ins[2] = cleave_onnx_builder_add_initializer (b, i_b2, 1, d_b2, &m->head_b2);
    node = cleave_onnx_builder_add_node (b, "Gemm", n_fc2, ins, 3);
    cleave_onnx_builder_set_int (b, node, "transB", 1);
    ins[0] = cleave_onnx_builder_node_output (b, node);
    node = cleave_onnx_builder_add_node (b, "Sigmoid", n_sig, ins, 1);
    v = cleave_onnx_builder_node_output (b, node);
    return v;
  }
}

/* (score − min) / (max − min) as Sub/Div by constants. */
static const char *
onnx_minmax (CleaveOnnxBuilder *b, const char *score, float lo, float hi, const char *prefix)
{
  gint64 one = 1;
  float range = hi - lo;
  g_autofree char *i_lo = g_strconcat (prefix, "score_min", NULL);
  g_autofree char *i_rg = g_strconcat (prefix, "score_range", NULL);
  g_autofree char *n_sub = g_strconcat (prefix, "minmax/sub", NULL);
  g_autofree char *n_div = g_strconcat (prefix, "minmax/div", NULL);
  const char *ins[2];
  int node;

  ins[0] = score;
  ins[1] = cleave_onnx_builder_add_initializer (b, i_lo, 1, &one, &lo);
  node = cleave_onnx_builder_add_node (b, "Sub", n_sub, ins, 2);
  ins[0] = cleave_onnx_builder_node_output (b, node);
  ins[1] = cleave_onnx_builder_add_initializer (b, i_rg, 1, &one, &range);
  node = cleave_onnx_builder_add_node (b, "Div", n_div, ins, 2);
  return cleave_onnx_builder_node_output (b, node);
}

/* Normalised inputs per source, created on first use. */
static const char *
onnx_source_input (CleaveOnnxBuilder *b, const char *input, const CleaveModuleSet *set, int src, const char **cache)
{
  if (cache[src] == NULL)
    {
      g_autofree char *p = g_strdup_printf ("source%d/", src);
      cache[src] = cleave_onnx_builder_add_normalize (b, input, set->in_c, set->mean, set->std, p);
    }
  return cache[src];
}

static void
onnx_scores_and_class (CleaveOnnxBuilder *b, const char **parts, int n)
{
  gint64 d_scores[2] = { -1, n }, d_class[1] = { -1 };
  int node = cleave_onnx_builder_add_node (b, "Concat", "scores", parts, n);
  const char *scores;
  cleave_onnx_builder_set_int (b, node, "axis", 1);
  scores = cleave_onnx_builder_node_output (b, node);
  node = cleave_onnx_builder_add_node (b, "ArgMax", "class", &scores, 1);
  cleave_onnx_builder_set_int (b, node, "axis", 1);
  cleave_onnx_builder_set_int (b, node, "keepdims", 0);
  cleave_onnx_builder_add_output (b, scores, CLEAVE_ONNX_FLOAT, 2, d_scores);
  cleave_onnx_builder_add_output (b, cleave_onnx_builder_node_output (b, node), CLEAVE_ONNX_INT64, 1, d_class);
}

gboolean
cleave_export_module_set_onnx (const CleaveModuleSet *set, const char *path, GError **error)
{
  g_autoptr(CleaveOnnxBuilder) b = cleave_onnx_builder_new ("cleave-modules");
  const char *input = cleave_onnx_builder_add_input (b, "input", set->in_c, set->in_h, set->in_w);
  const char *norm = cleave_onnx_builder_add_normalize (b, input, set->in_c, set->mean, set->std, "");
  gint64 dims[2] = { -1, 1 };

  for (guint k = 0; k < set->modules->len; k++)
    {
      g_autofree char *prefix = g_strdup_printf ("module%u/", k);
      const char *score = onnx_module_score (b, set->modules->pdata[k], norm, prefix, error);
      if (score == NULL)
        return FALSE;
      cleave_onnx_builder_add_output (b, score, CLEAVE_ONNX_FLOAT, 2, dims);
    }
  return cleave_onnx_builder_save (b, path, error);
}

gboolean
cleave_export_composition_onnx (const CleaveComposition *c, const char *path, GError **error)
{
  g_autoptr(CleaveOnnxBuilder) b = cleave_onnx_builder_new ("cleave-composition");
  const char *input = cleave_onnx_builder_add_input (b, "input", c->in_c, c->in_h, c->in_w);
  int K = cleave_composition_n_classes (c);
  g_autofree const char **cache = g_new0 (const char *, c->sources->len + 1);
  g_autofree const char **parts = g_new0 (const char *, K + 1);
  gboolean minmax = cleave_composition_uses_minmax (c);

  for (int k = 0; k < K; k++)
    {
      const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
      const CleaveModule *m = cleave_composition_module (c, k);
      g_autofree char *prefix = g_strdup_printf ("class%d/", k);
      const char *in = onnx_source_input (b, input, c->sources->pdata[cc->source], cc->source, cache);
      const char *score = onnx_module_score (b, m, in, prefix, error);
      if (score == NULL)
        return FALSE;
      if (minmax && isfinite (m->score_min) && isfinite (m->score_max) && m->score_max > m->score_min)
        score = onnx_minmax (b, score, m->score_min, m->score_max, prefix);
      parts[k] = score;
    }
  onnx_scores_and_class (b, parts, K);
  return cleave_onnx_builder_save (b, path, error);
}

gboolean
cleave_export_patched_onnx (const CleavePatched *p, const char *path, GError **error)
{
  g_autoptr(CleaveOnnxBuilder) b = cleave_onnx_builder_new ("cleave-patched");
  int c, h, w, C = p->weak->n_classes, E = cleave_composition_n_classes (p->modules);
  const char *input, *norm, *logits, *probs;
  g_autofree const char **cache = g_new0 (const char *, p->modules->sources->len + 1);
  g_autofree const char **parts = g_new0 (const char *, C + 1);
  int node;

  cleave_graph_input_shape (p->weak->graph, &c, &h, &w);
  input = cleave_onnx_builder_add_input (b, "input", c, h, w);
  norm = cleave_onnx_builder_add_normalize (b, input, c, p->weak->mean, p->weak->std, "weak/");
  if ((logits = cleave_onnx_builder_add_graph (b, p->weak->graph, norm, "weak/", error)) == NULL)
    return FALSE;
  node = cleave_onnx_builder_add_node (b, "Softmax", "weak/softmax", &logits, 1);
  cleave_onnx_builder_set_int (b, node, "axis", 1);
  probs = cleave_onnx_builder_node_output (b, node);
  /* Columns of the weak model's probabilities, with patched ones replaced. */
  for (int col = 0; col < C; col++)
    {
      g_autofree char *nm = g_strdup_printf ("weak/column%d", col);
      g_autofree char *iname = g_strdup_printf ("weak/column%d_index", col);
      gint64 one = 1, idx = col;
      const char *ins[2] = { probs, cleave_onnx_builder_add_initializer_i64 (b, iname, 1, &one, &idx) };
      node = cleave_onnx_builder_add_node (b, "Gather", nm, ins, 2);
      cleave_onnx_builder_set_int (b, node, "axis", 1);
      parts[col] = cleave_onnx_builder_node_output (b, node);
    }
  for (int e = 0; e < E; e++)
    {
      const CleaveComposedClass *cc = &g_array_index (p->modules->classes, CleaveComposedClass, e);
      const CleaveModule *m = cleave_composition_module (p->modules, e);
      g_autofree char *prefix = g_strdup_printf ("patch%d/", e);
      const char *in = onnx_source_input (b, input, p->modules->sources->pdata[cc->source], cc->source, cache);
      const char *score = onnx_module_score (b, m, in, prefix, error);
      if (score == NULL)
        return FALSE;
      parts[p->target[e]] = onnx_minmax (b, score, m->score_min, m->score_max, prefix);
    }
  onnx_scores_and_class (b, parts, C);
  return cleave_onnx_builder_save (b, path, error);
}
