/* cleave-module.c: extracting per-class modules, scoring and evaluating
 * them, and module-set files (docs/ALGORITHMS.md, docs/ARCHITECTURE.md). */
#include "cleave-module.h"
#include "cleave-util-private.h"
#include "cleave-graph-private.h"
#include "cleave-safetensors.h"
#include "cleave-error.h"

#include <json-glib/json-glib.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define MODULES_FORMAT "cleave-modules/1"
#define EVAL_BATCH 128

/* ---- lifetimes ---- */

void
cleave_module_free (CleaveModule *m)
{
  if (m == NULL)
    return;
  g_free (m->class_name);
  if (m->kept)
    for (int s = 0; s < m->n_sites; s++)
      g_free (m->kept[s]);
  g_free (m->kept);
  g_free (m->n_kept);
  cleave_graph_free (m->graph);
  g_free (m->head_w1);
  g_free (m->head_b1);
  g_free (m->head_w2);
  g_free (m);
}

static CleaveModuleSet *
module_set_alloc (void)
{
  CleaveModuleSet *set = g_new0 (CleaveModuleSet, 1);
  set->modules = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_module_free);
  set->source_accuracy = NAN;
  set->composed_accuracy = NAN;
  for (int c = 0; c < 4; c++)
    set->std[c] = 1.0f;
  return set;
}

CleaveModuleSet *
cleave_module_set_new (const CleaveModel *source, const char *method)
{
  CleaveModuleSet *set = module_set_alloc ();
  const CleaveGraph *g = source->graph;

  set->method = g_strdup (method);
  set->source_path = g_strdup (source->path);
  set->source_sha256 = g_strdup (source->sha256);
  set->dataset = g_strdup (source->dataset);
  cleave_graph_input_shape (g, &set->in_c, &set->in_h, &set->in_w);
  memcpy (set->mean, source->mean, sizeof set->mean);
  memcpy (set->std, source->std, sizeof set->std);
  set->n_classes = source->n_classes;
  set->class_names = g_new0 (char *, source->n_classes + 1);
  for (int i = 0; i < source->n_classes; i++)
    set->class_names[i] = g_strdup (source->class_names[i]);
  set->total_kernels = cleave_graph_total_kernels (g);
  set->n_sites = cleave_graph_n_mask_sites (g);
  set->site_channels = g_new0 (int, MAX (1, set->n_sites));
  set->site_tie = g_new0 (int, MAX (1, set->n_sites));
  set->site_names = g_new0 (char *, set->n_sites + 1);
  for (int s = 0; s < set->n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
      set->site_channels[s] = site->channels;
      set->site_tie[s] = site->tie;
      set->site_names[s] = g_strdup (cleave_graph_node (g, site->conv)->name);
    }
  return set;
}

void
cleave_module_set_free (CleaveModuleSet *set)
{
  if (set == NULL)
    return;
  g_free (set->method);
  g_free (set->source_path);
  g_free (set->source_sha256);
  g_free (set->dataset);
  g_strfreev (set->class_names);
  g_ptr_array_unref (set->modules);
  cleave_split_log_free (set->log);
  g_free (set->options_json);
  g_free (set->site_channels);
  g_free (set->site_tie);
  g_strfreev (set->site_names);
  g_free (set);
}

gboolean
cleave_module_set_add (CleaveModuleSet *set, CleaveModule *module, GError **error)
{
  if (module->n_sites != set->n_sites)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "module for class %d has %d masked layers, the set's source has %d",
                   module->class_index, module->n_sites, set->n_sites);
      return FALSE;
    }
  for (int s = 0; s < set->n_sites; s++)
    if (module->n_kept[s] < 1 || module->kept[s][module->n_kept[s] - 1] >= set->site_channels[s])
      {
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                     "module for class %d: layer '%s' keeps kernels outside its %d",
                     module->class_index, set->site_names[s], set->site_channels[s]);
        return FALSE;
      }
  g_ptr_array_add (set->modules, module);
  return TRUE;
}

int
cleave_module_kept_total (const CleaveModule *m)
{
  int total = 0;
  for (int s = 0; s < m->n_sites; s++)
    total += m->n_kept[s];
  return total;
}

double
cleave_module_set_mean_krr (const CleaveModuleSet *set)
{
  double sum = 0;
  if (set->modules->len == 0)
    return NAN;
  for (guint i = 0; i < set->modules->len; i++)
    sum += ((CleaveModule *) set->modules->pdata[i])->krr;
  return sum / set->modules->len;
}

/* ---- extraction ---- */

/* Which units (channels of a 4-d output, features of a 2-d one) of a node's
 * source output survive in the module; NULL means all of them. */
typedef struct {
  GArray **sel;       /* per node: int indices into the source output, or NULL */
  gboolean *zeroed;   /* per node: dropped units are exact zeros in the masked source */
  float **cval;       /* per node, where not zeroed: the constant each dropped unit holds, or NULL (unknown) */
  float **bias_add;   /* per conv/linear node: what the dropped constants it read add to its outputs, or NULL */
} Selection;

static int
node_units (const CleaveNode *n)
{
  return n->out_shape[0];
}

static GArray *
sel_copy (const GArray *a)
{
  return a ? g_array_copy ((GArray *) a) : NULL;
}

static gboolean
sel_equal (const GArray *a, const GArray *b)
{
  if (a == NULL || b == NULL)
    return a == b;
  return a->len == b->len && memcmp (a->data, b->data, a->len * sizeof (int)) == 0;
}

static int
sel_len (const GArray *a, int full)
{
  return a ? (int) a->len : full;
}

static int
sel_at (const GArray *a, int i)
{
  return a ? g_array_index (a, int, i) : i;
}

static gboolean
is_depthwise (const CleaveNode *n)
{
  return n->op == CLEAVE_OP_CONV2D && n->groups > 1 && n->groups == n->in_channels && n->groups == n->out_channels;
}

static gboolean
unsupported (GError **error, const CleaveNode *n, const char *what)
{
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED,
               "cannot extract a module: layer '%s' (%s) %s", n->name, cleave_op_kind_to_string (n->op), what);
  return FALSE;
}

/* The kept output channels of a conv (NULL: all), from its mask site. A
 * depthwise conv's output channel c reads input channel c only: both keep
 * the same channels (their masks are tied), whatever the dropped ones hold;
 * grouped convs are not sliced. */
static gboolean
select_conv (const CleaveNode *n, int site, int *const *kept, const int *n_kept, const GArray *in_sel, GArray **out,
             GError **error)
{
  GArray *s = NULL;

  *out = NULL;
  if (site >= 0 && n_kept[site] < n->out_channels)
    {
      s = g_array_sized_new (FALSE, FALSE, sizeof (int), n_kept[site]);
      g_array_append_vals (s, kept[site], n_kept[site]);
    }
  if (is_depthwise (n) && !sel_equal (s, in_sel))
    {
      if (s)
        g_array_unref (s);
      return unsupported (error, n, "is a depthwise convolution whose kernels are not kept with their input channels");
    }
  if (!is_depthwise (n) && n->groups != 1 && (in_sel != NULL || s != NULL))
    {
      if (s)
        g_array_unref (s);
      return unsupported (error, n, "is a grouped convolution; only groups=1 can be sliced");
    }
  *out = s;
  return TRUE;
}

/* A slice's kept channels: its input's in its range, shifted to it; NULL when none. */
static GArray *
select_slice (const CleaveNode *n, const GArray *in_sel)
{
  GArray *s = g_array_new (FALSE, FALSE, sizeof (int));

  for (guint k = 0; k < in_sel->len; k++)
    {
      int v = g_array_index (in_sel, int, k) - n->start;
      if (v >= 0 && v < n->out_channels)
        g_array_append_val (s, v);
    }
  if (s->len == 0)
    g_clear_pointer (&s, g_array_unref);
  return s;
}

/* Propagates kept sets from the convs through the graph, in node order
 * (nodes are topologically sorted). */
static gboolean
compute_selection (const CleaveGraph *g, int *const *kept, const int *n_kept, const int *site_of_conv,
                   const int *site_of_node, Selection *sel, GError **error)
{
  int n_nodes = cleave_graph_n_nodes (g);

  for (int i = 1; i < n_nodes; i++)
    {
      const CleaveNode *n = cleave_graph_node (g, i);
      int in = n->inputs[0];
      GArray *s = NULL;
      gboolean zeroed = FALSE;

      switch (n->op)
        {
        case CLEAVE_OP_CONV2D:
          if (!select_conv (n, site_of_conv[i], kept, n_kept, sel->sel[in], &s, error))
            return FALSE;
          break;
        case CLEAVE_OP_CLIP:
          if (n->beta == 0.f && n->clip_min <= 0.f && n->clip_max >= 0.f)
            {
              s = sel_copy (sel->sel[in]);
              zeroed = sel->zeroed[in];
              break;
            }
          G_GNUC_FALLTHROUGH;
        case CLEAVE_OP_BATCHNORM2D:
        case CLEAVE_OP_SIGMOID:
        case CLEAVE_OP_HARDSIGMOID:
          /* These map 0 to a non-zero value: the dropped channels are no
           * longer zeros, which only a layer mixing channels (conv, linear)
           * cannot take; a product with a zeroed tensor makes them zeros again. */
          s = sel_copy (sel->sel[in]);
          break;
        case CLEAVE_OP_MUL:
          {
            int b = n->inputs[1];
            if (!sel_equal (sel->sel[in], sel->sel[b]))
              return unsupported (error, n, "multiplies two different channel sets (its operands' layers must be tied)");
            s = sel_copy (sel->sel[in]);
            zeroed = sel->zeroed[in] || sel->zeroed[b];
            break;
          }
        case CLEAVE_OP_SLICE:
          if (sel->sel[in] != NULL && (s = select_slice (n, sel->sel[in])) == NULL)
            return unsupported (error, n, "keeps none of its channels");
          zeroed = sel->zeroed[in];
          break;
        case CLEAVE_OP_CHANNEL_SHUFFLE:
        case CLEAVE_OP_SOFTMAX:
          if (sel->sel[in] != NULL)
            return unsupported (error, n, "reads a tensor with dropped channels (not supported in modules yet)");
          break;
        case CLEAVE_OP_RELU:
        case CLEAVE_OP_MAXPOOL2D:
        case CLEAVE_OP_AVGPOOL2D:
        case CLEAVE_OP_GLOBAL_AVGPOOL:
        case CLEAVE_OP_DROPOUT:
          s = sel_copy (sel->sel[in]);
          zeroed = sel->zeroed[in];
          break;
        case CLEAVE_OP_FLATTEN:
          {
            const CleaveNode *x = cleave_graph_node (g, in);
            zeroed = sel->zeroed[in];
            if (sel->sel[in] == NULL || x->out_ndim != 3)
              {
                s = sel_copy (sel->sel[in]);
                break;
              }
            /* Channel-major: each kept channel brings its H×W columns. */
            {
              int hw = x->out_shape[1] * x->out_shape[2];
              s = g_array_sized_new (FALSE, FALSE, sizeof (int), sel->sel[in]->len * hw);
              for (guint k = 0; k < sel->sel[in]->len; k++)
                for (int j = 0; j < hw; j++)
                  {
                    int v = g_array_index (sel->sel[in], int, k) * hw + j;
                    g_array_append_val (s, v);
                  }
            }
            break;
          }
        case CLEAVE_OP_LINEAR:
          break;
        case CLEAVE_OP_ADD:
          if (!sel_equal (sel->sel[in], sel->sel[n->inputs[1]]))
            return unsupported (error, n, "adds two different kernel sets (its operands' layers must be tied)");
          s = sel_copy (sel->sel[in]);
          zeroed = sel->zeroed[in] && sel->zeroed[n->inputs[1]];
          break;
        case CLEAVE_OP_CONCAT:
          {
            gboolean any = FALSE;
            int offset = 0;
            zeroed = TRUE;
            for (int k = 0; k < n->n_inputs; k++)
              {
                any |= sel->sel[n->inputs[k]] != NULL;
                zeroed &= sel->sel[n->inputs[k]] == NULL || sel->zeroed[n->inputs[k]];
              }
            if (!any)
              break;
            s = g_array_new (FALSE, FALSE, sizeof (int));
            for (int k = 0; k < n->n_inputs; k++)
              {
                const CleaveNode *x = cleave_graph_node (g, n->inputs[k]);
                const GArray *xs = sel->sel[n->inputs[k]];
                for (int j = 0; j < sel_len (xs, node_units (x)); j++)
                  {
                    int v = offset + sel_at (xs, j);
                    g_array_append_val (s, v);
                  }
                offset += node_units (x);
              }
            break;
          }
        default:
          return unsupported (error, n, "is not supported in modules");
        }
      if (site_of_node[i] >= 0)
        zeroed = TRUE;
      sel->sel[i] = s;
      sel->zeroed[i] = zeroed;
    }
  if (sel->sel[n_nodes - 1] != NULL)
    return unsupported (error, cleave_graph_node (g, n_nodes - 1), "is the output and is masked: modules keep all logits");
  return TRUE;
}


/* The value of every unit of node @i's output that is dropped: zeros, its
 * constants, or NULL when unknown. Free with g_free when *owned. */
static const float *
dropped_values (const CleaveGraph *g, const Selection *sel, int i, gboolean *owned)
{
  *owned = FALSE;
  if (sel->sel[i] == NULL || sel->zeroed[i])
    {
      *owned = TRUE;
      return g_new0 (float, MAX (1, node_units (cleave_graph_node (g, i))));
    }
  return sel->cval[i];
}

static float
param_at (const CleaveGraph *g, const CleaveNode *n, CleaveParamSlot slot, int k)
{
  return cleave_graph_param (g, n->param[slot])->data[k];
}

/* A per-channel layer applied to the dropped channels' constants. */
static float *
map_constants (const CleaveGraph *g, const CleaveNode *n, const float *v, int c)
{
  float *out = g_new (float, MAX (1, c));
  for (int k = 0; k < c; k++)
    switch (n->op)
      {
      case CLEAVE_OP_BATCHNORM2D:
        out[k] = param_at (g, n, CLEAVE_PARAM_WEIGHT, k) * (v[k] - param_at (g, n, CLEAVE_PARAM_RUNNING_MEAN, k))
                 / sqrtf (param_at (g, n, CLEAVE_PARAM_RUNNING_VAR, k) + n->eps) + param_at (g, n, CLEAVE_PARAM_BIAS, k);
        break;
      case CLEAVE_OP_RELU:        out[k] = MAX (v[k], 0.f); break;
      case CLEAVE_OP_SIGMOID:     out[k] = 1.f / (1.f + expf (-v[k])); break;
      case CLEAVE_OP_CLIP:        out[k] = CLAMP (n->alpha * v[k] + n->beta, n->clip_min, n->clip_max); break;
      case CLEAVE_OP_HARDSIGMOID: out[k] = CLAMP (n->alpha * v[k] + n->beta, 0.f, 1.f); break;
      default:                    out[k] = v[k]; break;   /* max pool, global pool, dropout */
      }
  return out;
}

/* What the dropped units of input @in, holding @v, add to each output of
 * conv or linear node @n (which reads all its input channels). */
static float *
fold_into_bias (const CleaveGraph *g, const CleaveNode *n, const Selection *sel, int in, const float *v)
{
  const CleaveParam *w = cleave_graph_param (g, n->param[CLEAVE_PARAM_WEIGHT]);
  int outs = w->shape[0], ins = w->shape[1];
  gsize per = cleave_param_numel (w) / ((gsize) outs * ins);
  g_autofree guint8 *kept = g_new0 (guint8, ins);
  float *add = g_new0 (float, outs);

  for (guint k = 0; k < sel->sel[in]->len; k++)
    kept[g_array_index (sel->sel[in], int, k)] = 1;
  for (int o = 0; o < outs; o++)
    for (int c = 0; c < ins; c++)
      if (!kept[c] && v[c] != 0.f)
        for (gsize j = 0; j < per; j++)
          add[o] += w->data[((gsize) o * ins + c) * per + j] * v[c];
  return add;
}

/* Dropped channels that hold a constant instead of zeros (a batchnorm
 * after a masked layer, as DenseNet's after each concatenation): their
 * constants are followed through per-channel layers and folded into the
 * bias of the conv (without padding) or linear layer that reads them; a
 * conv or linear reading dropped channels of unknown value is refused. */
static gboolean
fold_dropped_constants (const CleaveGraph *g, Selection *sel, GError **error)
{
  int n_nodes = cleave_graph_n_nodes (g);

  for (int i = 1; i < n_nodes; i++)
    {
      const CleaveNode *n = cleave_graph_node (g, i);
      int in = n->inputs[0], c = node_units (n);
      gboolean owned = FALSE;
      const float *v = NULL;
      float *out = NULL;

      if (n->op != CLEAVE_OP_CONCAT && sel->sel[in] == NULL)
        continue;
      if (n->op != CLEAVE_OP_CONCAT)
        v = dropped_values (g, sel, in, &owned);
      switch (n->op)
        {
        case CLEAVE_OP_BATCHNORM2D: case CLEAVE_OP_RELU: case CLEAVE_OP_SIGMOID: case CLEAVE_OP_CLIP:
        case CLEAVE_OP_HARDSIGMOID: case CLEAVE_OP_MAXPOOL2D: case CLEAVE_OP_GLOBAL_AVGPOOL: case CLEAVE_OP_DROPOUT:
          out = v ? map_constants (g, n, v, c) : NULL;
          break;
        case CLEAVE_OP_AVGPOOL2D:
          /* a constant stays one where no window counts padding */
          out = v && (n->pad == 0 || n->exclude_pad) ? map_constants (g, n, v, c) : NULL;
          break;
        case CLEAVE_OP_FLATTEN:
          if (v)
            {
              const CleaveNode *x = cleave_graph_node (g, in);
              int hw = x->out_ndim == 3 ? x->out_shape[1] * x->out_shape[2] : 1;
              out = g_new (float, MAX (1, c));
              for (int k = 0; k < c; k++)
                out[k] = v[k / hw];
            }
          break;
        case CLEAVE_OP_SLICE:
          out = v ? g_memdup2 (v + n->start, MAX (1, c) * sizeof (float)) : NULL;
          break;
        case CLEAVE_OP_CONCAT:
          {
            int offset = 0;
            out = g_new0 (float, MAX (1, c));
            for (int k = 0; k < n->n_inputs && out; k++)
              {
                int cx = node_units (cleave_graph_node (g, n->inputs[k]));
                gboolean own_k;
                const float *vk = dropped_values (g, sel, n->inputs[k], &own_k);
                if (vk)
                  memcpy (out + offset, vk, cx * sizeof (float));
                else
                  g_clear_pointer (&out, g_free);
                if (own_k)
                  g_free ((float *) vk);
                offset += cx;
              }
            break;
          }
        case CLEAVE_OP_CONV2D:
        case CLEAVE_OP_LINEAR:
          if (sel->zeroed[in] || is_depthwise (n))
            break;
          if (v == NULL)
            return unsupported (error, n, "reads channels that are dropped before their mask");
          if (n->op == CLEAVE_OP_CONV2D && n->pad > 0)
            return unsupported (error, n, "reads dropped channels holding a constant, which its zero padding does not");
          sel->bias_add[i] = fold_into_bias (g, n, sel, in, v);
          break;
        default:
          break;
        }
      if (owned)
        g_free ((float *) v);
      if (sel->sel[i] != NULL && !sel->zeroed[i])
        sel->cval[i] = out;
      else
        g_free (out);
    }
  return TRUE;
}

static void
add_param (CleaveGraph *dst, CleaveNode *node, CleaveParamSlot slot, const CleaveParam *src,
           int ndim, const int *shape, float *data)
{
  CleaveParam *p = g_new0 (CleaveParam, 1);
  p->name = g_strdup (src->name);
  p->ndim = ndim;
  memcpy (p->shape, shape, sizeof (int) * ndim);
  p->data = data;
  p->trainable = src->trainable;
  p->is_buffer = src->is_buffer;
  g_ptr_array_add (dst->params, p);
  node->param[slot] = (int) dst->params->len - 1;
}

/* Gathers a 1-d parameter at @s. */
static float *
slice_vector (const CleaveParam *p, const GArray *s, int *len)
{
  int n = sel_len (s, p->shape[0]);
  float *v = g_new (float, MAX (1, n));
  for (int i = 0; i < n; i++)
    v[i] = p->data[sel_at (s, i)];
  *len = n;
  return v;
}

static void
slice_node_params (const CleaveGraph *src, CleaveGraph *dst, const CleaveNode *sn, CleaveNode *dn,
                   const GArray *out_sel, const GArray *in_sel, const float *bias_add)
{
  /* the outputs a conv keeps (a linear keeps all) */
  const GArray *kept_out = sn->op == CLEAVE_OP_LINEAR ? NULL : out_sel;

  for (int slot = 0; slot < CLEAVE_N_PARAM_SLOTS; slot++)
    {
      const CleaveParam *p;
      int shape[4];
      float *data;

      if (sn->param[slot] < 0)
        continue;
      p = cleave_graph_param (src, sn->param[slot]);
      if (sn->op == CLEAVE_OP_CONV2D && slot == CLEAVE_PARAM_WEIGHT)
        {
          int co = sel_len (out_sel, p->shape[0]), ci = sel_len (in_sel, p->shape[1]);
          gsize kk = (gsize) p->shape[2] * p->shape[3];
          data = g_new (float, MAX (1, (gsize) co * ci * kk));
          for (int o = 0; o < co; o++)
            for (int i = 0; i < ci; i++)
              memcpy (data + ((gsize) o * ci + i) * kk,
                      p->data + ((gsize) sel_at (out_sel, o) * p->shape[1] + sel_at (in_sel, i)) * kk,
                      kk * sizeof (float));
          shape[0] = co;
          shape[1] = ci;
          shape[2] = p->shape[2];
          shape[3] = p->shape[3];
        }
      else if (sn->op == CLEAVE_OP_LINEAR && slot == CLEAVE_PARAM_WEIGHT)
        {
          int m = p->shape[0], f = sel_len (in_sel, p->shape[1]);
          data = g_new (float, MAX (1, (gsize) m * f));
          for (int o = 0; o < m; o++)
            for (int i = 0; i < f; i++)
              data[(gsize) o * f + i] = p->data[(gsize) o * p->shape[1] + sel_at (in_sel, i)];
          shape[0] = m;
          shape[1] = f;
        }
      else
        {
          data = slice_vector (p, kept_out, &shape[0]);
          if (slot == CLEAVE_PARAM_BIAS && bias_add)
            for (int o = 0; o < shape[0]; o++)
              data[o] += bias_add[sel_at (kept_out, o)];
        }
      add_param (dst, dn, slot, p, p->ndim, shape, data);
    }
  if (bias_add && sn->param[CLEAVE_PARAM_BIAS] < 0)
    {
      /* a bias made for the folded constants, trainable like the weight */
      const CleaveParam *w = cleave_graph_param (src, sn->param[CLEAVE_PARAM_WEIGHT]);
      CleaveParam *b = g_new0 (CleaveParam, 1);
      int n = 0;
      b->data = g_new (float, MAX (1, w->shape[0]));
      for (n = 0; n < sel_len (kept_out, w->shape[0]); n++)
        b->data[n] = bias_add[sel_at (kept_out, n)];
      b->name = g_strconcat (sn->name, ".bias", NULL);
      b->ndim = 1;
      b->shape[0] = n;
      b->trainable = w->trainable;
      g_ptr_array_add (dst->params, b);
      dn->param[CLEAVE_PARAM_BIAS] = (int) dst->params->len - 1;
      dn->has_bias = TRUE;
    }
}

static CleaveGraph *
build_extracted (const CleaveGraph *src, const Selection *sel, GError **error)
{
  CleaveGraph *dst = cleave_graph_new (src->in_c, src->in_h, src->in_w);

  for (int i = 1; i < cleave_graph_n_nodes (src); i++)
    {
      const CleaveNode *sn = cleave_graph_node (src, i);
      CleaveNode *dn = g_memdup2 (sn, sizeof (CleaveNode));
      const GArray *in_sel = sel->sel[sn->inputs[0]];

      dn->name = g_strdup (sn->name);
      for (int k = 0; k < CLEAVE_N_PARAM_SLOTS; k++)
        dn->param[k] = -1;
      /* Shape inference fills the input sizes again. */
      dn->in_channels = 0;
      dn->in_features = 0;
      if (sn->op == CLEAVE_OP_CONV2D)
        dn->out_channels = sel_len (sel->sel[i], sn->out_channels);
      if (is_depthwise (sn))
        {
          dn->groups = dn->out_channels;
          in_sel = NULL;   /* its weight's one input channel per kernel */
        }
      if (sn->op == CLEAVE_OP_SLICE && in_sel != NULL)
        {
          /* the kept channels below the slice come first in the smaller input */
          dn->start = 0;
          for (guint k = 0; k < in_sel->len; k++)
            dn->start += g_array_index (in_sel, int, k) < sn->start;
          dn->out_channels = sel_len (sel->sel[i], sn->out_channels);
        }
      cleave_graph_add_node (dst, dn);
      slice_node_params (src, dst, sn, dn, sel->sel[i], in_sel, sel->bias_add[i]);
    }
  if (!cleave_graph_finalize (dst, error))
    {
      cleave_graph_free (dst);
      return NULL;
    }
  return dst;
}

gboolean
cleave_module_check_extractable (const CleaveGraph *source, GError **error)
{
  int n = cleave_graph_n_mask_sites (source);
  guint8 **keep = g_new0 (guint8 *, MAX (1, n));
  CleaveModule *m;

  for (int s = 0; s < n; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (source, s);
      keep[s] = g_malloc (site->channels);
      memset (keep[s], 1, site->channels);
      keep[s][site->channels - 1] = site->channels == 1;
    }
  m = cleave_module_extract (source, 0, NULL, (const guint8 *const *) keep, NULL, error);
  gboolean ok = m != NULL;
  for (int s = 0; s < n; s++)
    g_free (keep[s]);
  g_free (keep);
  cleave_module_free (m);
  return ok;
}

CleaveModule *
cleave_module_extract (const CleaveGraph *source, int class_index, const char *class_name,
                       const guint8 *const *keep, const float *const *importance, GError **error)
{
  int n_sites = cleave_graph_n_mask_sites (source);
  int n_nodes = cleave_graph_n_nodes (source);
  g_autofree int *site_of_conv = g_new (int, n_nodes);
  g_autofree int *site_of_node = g_new (int, n_nodes);
  Selection sel = { g_new0 (GArray *, n_nodes), g_new0 (gboolean, n_nodes), g_new0 (float *, n_nodes),
                    g_new0 (float *, n_nodes) };
  CleaveModule *m = g_new0 (CleaveModule, 1);
  gboolean ok;

  m->class_index = class_index;
  m->class_name = g_strdup (class_name ? class_name : "");
  m->n_sites = n_sites;
  m->n_kept = g_new0 (int, MAX (1, n_sites));
  m->kept = g_new0 (int *, MAX (1, n_sites));
  m->n_logits = cleave_graph_n_outputs (source);
  m->val_precision = m->val_recall = m->val_f1 = m->val_accuracy = NAN;
  m->score_min = m->score_max = NAN;

  for (int i = 0; i < n_nodes; i++)
    site_of_conv[i] = site_of_node[i] = -1;
  for (int s = 0; s < n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (source, s);
      int root = site->tie, best = 0;
      site_of_conv[site->conv] = s;
      site_of_node[site->node] = s;
      m->kept[s] = g_new (int, site->channels);
      for (int k = 0; k < site->channels; k++)
        if (keep[root][k])
          m->kept[s][m->n_kept[s]++] = k;
      if (m->n_kept[s] == 0)
        {
          /* No layer may end empty: keep its most important kernel. */
          for (int k = 1; importance && importance[root] && k < site->channels; k++)
            if (importance[root][k] > importance[root][best])
              best = k;
          m->kept[s][m->n_kept[s]++] = best;
        }
    }

  ok = compute_selection (source, m->kept, m->n_kept, site_of_conv, site_of_node, &sel, error)
       && fold_dropped_constants (source, &sel, error);
  if (ok)
    ok = (m->graph = build_extracted (source, &sel, error)) != NULL;
  for (int i = 0; i < n_nodes; i++)
    {
      if (sel.sel[i])
        g_array_unref (sel.sel[i]);
      g_free (sel.cval[i]);
      g_free (sel.bias_add[i]);
    }
  g_free (sel.sel);
  g_free (sel.zeroed);
  g_free (sel.cval);
  g_free (sel.bias_add);
  if (!ok)
    {
      cleave_module_free (m);
      return NULL;
    }
  {
    int total = cleave_graph_total_kernels (source);
    m->krr = total > 0 ? (double) cleave_module_kept_total (m) / total : 0.0;
  }
  return m;
}

/* ---- counting ---- */

double
cleave_module_jaccard (const CleaveModule *a, const CleaveModule *b)
{
  guint64 inter = 0, uni = 0;
  int n = MIN (a->n_sites, b->n_sites);

  for (int s = 0; s < n; s++)
    {
      int i = 0, j = 0, both = 0;
      while (i < a->n_kept[s] && j < b->n_kept[s])
        {
          if (a->kept[s][i] == b->kept[s][j])
            both++, i++, j++;
          else if (a->kept[s][i] < b->kept[s][j])
            i++;
          else
            j++;
        }
      inter += both;
      uni += a->n_kept[s] + b->n_kept[s] - both;
    }
  return uni ? (double) inter / uni : 1.0;
}

guint64
cleave_module_params (const CleaveModule *m)
{
  guint64 n = cleave_graph_count_params (m->graph);
  if (m->has_head)
    n += (guint64) CLEAVE_HEAD_HIDDEN * m->n_logits + CLEAVE_HEAD_HIDDEN + CLEAVE_HEAD_HIDDEN + 1;
  return n;
}

guint64
cleave_module_flops (const CleaveModule *m)
{
  guint64 n = cleave_graph_count_flops (m->graph);
  if (m->has_head)
    n += 2 * ((guint64) CLEAVE_HEAD_HIDDEN * m->n_logits + CLEAVE_HEAD_HIDDEN);
  return n;
}

/* ---- scoring ---- */

float
cleave_module_head (const CleaveModule *module, const float *logits)
{
  int n = module->n_logits;
  double z = module->head_b2;

  if (!module->has_head)
    return logits[module->class_index];
  for (int j = 0; j < CLEAVE_HEAD_HIDDEN; j++)
    {
      double h = module->head_b1[j];
      for (int k = 0; k < n; k++)
        h += module->head_w1[j * n + k] * MAX (logits[k], 0.0f);
      z += module->head_w2[j] * MAX (h, 0.0);
    }
  return (float) (1.0 / (1.0 + exp (-z)));
}

/* Runs @net on @x in chunks; calls back with each chunk's logits. */
static gboolean
module_logits (const CleaveModule *module, CleaveNet *net, const float *x, int n,
               void (*each) (const CleaveModule *, const float *logits, int row, gpointer),
               gpointer user_data, GError **error)
{
  int c, h, w, n_out = module->n_logits;
  gsize img;
  g_autofree float *out = g_new (float, (gsize) EVAL_BATCH * n_out);

  cleave_graph_input_shape (module->graph, &c, &h, &w);
  img = (gsize) c * h * w;
  for (int start = 0; start < n; start += EVAL_BATCH)
    {
      int b = MIN (EVAL_BATCH, n - start);
      if (!cleave_net_infer (net, x + start * img, b, error) ||
          !cleave_net_download_output (net, out, error))
        return FALSE;
      for (int i = 0; i < b; i++)
        each (module, out + (gsize) i * n_out, start + i, user_data);
    }
  return TRUE;
}

static void
store_score (const CleaveModule *module, const float *logits, int row, gpointer user_data)
{
  ((float *) user_data)[row] = cleave_module_head (module, logits);
}

gboolean
cleave_module_scores (const CleaveModule *module, CleaveNet *net, const float *x, int n,
                      float *out, GError **error)
{
  if (cleave_net_graph (net) != module->graph)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "module for class %d: the net does not run this module's graph", module->class_index);
      return FALSE;
    }
  return module_logits (module, net, x, n, store_score, out, error);
}

/* Score and the module's own yes/no: a head says yes at 0.5, a bare network
 * when its own logit beats every other one. */
typedef struct {
  float *scores;
  guint8 *positive;
} ScoreSink;

static void
store_score_and_vote (const CleaveModule *module, const float *logits, int row, gpointer user_data)
{
  ScoreSink *sink = user_data;
  float score = cleave_module_head (module, logits);
  gboolean yes;

  if (module->has_head)
    yes = score >= 0.5f;
  else
    {
      yes = TRUE;
      for (int k = 0; k < module->n_logits; k++)
        if (k != module->class_index && logits[k] >= logits[module->class_index])
          yes = FALSE;
    }
  sink->scores[row] = score;
  sink->positive[row] = yes;
}

static void
module_metrics (CleaveModule *m, const float *scores, const guint8 *positive, const guint8 *labels, int n)
{
  int tp = 0, fp = 0, fn = 0, tn = 0;
  float lo = INFINITY, hi = -INFINITY;

  for (int i = 0; i < n; i++)
    {
      gboolean truth = labels[i] == m->class_index;
      if (truth)
        {
          lo = MIN (lo, scores[i]);
          hi = MAX (hi, scores[i]);
        }
      if (positive[i])
        truth ? tp++ : fp++;
      else
        truth ? fn++ : tn++;
    }
  m->val_precision = tp + fp ? (double) tp / (tp + fp) : 0.0;
  m->val_recall = tp + fn ? (double) tp / (tp + fn) : 0.0;
  m->val_f1 = m->val_precision + m->val_recall > 0
                ? 2 * m->val_precision * m->val_recall / (m->val_precision + m->val_recall) : 0.0;
  m->val_accuracy = n ? (double) (tp + tn) / n : NAN;
  m->score_min = tp + fn ? lo : NAN;
  m->score_max = tp + fn ? hi : NAN;
}

/* Runs every module over the images batch by batch (images are normalised
 * once per batch, not once per module); fills scores [module][image] and
 * positive votes [module][image]. */
static gboolean
run_modules (CleaveModuleSet *set, CleaveBackend *backend, const CleaveDataset *ds, const int *indices, int n,
             float *scores, guint8 *positive, guint8 *labels, GCancellable *cancellable, GError **error)
{
  int n_mod = (int) set->modules->len;
  gsize img = (gsize) ds->c * ds->h * ds->w;
  g_autofree float *x = g_new (float, EVAL_BATCH * img);
  g_autofree float *y = g_new (float, EVAL_BATCH);
  g_autofree int *idx = g_new (int, EVAL_BATCH);
  CleaveNet **nets = g_new0 (CleaveNet *, MAX (1, n_mod));
  gboolean ok = TRUE;

  for (int k = 0; k < n_mod && ok; k++)
    ok = (nets[k] = cleave_net_new (((CleaveModule *) set->modules->pdata[k])->graph, backend, error)) != NULL;
  for (int start = 0; start < n && ok; start += EVAL_BATCH)
    {
      int b = MIN (EVAL_BATCH, n - start);
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        {
          ok = FALSE;
          break;
        }
      for (int i = 0; i < b; i++)
        idx[i] = indices ? indices[start + i] : start + i;
      cleave_dataset_fill_batch (ds, idx, b, set->mean, set->std, NULL, NULL, x, y);
      for (int i = 0; i < b; i++)
        labels[start + i] = (guint8) y[i];
      for (int k = 0; k < n_mod && ok; k++)
        {
          ScoreSink sink = { scores + (gsize) k * n + start, positive + (gsize) k * n + start };
          ok = module_logits (set->modules->pdata[k], nets[k], x, b, store_score_and_vote, &sink, error);
        }
    }
  for (int k = 0; k < n_mod; k++)
    cleave_net_free (nets[k]);
  g_free (nets);
  return ok;
}

gboolean
cleave_module_set_evaluate (CleaveModuleSet *set, CleaveBackend *backend, const CleaveDataset *ds,
                            const int *indices, int n, float **scores_out,
                            GCancellable *cancellable, GError **error)
{
  int n_mod = (int) set->modules->len, correct = 0, counted = 0;
  g_autofree float *scores = NULL;   /* [module][image] */
  g_autofree guint8 *positive = NULL;
  g_autofree guint8 *labels = g_new (guint8, MAX (1, n));
  g_autofree gboolean *covered = g_new0 (gboolean, MAX (1, set->n_classes));

  if (ds->c != set->in_c || ds->h != set->in_h || ds->w != set->in_w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset images are %d×%d×%d, the modules take %d×%d×%d",
                   ds->c, ds->h, ds->w, set->in_c, set->in_h, set->in_w);
      return FALSE;
    }
  scores = g_new (float, MAX (1, (gsize) n_mod * n));
  positive = g_new (guint8, MAX (1, (gsize) n_mod * n));
  if (!run_modules (set, backend, ds, indices, n, scores, positive, labels, cancellable, error))
    return FALSE;
  for (int k = 0; k < n_mod; k++)
    {
      CleaveModule *m = set->modules->pdata[k];
      module_metrics (m, scores + (gsize) k * n, positive + (gsize) k * n, labels, n);
      if (m->class_index >= 0 && m->class_index < set->n_classes)
        covered[m->class_index] = TRUE;
    }
  /* Images of classes no module recognises cannot be right; they are left
   * out so a partial set measures what it covers. */
  for (int i = 0; i < n && n_mod > 0; i++)
    {
      int best = 0;
      if (labels[i] >= set->n_classes || !covered[labels[i]])
        continue;
      for (int k = 1; k < n_mod; k++)
        if (scores[(gsize) k * n + i] > scores[(gsize) best * n + i])
          best = k;
      counted++;
      correct += ((CleaveModule *) set->modules->pdata[best])->class_index == labels[i];
    }
  set->composed_accuracy = counted ? (double) correct / counted : NAN;
  if (scores_out)
    {
      float *t = g_new (float, MAX (1, (gsize) n * n_mod));
      for (int i = 0; i < n; i++)
        for (int k = 0; k < n_mod; k++)
          t[(gsize) i * n_mod + k] = scores[(gsize) k * n + i];
      *scores_out = t;
    }
  return TRUE;
}

/* ---- files ---- */

/* Embeds JSON text as a value; text that does not parse is kept as a string. */
static char *
set_metadata_json (const CleaveModuleSet *set)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  cleave_json_add_string (b, "method", set->method);
  json_builder_set_member_name (b, "source");
  json_builder_begin_object (b);
  cleave_json_add_string (b, "path", set->source_path);
  cleave_json_add_string (b, "sha256", set->source_sha256);
  json_builder_end_object (b);
  cleave_json_add_string (b, "dataset", set->dataset);
  json_builder_set_member_name (b, "input");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, set->in_c);
  json_builder_add_int_value (b, set->in_h);
  json_builder_add_int_value (b, set->in_w);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "normalize");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "mean");
  json_builder_begin_array (b);
  for (int c = 0; c < set->in_c && c < 4; c++)
    json_builder_add_double_value (b, set->mean[c]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "std");
  json_builder_begin_array (b);
  for (int c = 0; c < set->in_c && c < 4; c++)
    json_builder_add_double_value (b, set->std[c]);
  json_builder_end_array (b);
  json_builder_end_object (b);
  json_builder_set_member_name (b, "classes");
  json_builder_begin_array (b);
  for (int i = 0; i < set->n_classes; i++)
    json_builder_add_string_value (b, set->class_names[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "total_kernels");
  json_builder_add_int_value (b, set->total_kernels);
  json_builder_set_member_name (b, "sites");
  json_builder_begin_array (b);
  for (int s = 0; s < set->n_sites; s++)
    {
      json_builder_begin_object (b);
      cleave_json_add_string (b, "layer", set->site_names[s]);
      json_builder_set_member_name (b, "kernels");
      json_builder_add_int_value (b, set->site_channels[s]);
      json_builder_set_member_name (b, "tie");
      json_builder_add_int_value (b, set->site_tie[s]);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  cleave_json_add_number (b, "source_accuracy", set->source_accuracy);
  cleave_json_add_number (b, "composed_accuracy", set->composed_accuracy);
  json_builder_set_member_name (b, "log");
  if (set->log)
    cleave_split_log_build (set->log, b);
  else
    json_builder_add_null_value (b);
  cleave_json_add_json_text (b, "options", set->options_json);
  json_builder_set_member_name (b, "modules");
  json_builder_begin_array (b);
  for (guint k = 0; k < set->modules->len; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      g_autofree char *graph = cleave_graph_to_json (m->graph);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "class");
      json_builder_add_int_value (b, m->class_index);
      cleave_json_add_string (b, "name", m->class_name);
      json_builder_set_member_name (b, "head");
      json_builder_add_boolean_value (b, m->has_head);
      cleave_json_add_number (b, "krr", m->krr);
      cleave_json_add_number (b, "val_accuracy", m->val_accuracy);
      cleave_json_add_number (b, "val_precision", m->val_precision);
      cleave_json_add_number (b, "val_recall", m->val_recall);
      cleave_json_add_number (b, "val_f1", m->val_f1);
      json_builder_set_member_name (b, "score_range");
      json_builder_begin_array (b);
      isfinite (m->score_min) ? json_builder_add_double_value (b, m->score_min) : json_builder_add_null_value (b);
      isfinite (m->score_max) ? json_builder_add_double_value (b, m->score_max) : json_builder_add_null_value (b);
      json_builder_end_array (b);
      cleave_json_add_json_text (b, "graph", graph);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

CleaveSafetensors *
cleave_module_set_to_safetensors (const CleaveModuleSet *set, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_new ();
  g_autofree char *meta = NULL;

  if (set->site_channels == NULL || set->site_names == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "module set has no source layer list (make it with cleave_module_set_new)");
      return NULL;
    }
  for (guint k = 0; k < set->modules->len; k++)
    {
      const CleaveModule *m = set->modules->pdata[k];
      if (m->n_sites != set->n_sites)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "module %u has %d masked layers, the set's source has %d", k, m->n_sites, set->n_sites);
          return NULL;
        }
      if (m->has_head && (m->head_w1 == NULL || m->head_b1 == NULL || m->head_w2 == NULL))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "module %u says it has a head but holds no head weights", k);
          return NULL;
        }
      /* Named after the layer as the architecture JSON names them on
       * loading (for preset and PyTorch graphs, the source's names). */
      for (int i = 1; i < cleave_graph_n_nodes (m->graph); i++)
        {
          static const char *const suffix[CLEAVE_N_PARAM_SLOTS] = { "weight", "bias", "running_mean", "running_var" };
          const CleaveNode *n = cleave_graph_node (m->graph, i);
          for (int slot = 0; slot < CLEAVE_N_PARAM_SLOTS; slot++)
            if (n->param[slot] >= 0)
              {
                CleaveParam *p = cleave_graph_param (m->graph, n->param[slot]);
                g_autofree char *name = g_strdup_printf ("module.%u.%s.%s", k, n->name, suffix[slot]);
                cleave_safetensors_add_f32 (st, name, p->ndim, p->shape, p->data);
              }
        }
      for (int s = 0; s < m->n_sites; s++)
        {
          g_autofree char *name = g_strdup_printf ("module.%u.kept.%d", k, s);
          cleave_safetensors_add_i32 (st, name, 1, &m->n_kept[s], m->kept[s]);
        }
      if (m->has_head)
        {
          g_autofree char *w1 = g_strdup_printf ("module.%u.head.w1", k);
          g_autofree char *b1 = g_strdup_printf ("module.%u.head.b1", k);
          g_autofree char *w2 = g_strdup_printf ("module.%u.head.w2", k);
          g_autofree char *b2 = g_strdup_printf ("module.%u.head.b2", k);
          int s_w1[2] = { CLEAVE_HEAD_HIDDEN, m->n_logits }, s_b1[1] = { CLEAVE_HEAD_HIDDEN };
          int s_w2[2] = { 1, CLEAVE_HEAD_HIDDEN }, s_b2[1] = { 1 };
          cleave_safetensors_add_f32 (st, w1, 2, s_w1, m->head_w1);
          cleave_safetensors_add_f32 (st, b1, 1, s_b1, m->head_b1);
          cleave_safetensors_add_f32 (st, w2, 2, s_w2, m->head_w2);
          cleave_safetensors_add_f32 (st, b2, 1, s_b2, &m->head_b2);
        }
    }
  meta = set_metadata_json (set);
  cleave_safetensors_set_metadata (st, "cleave.format", MODULES_FORMAT);
  cleave_safetensors_set_metadata (st, "cleave.modules", meta);
  return g_steal_pointer (&st);
}

gboolean
cleave_module_set_save (const CleaveModuleSet *set, const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_module_set_to_safetensors (set, error);
  return st && cleave_safetensors_save (st, path, error);
}

/* -- the validating reader -- */

typedef struct {
  const char *path;
  GError **error;
} Reader;

static gboolean
rfail (Reader *r, const char *field, const char *fmt, ...) G_GNUC_PRINTF (3, 4);

static gboolean
rfail (Reader *r, const char *field, const char *fmt, ...);

/* "log": absent or null, the array, or (older files) the array as text. */
static gboolean
read_log (Reader *r, JsonObject *o, CleaveSplitLog **out)
{
  JsonNode *n = json_object_get_member (o, "log");
  g_autoptr(GError) local = NULL;

  *out = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    *out = cleave_split_log_from_json (json_node_get_string (n), &local);
  else
    *out = cleave_split_log_from_node (n, &local);
  if (*out == NULL)
    return rfail (r, "log", "%s", local->message);
  return TRUE;
}

static gboolean
rfail (Reader *r, const char *field, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  g_autofree char *base = g_path_get_basename (r->path);
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (r->error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s: %s", base, field, msg);
  return FALSE;
}

static gboolean
read_int (Reader *r, JsonObject *o, const char *key, const char *where, gint64 lo, gint64 hi, int *out)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autofree char *field = g_strdup_printf ("%s%s", where, key);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return rfail (r, field, "missing or not an integer");
  if (json_node_get_int (n) < lo || json_node_get_int (n) > hi)
    return rfail (r, field, "%" G_GINT64_FORMAT " is outside [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                  json_node_get_int (n), lo, hi);
  *out = (int) json_node_get_int (n);
  return TRUE;
}

static gboolean
is_number (JsonNode *n)
{
  GType t;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return FALSE;
  t = json_node_get_value_type (n);
  return t == G_TYPE_INT64 || t == G_TYPE_DOUBLE;
}

/* A number, or null/absent for "not measured" (NAN). */
static gboolean
read_number (Reader *r, JsonObject *o, const char *key, const char *where, double lo, double hi, double *out)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autofree char *field = g_strdup_printf ("%s%s", where, key);
  *out = NAN;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return TRUE;
  if (!is_number (n))
    return rfail (r, field, "is not a number");
  *out = json_node_get_double (n);
  if (!(*out >= lo && *out <= hi))
    return rfail (r, field, "%g is outside [%g, %g]", *out, lo, hi);
  return TRUE;
}

/* A string or null; @required refuses null. */
static gboolean
read_string (Reader *r, JsonObject *o, const char *key, const char *where, gboolean required, char **out)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autofree char *field = g_strdup_printf ("%s%s", where, key);
  *out = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return required ? rfail (r, field, "missing") : TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return rfail (r, field, "is not a string");
  *out = g_strdup (json_node_get_string (n));
  return TRUE;
}

static JsonArray *
read_array (Reader *r, JsonObject *o, const char *key, const char *where, int want_len)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autofree char *field = g_strdup_printf ("%s%s", where, key);
  if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n))
    {
      rfail (r, field, "missing or not a list");
      return NULL;
    }
  if (want_len >= 0 && (int) json_array_get_length (json_node_get_array (n)) != want_len)
    {
      rfail (r, field, "lists %u entries, expected %d", json_array_get_length (json_node_get_array (n)), want_len);
      return NULL;
    }
  return json_node_get_array (n);
}

static char *
json_text (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  g_autoptr(JsonGenerator) gen = NULL;
  if (n == NULL || JSON_NODE_HOLDS_NULL (n))
    return NULL;
  if (JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
    return g_strdup (json_node_get_string (n));
  gen = json_generator_new ();
  json_generator_set_root (gen, n);
  return json_generator_to_data (gen, NULL);
}

static gboolean
read_set_fields (Reader *r, JsonObject *o, CleaveModuleSet *set)
{
  JsonArray *a;
  JsonNode *src = json_object_get_member (o, "source");
  JsonNode *norm = json_object_get_member (o, "normalize");
  gint64 total = 0;

  if (!read_string (r, o, "method", "", TRUE, &set->method) ||
      !read_string (r, o, "dataset", "", FALSE, &set->dataset))
    return FALSE;
  if (src == NULL || !JSON_NODE_HOLDS_OBJECT (src))
    return rfail (r, "source", "missing or not an object");
  if (!read_string (r, json_node_get_object (src), "path", "source.", FALSE, &set->source_path) ||
      !read_string (r, json_node_get_object (src), "sha256", "source.", FALSE, &set->source_sha256))
    return FALSE;
  if (set->source_sha256 && (strlen (set->source_sha256) != 64 ||
                             strspn (set->source_sha256, "0123456789abcdef") != 64))
    return rfail (r, "source.sha256", "is not 64 lowercase hex digits");
  if ((a = read_array (r, o, "input", "", 3)) == NULL)
    return FALSE;
  {
    int dims[3];
    for (int k = 0; k < 3; k++)
      {
        JsonNode *e = json_array_get_element (a, k);
        gint64 v = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_INT64 ? json_node_get_int (e) : -1;
        if (v < 1 || v > (k == 0 ? 4 : 4096))
          return rfail (r, "input", "entry %d is not a valid size", k);
        dims[k] = (int) v;
      }
    set->in_c = dims[0];
    set->in_h = dims[1];
    set->in_w = dims[2];
  }
  if (norm == NULL || !JSON_NODE_HOLDS_OBJECT (norm))
    return rfail (r, "normalize", "missing or not an object");
  for (int k = 0; k < 2; k++)
    {
      const char *key = k ? "std" : "mean";
      g_autofree char *where = g_strdup_printf ("normalize.%s", key);
      JsonArray *v = read_array (r, json_node_get_object (norm), key, "normalize.", set->in_c);
      if (v == NULL)
        return FALSE;
      for (int c = 0; c < set->in_c; c++)
        {
          JsonNode *e = json_array_get_element (v, c);
          float x = cleave_json_float (e);
          if (!isfinite (x) || (k == 1 && !(x >= FLT_MIN)))
            return rfail (r, where, "entry %d is not a %s number", c, k ? "positive, normal float" : "finite float");
          (k ? set->std : set->mean)[c] = x;
        }
    }
  if ((a = read_array (r, o, "classes", "", -1)) == NULL)
    return FALSE;
  set->n_classes = (int) json_array_get_length (a);
  if (set->n_classes < 1)
    return rfail (r, "classes", "is empty");
  set->class_names = g_new0 (char *, set->n_classes + 1);
  for (int i = 0; i < set->n_classes; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        return rfail (r, "classes", "entry %d is not a string", i);
      set->class_names[i] = g_strdup (json_node_get_string (e));
    }
  if ((a = read_array (r, o, "sites", "", -1)) == NULL)
    return FALSE;
  set->n_sites = (int) json_array_get_length (a);
  set->site_channels = g_new0 (int, MAX (1, set->n_sites));
  set->site_tie = g_new0 (int, MAX (1, set->n_sites));
  set->site_names = g_new0 (char *, set->n_sites + 1);
  for (int s = 0; s < set->n_sites; s++)
    {
      JsonNode *e = json_array_get_element (a, s);
      g_autofree char *where = g_strdup_printf ("sites[%d].", s);
      if (!JSON_NODE_HOLDS_OBJECT (e))
        return rfail (r, "sites", "entry %d is not an object", s);
      if (!read_string (r, json_node_get_object (e), "layer", where, TRUE, &set->site_names[s]) ||
          !read_int (r, json_node_get_object (e), "kernels", where, 1, 1 << 20, &set->site_channels[s]) ||
          !read_int (r, json_node_get_object (e), "tie", where, 0, s, &set->site_tie[s]))
        return FALSE;
      if (set->site_tie[s] != s && (set->site_tie[set->site_tie[s]] != set->site_tie[s] ||
                                    set->site_channels[set->site_tie[s]] != set->site_channels[s]))
        return rfail (r, where, "tie %d is not the first site of a group with the same kernels", set->site_tie[s]);
      total += set->site_channels[s];
    }
  if (total > CLEAVE_GRAPH_MAX_TOTAL_NUMEL)
    return rfail (r, "sites", "the sites add up to %" G_GINT64_FORMAT " kernels, more than %" G_GINT64_FORMAT,
                  total, CLEAVE_GRAPH_MAX_TOTAL_NUMEL);
  if (!read_int (r, o, "total_kernels", "", 0, G_MAXINT, &set->total_kernels))
    return FALSE;
  if (set->total_kernels != total)
    return rfail (r, "total_kernels", "is %d, the sites add up to %" G_GINT64_FORMAT, set->total_kernels, total);
  if (!read_number (r, o, "source_accuracy", "", 0, 1, &set->source_accuracy) ||
      !read_number (r, o, "composed_accuracy", "", 0, 1, &set->composed_accuracy))
    return FALSE;
  if (!read_log (r, o, &set->log))
    return FALSE;
  set->options_json = json_text (o, "options");
  return TRUE;
}

static const CleaveSafeTensor *
find_tensor (Reader *r, const CleaveSafetensors *st, GHashTable *used, const char *name,
             const char *dtype, int ndim, const int *shape)
{
  const CleaveSafeTensor *t = cleave_safetensors_find (st, name);
  g_autofree char *field = g_strdup_printf ("tensor '%s'", name);
  gboolean ok;

  if (t == NULL)
    {
      rfail (r, field, "missing");
      return NULL;
    }
  if (dtype && !g_str_equal (t->dtype, dtype))
    {
      rfail (r, field, "has dtype %s, expected %s", t->dtype, dtype);
      return NULL;
    }
  ok = t->ndim == ndim;
  for (int k = 0; ok && k < ndim; k++)
    ok = t->shape[k] == shape[k];
  if (!ok)
    {
      rfail (r, field, "has the wrong shape for the module's graph");
      return NULL;
    }
  g_hash_table_add (used, (gpointer) t);
  return t;
}

static float *
read_f32 (Reader *r, const CleaveSafetensors *st, GHashTable *used, const char *name, int ndim, const int *shape)
{
  const CleaveSafeTensor *t = find_tensor (r, st, used, name, NULL, ndim, shape);
  gsize numel = 1;
  for (int k = 0; k < ndim; k++)
    numel *= shape[k];
  float *v = t ? cleave_safe_tensor_to_f32 (t, numel, r->path, r->error) : NULL;
  for (gsize i = 0; v && i < numel; i++)
    if (!isfinite (v[i]))
      {
        g_autofree char *field = g_strdup_printf ("tensor '%s'", name);
        rfail (r, field, "value %" G_GSIZE_FORMAT " is %g, not finite", i, v[i]);
        g_free (v);
        return NULL;
      }
  return v;
}

static gboolean
read_kept (Reader *r, const CleaveSafetensors *st, GHashTable *used, const CleaveModuleSet *set,
           CleaveModule *m, int k)
{
  for (int s = 0; s < set->n_sites; s++)
    {
      g_autofree char *name = g_strdup_printf ("module.%d.kept.%d", k, s);
      const CleaveSafeTensor *t;
      g_autofree gint32 *v = NULL;
      int n = cleave_graph_mask_site (m->graph, s)->channels;

      if ((t = find_tensor (r, st, used, name, "I32", 1, &n)) == NULL ||
          (v = cleave_safe_tensor_to_i32 (t, r->path, r->error)) == NULL)
        return FALSE;
      for (int i = 0; i < n; i++)
        {
          g_autofree char *field = g_strdup_printf ("tensor '%s'", name);
          if (v[i] < 0 || v[i] >= set->site_channels[s])
            return rfail (r, field, "kernel index %d is outside layer '%s' (%d kernels)",
                          v[i], set->site_names[s], set->site_channels[s]);
          if (i > 0 && v[i] <= v[i - 1])
            return rfail (r, field, "kernel indices are not strictly increasing");
        }
      m->n_kept[s] = n;
      m->kept[s] = (int *) g_steal_pointer (&v);
      if (set->site_tie[s] != s)
        {
          int root = set->site_tie[s];
          if (m->n_kept[root] != n || memcmp (m->kept[root], m->kept[s], n * sizeof (int)) != 0)
            {
              g_autofree char *field = g_strdup_printf ("tensor '%s'", name);
              return rfail (r, field, "differs from its tied layer '%s'", set->site_names[root]);
            }
        }
    }
  return TRUE;
}

static CleaveModule *
read_module (Reader *r, const CleaveSafetensors *st, GHashTable *used, const CleaveModuleSet *set,
             JsonNode *node, int k)
{
  g_autofree char *where = g_strdup_printf ("modules[%d].", k);
  g_autofree char *graph_field = g_strdup_printf ("modules[%d].graph", k);
  g_autofree char *graph_json = NULL;
  g_autoptr(GError) local = NULL;
  CleaveModule *m = g_new0 (CleaveModule, 1);
  JsonObject *o;
  JsonArray *range;
  int c, h, w;
  double lo, hi;

  m->n_sites = set->n_sites;
  m->n_kept = g_new0 (int, MAX (1, set->n_sites));
  m->kept = g_new0 (int *, MAX (1, set->n_sites));
  if (!JSON_NODE_HOLDS_OBJECT (node))
    {
      rfail (r, "modules", "entry %d is not an object", k);
      goto fail;
    }
  o = json_node_get_object (node);
  if (!read_int (r, o, "class", where, 0, set->n_classes - 1, &m->class_index) ||
      !read_string (r, o, "name", where, FALSE, &m->class_name) ||
      !read_number (r, o, "val_accuracy", where, 0, 1, &m->val_accuracy) ||
      !read_number (r, o, "val_precision", where, 0, 1, &m->val_precision) ||
      !read_number (r, o, "val_recall", where, 0, 1, &m->val_recall) ||
      !read_number (r, o, "val_f1", where, 0, 1, &m->val_f1) ||
      (range = read_array (r, o, "score_range", where, 2)) == NULL)
    goto fail;
  if (m->class_name == NULL)
    m->class_name = g_strdup (set->class_names[m->class_index]);
  {
    JsonNode *e0 = json_array_get_element (range, 0), *e1 = json_array_get_element (range, 1);
    lo = cleave_json_float (e0);   /* as floats: they are stored as floats */
    hi = cleave_json_float (e1);
    if ((!JSON_NODE_HOLDS_NULL (e0) && !isfinite (lo)) || (!JSON_NODE_HOLDS_NULL (e1) && !isfinite (hi)) ||
        (isfinite (lo) && isfinite (hi) && lo > hi))
      {
        g_autofree char *field = g_strdup_printf ("%sscore_range", where);
        rfail (r, field, "must be [min, max] numbers (or nulls)");
        goto fail;
      }
    m->score_min = (float) lo;
    m->score_max = (float) hi;
  }
  {
    JsonNode *hn = json_object_get_member (o, "head");
    if (hn == NULL || !JSON_NODE_HOLDS_VALUE (hn) || json_node_get_value_type (hn) != G_TYPE_BOOLEAN)
      {
        g_autofree char *field = g_strdup_printf ("%shead", where);
        rfail (r, field, "missing or not true/false");
        goto fail;
      }
    m->has_head = json_node_get_boolean (hn);
  }
  graph_json = json_text (o, "graph");
  if (graph_json == NULL)
    {
      rfail (r, graph_field, "missing");
      goto fail;
    }
  m->graph = cleave_graph_from_json_shapes (graph_json, &local);
  if (m->graph == NULL)
    {
      rfail (r, graph_field, "%s", local->message);
      goto fail;
    }
  cleave_graph_input_shape (m->graph, &c, &h, &w);
  if (c != set->in_c || h != set->in_h || w != set->in_w)
    {
      rfail (r, graph_field, "takes %d×%d×%d inputs, the set says %d×%d×%d", c, h, w, set->in_c, set->in_h, set->in_w);
      goto fail;
    }
  m->n_logits = cleave_graph_n_outputs (m->graph);
  if (m->n_logits != set->n_classes)
    {
      rfail (r, graph_field, "has %d outputs, the source has %d classes", m->n_logits, set->n_classes);
      goto fail;
    }
  if (cleave_graph_n_mask_sites (m->graph) != set->n_sites)
    {
      rfail (r, graph_field, "has %d conv layers, the source has %d", cleave_graph_n_mask_sites (m->graph), set->n_sites);
      goto fail;
    }
  for (int s = 0; s < set->n_sites; s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (m->graph, s);
      const char *name = cleave_graph_node (m->graph, site->conv)->name;
      if (g_strcmp0 (name, set->site_names[s]) != 0 || site->channels > set->site_channels[s])
        {
          rfail (r, graph_field, "conv layer %d ('%s', %d kernels) does not match the source's '%s' (%d kernels)",
                 s, name, site->channels, set->site_names[s], set->site_channels[s]);
          goto fail;
        }
    }
  for (int i = 0; i < cleave_graph_n_params (m->graph); i++)
    {
      CleaveParam *p = cleave_graph_param (m->graph, i);
      g_autofree char *name = g_strdup_printf ("module.%d.%s", k, p->name);
      float *data = read_f32 (r, st, used, name, p->ndim, p->shape);
      if (data == NULL)
        goto fail;
      g_free (p->data);
      p->data = data;
    }
  {
    g_autofree char *base = g_path_get_basename (r->path);
    g_autofree char *where = g_strdup_printf ("%s: module %d", base, k);
    if (!cleave_graph_check_values (m->graph, where, r->error))
      goto fail;
  }
  if (!read_kept (r, st, used, set, m, k))
    goto fail;
  if (m->has_head)
    {
      g_autofree char *w1 = g_strdup_printf ("module.%d.head.w1", k);
      g_autofree char *b1 = g_strdup_printf ("module.%d.head.b1", k);
      g_autofree char *w2 = g_strdup_printf ("module.%d.head.w2", k);
      g_autofree char *b2 = g_strdup_printf ("module.%d.head.b2", k);
      int s_w1[2] = { CLEAVE_HEAD_HIDDEN, m->n_logits }, s_b1[1] = { CLEAVE_HEAD_HIDDEN };
      int s_w2[2] = { 1, CLEAVE_HEAD_HIDDEN }, s_b2[1] = { 1 };
      g_autofree float *bias2 = NULL;
      if ((m->head_w1 = read_f32 (r, st, used, w1, 2, s_w1)) == NULL ||
          (m->head_b1 = read_f32 (r, st, used, b1, 1, s_b1)) == NULL ||
          (m->head_w2 = read_f32 (r, st, used, w2, 2, s_w2)) == NULL ||
          (bias2 = read_f32 (r, st, used, b2, 1, s_b2)) == NULL)
        goto fail;
      m->head_b2 = bias2[0];
    }
  m->krr = set->total_kernels > 0 ? (double) cleave_module_kept_total (m) / set->total_kernels : 0.0;
  return m;

fail:
  cleave_module_free (m);
  return NULL;
}

CleaveModuleSet *
cleave_module_set_load (const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (path, error);
  return st ? cleave_module_set_from_safetensors (st, path, error) : NULL;
}

CleaveModuleSet *
cleave_module_set_from_safetensors (const CleaveSafetensors *st, const char *path, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GHashTable) used = g_hash_table_new (NULL, NULL);
  g_autoptr(GError) local = NULL;
  g_autoptr(CleaveModuleSet) set = NULL;
  Reader r = { path, error };
  const char *format, *meta;
  JsonNode *root;
  JsonArray *mods;

  format = cleave_safetensors_get_metadata (st, "cleave.format");
  if (format == NULL || !g_str_equal (format, MODULES_FORMAT))
    {
      rfail (&r, "cleave.format", "'%s' is not a module-set file (expected %s)", format ? format : "(missing)", MODULES_FORMAT);
      return NULL;
    }
  meta = cleave_safetensors_get_metadata (st, "cleave.modules");
  if (meta == NULL)
    {
      rfail (&r, "cleave.modules", "missing from __metadata__");
      return NULL;
    }
  if (!json_parser_load_from_data (parser, meta, -1, &local))
    {
      rfail (&r, "cleave.modules", "invalid JSON: %s", local->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      rfail (&r, "cleave.modules", "must be a JSON object");
      return NULL;
    }
  set = module_set_alloc ();
  if (!read_set_fields (&r, json_node_get_object (root), set))
    return NULL;
  if ((mods = read_array (&r, json_node_get_object (root), "modules", "", -1)) == NULL)
    return NULL;
  for (guint k = 0; k < json_array_get_length (mods); k++)
    {
      CleaveModule *m = read_module (&r, st, used, set, json_array_get_element (mods, k), (int) k);
      if (m == NULL)
        return NULL;
      g_ptr_array_add (set->modules, m);
    }
  for (guint i = 0; i < st->tensors->len; i++)
    if (!g_hash_table_contains (used, st->tensors->pdata[i]))
      {
        g_autofree char *field = g_strdup_printf ("tensor '%s'", ((CleaveSafeTensor *) st->tensors->pdata[i])->name);
        rfail (&r, field, "belongs to no module");
        return NULL;
      }
  return g_steal_pointer (&set);
}
