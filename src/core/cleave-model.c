/* cleave-model.c: model files (.safetensors with Cleave metadata), and
 * weights-only state_dicts (safetensors or PyTorch checkpoints) opened with an
 * architecture. */
#include "cleave-model.h"
#include "cleave-arch.h"
#include "cleave-pth.h"
#include "cleave-safetensors.h"
#include "cleave-graph-private.h"
#include "cleave-error.h"
#include "cleave-util-private.h"

#include <json-glib/json-glib.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define MODEL_FORMAT "cleave-model/1"

CleaveModel *
cleave_model_new (CleaveGraph *graph, int n_classes, const char *const *class_names)
{
  CleaveModel *m = g_new0 (CleaveModel, 1);
  m->graph = graph;
  m->n_classes = n_classes;
  m->class_names = g_new0 (char *, n_classes + 1);
  for (int i = 0; i < n_classes; i++)
    m->class_names[i] = class_names && class_names[i] ? g_strdup (class_names[i]) : g_strdup_printf ("%d", i);
  cleave_graph_input_shape (graph, &m->n_channels, NULL, NULL);
  for (int c = 0; c < 4; c++)
    {
      m->mean[c] = 0.0f;
      m->std[c] = 1.0f;
    }
  return m;
}

void
cleave_model_free (CleaveModel *m)
{
  if (m == NULL)
    return;
  cleave_graph_free (m->graph);
  g_strfreev (m->class_names);
  g_free (m->dataset);
  g_free (m->provenance_json);
  g_free (m->path);
  g_free (m->sha256);
  g_free (m);
}

void
cleave_model_set_norm_from_dataset (CleaveModel *m, const CleaveDataset *ds, const int *idx, int n)
{
  cleave_dataset_compute_norm (ds, idx, n, m->mean, m->std);
}

void
cleave_model_set_provenance (CleaveModel *m, const char *key, const char *json_value)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  g_autoptr(JsonParser) v = json_parser_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  JsonObject *obj;

  if (m->provenance_json == NULL || !json_parser_load_from_data (p, m->provenance_json, -1, NULL) ||
      !cleave_json_root (p, JSON_NODE_OBJECT))
    json_parser_load_from_data (p, "{}", -1, NULL);
  obj = json_node_get_object (json_parser_get_root (p));
  if (json_value == NULL)
    json_object_remove_member (obj, key);
  else if (json_parser_load_from_data (v, json_value, -1, NULL) && json_parser_get_root (v))
    json_object_set_member (obj, key, json_node_copy (json_parser_get_root (v)));
  else
    json_object_set_string_member (obj, key, json_value);
  json_generator_set_root (gen, json_parser_get_root (p));
  g_free (m->provenance_json);
  m->provenance_json = json_generator_to_data (gen, NULL);
}

static char *
floats_json (const float *v, int n)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < n; i++)
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      g_string_append (s, i ? ", " : "");
      g_string_append (s, g_ascii_dtostr (buf, sizeof buf, v[i]));
    }
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

CleaveSafetensors *
cleave_model_to_safetensors (const CleaveModel *m)
{
  g_autoptr(CleaveSafetensors) st = cleave_safetensors_new ();
  g_autofree char *graph = cleave_graph_to_json (m->graph);
  g_autofree char *input = NULL, *mean = NULL, *std = NULL, *norm = NULL;
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) classes = NULL;
  g_autofree char *classes_json = NULL;
  int c, h, w;

  cleave_graph_input_shape (m->graph, &c, &h, &w);
  for (int i = 0; i < cleave_graph_n_params (m->graph); i++)
    {
      CleaveParam *p = cleave_graph_param (m->graph, i);
      cleave_safetensors_add_f32 (st, p->name, p->ndim, p->shape, p->data);
    }
  input = g_strdup_printf ("[%d, %d, %d]", c, h, w);
  mean = floats_json (m->mean, c);
  std = floats_json (m->std, c);
  norm = g_strdup_printf ("{\"mean\": %s, \"std\": %s}", mean, std);
  json_builder_begin_array (b);
  for (int i = 0; i < m->n_classes; i++)
    json_builder_add_string_value (b, m->class_names[i]);
  json_builder_end_array (b);
  classes = json_builder_get_root (b);
  json_generator_set_root (gen, classes);
  classes_json = json_generator_to_data (gen, NULL);

  cleave_safetensors_set_metadata (st, "cleave.format", MODEL_FORMAT);
  cleave_safetensors_set_metadata (st, "cleave.graph", graph);
  cleave_safetensors_set_metadata (st, "cleave.input", input);
  cleave_safetensors_set_metadata (st, "cleave.normalize", norm);
  cleave_safetensors_set_metadata (st, "cleave.classes", classes_json);
  if (m->dataset)
    cleave_safetensors_set_metadata (st, "cleave.dataset", m->dataset);
  if (m->provenance_json)
    cleave_safetensors_set_metadata (st, "cleave.provenance", m->provenance_json);
  return g_steal_pointer (&st);
}

gboolean
cleave_model_save (CleaveModel *m, const char *path, GError **error)
{
  g_autoptr(CleaveSafetensors) st = cleave_model_to_safetensors (m);
  return cleave_safetensors_save (st, path, error);
}

static gboolean
file_fail (GError **error, const char *path, const char *field, const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
file_fail (GError **error, const char *path, const char *field, const char *fmt, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;
  g_autofree char *base = g_path_get_basename (path);
  va_start (ap, fmt);
  msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s: %s", base, field, msg);
  return FALSE;
}

/* Fills the graph's parameters from the file's tensors by name. Every
 * parameter must be present with its shape; unknown tensors are refused
 * (except PyTorch's num_batches_tracked), so a wrong architecture is caught. */
static gboolean
load_params (CleaveGraph *g, const CleaveSafetensors *st, const char *path, GError **error)
{
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    {
      CleaveParam *p = cleave_graph_param (g, i);
      const CleaveSafeTensor *t = cleave_safetensors_find (st, p->name);
      g_autofree char *field = g_strdup_printf ("tensor '%s'", p->name);
      float *data;
      gboolean shape_ok;

      if (t == NULL)
        return file_fail (error, path, field, "missing (the architecture needs it)");
      shape_ok = t->ndim == p->ndim;
      for (int k = 0; shape_ok && k < p->ndim; k++)
        shape_ok = t->shape[k] == p->shape[k];
      if (!shape_ok)
        {
          GString *want = g_string_new ("[");
          GString *got = g_string_new ("[");
          for (int k = 0; k < p->ndim; k++)
            g_string_append_printf (want, k ? ", %d" : "%d", p->shape[k]);
          for (int k = 0; k < t->ndim; k++)
            g_string_append_printf (got, k ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, t->shape[k]);
          g_string_append_c (want, ']');
          g_string_append_c (got, ']');
          file_fail (error, path, field, "has shape %s, the architecture needs %s", got->str, want->str);
          g_string_free (want, TRUE);
          g_string_free (got, TRUE);
          return FALSE;
        }
      data = cleave_safe_tensor_to_f32 (t, cleave_param_numel (p), path, error);
      if (data == NULL)
        return FALSE;
      g_free (p->data);
      p->data = data;
    }
  for (guint i = 0; i < st->tensors->len; i++)
    {
      const CleaveSafeTensor *t = st->tensors->pdata[i];
      if (g_str_has_suffix (t->name, "num_batches_tracked"))
        continue;
      if (cleave_graph_find_param (g, t->name) < 0)
        {
          g_autofree char *field = g_strdup_printf ("tensor '%s'", t->name);
          return file_fail (error, path, field, "is not a parameter of the architecture");
        }
    }
  {
    g_autofree char *base = g_path_get_basename (path);
    return cleave_graph_check_values (g, base, error);
  }
}

static JsonNode *
parse_meta (const CleaveSafetensors *st, const char *key, const char *path, gboolean required, GError **error)
{
  const char *text = cleave_safetensors_get_metadata (st, key);
  g_autoptr(JsonParser) p = json_parser_new ();
  g_autoptr(GError) local = NULL;
  if (text == NULL)
    {
      if (required)
        file_fail (error, path, key, "missing from __metadata__");
      return NULL;
    }
  if (!json_parser_load_from_data (p, text, -1, &local))
    {
      file_fail (error, path, key, "invalid JSON: %s", local->message);
      return NULL;
    }
  if (json_parser_get_root (p) == NULL)
    {
      file_fail (error, path, key, "is empty");
      return NULL;
    }
  return json_node_copy (json_parser_get_root (p));
}

static char *
file_sha256 (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;
  if (!g_file_get_contents (path, &data, &len, NULL))
    return NULL;
  return g_compute_checksum_for_data (G_CHECKSUM_SHA256, (const guchar *) data, len);
}

/* Plausible input normalisation for pixels scaled to [0, 1]. */
#define NORM_MAX 1000.0
#define NORM_MIN_STD 1e-6

static gboolean
read_norm (CleaveModel *m, const CleaveSafetensors *st, const char *path, GError **error)
{
  g_autoptr(JsonNode) norm = parse_meta (st, "cleave.normalize", path, FALSE, error);
  const char *keys[2] = { "mean", "std" };
  float *dst[2] = { m->mean, m->std };

  if (norm == NULL)
    return error == NULL || *error == NULL;
  if (!JSON_NODE_HOLDS_OBJECT (norm))
    return file_fail (error, path, "cleave.normalize", "must be an object {\"mean\": [...], \"std\": [...]}");
  for (int k = 0; k < 2; k++)
    {
      JsonNode *a = json_object_get_member (json_node_get_object (norm), keys[k]);
      if (a == NULL || !JSON_NODE_HOLDS_ARRAY (a) ||
          (int) json_array_get_length (json_node_get_array (a)) != m->n_channels)
        return file_fail (error, path, "cleave.normalize", "'%s' must list %d numbers", keys[k], m->n_channels);
      for (int c = 0; c < m->n_channels; c++)
        {
          JsonNode *e = json_array_get_element (json_node_get_array (a), c);
          float v = cleave_json_float (e);
          if (!isfinite (v) || (k == 1 && !(v >= FLT_MIN)))
            return file_fail (error, path, "cleave.normalize", "'%s'[%d] is not a %s number", keys[k], c,
                              k == 1 ? "positive, normal float" : "finite float");
          /* Pixels enter scaled to [0, 1]: a mean or spread far outside that
           * scale normalises nothing and is a damaged file. */
          if (k == 0 ? fabsf (v) > NORM_MAX : (v < NORM_MIN_STD || v > NORM_MAX))
            return file_fail (error, path, "cleave.normalize", "'%s'[%d] = %g is outside [%g, %g] (pixels are "
                              "scaled to [0, 1])", keys[k], c, v, k == 0 ? -NORM_MAX : NORM_MIN_STD, NORM_MAX);
          dst[k][c] = v;
        }
    }
  return TRUE;
}

static gboolean
read_classes (CleaveModel *m, const CleaveSafetensors *st, const char *path, GError **error)
{
  g_autoptr(JsonNode) classes = parse_meta (st, "cleave.classes", path, FALSE, error);
  int n_out = cleave_graph_n_outputs (m->graph);
  JsonArray *a;

  if (classes == NULL)
    return error == NULL || *error == NULL;
  if (!JSON_NODE_HOLDS_ARRAY (classes))
    return file_fail (error, path, "cleave.classes", "must be a list of names");
  a = json_node_get_array (classes);
  if ((int) json_array_get_length (a) != n_out)
    return file_fail (error, path, "cleave.classes", "lists %u names, the model has %d outputs",
                      json_array_get_length (a), n_out);
  for (int i = 0; i < n_out; i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_STRING)
        return file_fail (error, path, "cleave.classes", "entry %d is not a string", i);
      g_free (m->class_names[i]);
      m->class_names[i] = g_strdup (json_node_get_string (e));
    }
  return TRUE;
}

/* The tensors of a weights file, chosen by content: a PyTorch checkpoint
 * (torch.save's zip or legacy format, see cleave-pth.h) or a safetensors
 * file. *@is_pth tells which. */
static CleaveSafetensors *
load_tensors (const char *path, gboolean *is_pth, GError **error)
{
  g_autoptr(GError) local = NULL;
  GMappedFile *map = g_mapped_file_new (path, FALSE, &local);
  const guint8 *data;
  gsize size;
  CleaveSafetensors *st;

  if (map == NULL)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s", local->message);
      return NULL;
    }
  data = (const guint8 *) g_mapped_file_get_contents (map);
  size = g_mapped_file_get_length (map);
  *is_pth = cleave_pth_detect (data, size);
  st = *is_pth ? cleave_pth_load_bytes (data, size, path, error) : cleave_safetensors_load_bytes (data, size, path, error);
  g_mapped_file_unref (map);
  return st;
}

CleaveModel *
cleave_model_from_safetensors (const CleaveSafetensors *st, const char *path, GError **error)
{
  const char *format, *graph_json;
  g_autoptr(GError) local = NULL;
  CleaveGraph *g;
  CleaveModel *m;

  format = cleave_safetensors_get_metadata (st, "cleave.format");
  graph_json = cleave_safetensors_get_metadata (st, "cleave.graph");
  if (graph_json == NULL)
    {
      file_fail (error, path, "__metadata__ 'cleave.graph'",
                 "missing: this is not a Cleave model (for a PyTorch state_dict, name its architecture with --arch)");
      return NULL;
    }
  if (format && !g_str_equal (format, MODEL_FORMAT))
    {
      file_fail (error, path, "cleave.format", "'%s' is not a model file (expected %s)", format, MODEL_FORMAT);
      return NULL;
    }
  g = cleave_graph_from_json_shapes (graph_json, &local);
  if (g == NULL)
    {
      file_fail (error, path, "cleave.graph", "%s", local->message);
      return NULL;
    }
  if (!load_params (g, st, path, error))
    {
      cleave_graph_free (g);
      return NULL;
    }
  m = cleave_model_new (g, cleave_graph_n_outputs (g), NULL);
  if (!read_classes (m, st, path, error) || !read_norm (m, st, path, error))
    {
      cleave_model_free (m);
      return NULL;
    }
  m->dataset = g_strdup (cleave_safetensors_get_metadata (st, "cleave.dataset"));
  m->provenance_json = g_strdup (cleave_safetensors_get_metadata (st, "cleave.provenance"));
  return m;
}

CleaveModel *
cleave_model_load (const char *path, GError **error)
{
  gboolean is_pth = FALSE;
  g_autoptr(CleaveSafetensors) st = load_tensors (path, &is_pth, error);
  CleaveModel *m;

  if (st == NULL)
    return NULL;
  if (is_pth)
    {
      file_fail (error, path, "format", "a PyTorch checkpoint holds weights only: name its architecture with "
                 "--arch (a preset such as simcnn, or a JSON architecture file)");
      return NULL;
    }
  m = cleave_model_from_safetensors (st, path, error);

  if (m)
    {
      m->path = g_strdup (path);
      m->sha256 = file_sha256 (path);
    }
  return m;
}

/* A preset, or an architecture JSON file (docs/ARCHITECTURE-JSON.md: a spec
 * ending in ".json"), which sets the input shape and the number of classes
 * itself. */
static CleaveGraph *
build_arch (const char *spec, int in_c, int in_h, int in_w, int n_classes, GError **error)
{
  g_autofree char *text = NULL, *lower = g_ascii_strdown (spec, -1);
  g_autoptr(GError) local = NULL;
  CleaveGraph *g;

  if (!g_str_has_suffix (lower, ".json"))
    return cleave_arch_build (spec, in_c, in_h, in_w, n_classes, error);
  if (!g_file_get_contents (spec, &text, NULL, error))
    return NULL;
  g = cleave_graph_from_json (text, &local);
  if (g == NULL)
    file_fail (error, spec, "architecture", "%s", local->message);
  return g;
}

/* CNNSplitter's SimCNN and ResCNN differ from GradSplitter's (cleave-arch.h):
 * a simcnn or rescnn preset given without "ref=" opens a state_dict with
 * CNNSplitter's names (conv_0.weight, classifier.2.weight) as CNNSplitter's
 * variant. Returns the spec to build. */
static char *
reference_variant (const char *spec, const CleaveSafetensors *st)
{
  g_autofree char *lower = g_ascii_strdown (spec, -1);
  if (strstr (lower, "ref=") != NULL || !(g_str_has_prefix (lower, "simcnn") || g_str_has_prefix (lower, "rescnn")))
    return g_strdup (spec);
  if (cleave_safetensors_find (st, "conv_0.weight") || cleave_safetensors_find (st, "classifier.2.weight"))
    return g_strdup_printf ("%s%sref=cnnsplitter", spec, strchr (spec, ':') ? "," : ":");
  return g_strdup (spec);
}

CleaveModel *
cleave_model_load_with_arch (const char *path, const char *arch_spec, int in_c, int in_h, int in_w,
                             int n_classes, GError **error)
{
  gboolean is_pth = FALSE;
  g_autoptr(CleaveSafetensors) st = load_tensors (path, &is_pth, error);
  g_autofree char *spec = NULL;
  CleaveGraph *g;
  CleaveModel *m;

  if (st == NULL)
    return NULL;
  spec = reference_variant (arch_spec, st);
  g = build_arch (spec, in_c, in_h, in_w, n_classes, error);
  if (g == NULL)
    return NULL;
  n_classes = cleave_graph_n_outputs (g);
  if (!load_params (g, st, path, error))
    {
      cleave_graph_free (g);
      return NULL;
    }
  m = cleave_model_new (g, n_classes, NULL);
  m->path = g_strdup (path);
  m->sha256 = file_sha256 (path);
  return m;
}

CleaveModel *
cleave_model_copy (const CleaveModel *src)
{
  CleaveModel *m;

  g_return_val_if_fail (src != NULL, NULL);
  m = cleave_model_new (cleave_graph_copy (src->graph), src->n_classes, (const char *const *) src->class_names);
  m->n_channels = src->n_channels;
  memcpy (m->mean, src->mean, sizeof m->mean);
  memcpy (m->std, src->std, sizeof m->std);
  m->dataset = g_strdup (src->dataset);
  m->provenance_json = g_strdup (src->provenance_json);
  m->path = g_strdup (src->path);
  m->sha256 = g_strdup (src->sha256);
  return m;
}

void
cleave_model_name_classes_from_dataset (CleaveModel *m, const CleaveDataset *ds)
{
  for (int k = 0; k < m->n_classes; k++)
    {
      g_autofree char *index = g_strdup_printf ("%d", k);
      if (!g_str_equal (m->class_names[k], index))
        return;
    }
  for (int k = 0; k < m->n_classes && k < ds->n_classes && ds->class_names && ds->class_names[k]; k++)
    {
      g_free (m->class_names[k]);
      m->class_names[k] = g_strdup (ds->class_names[k]);
    }
}
