/* cleave-report.c: module-set reports (JSON and charts). */
#include "cleave-report.h"
#include "cleave-util-private.h"
#include "cleave-chart.h"
#include "cleave-error.h"
#include "cleave-file.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

static CleaveModule *
module_at (const CleaveModuleSet *set, int k)
{
  return set->modules->pdata[k];
}

/* KRR of one module in one layer. */
static double
layer_krr (const CleaveModuleSet *set, const CleaveModule *m, int s)
{
  return set->site_channels[s] > 0 ? (double) m->n_kept[s] / set->site_channels[s] : NAN;
}

char *
cleave_report_module_set_json (const CleaveModuleSet *set)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  int n_mod = (int) set->modules->len;
  guint64 params = 0, flops = 0;
  int kept = 0;

  json_builder_begin_object (b);
  cleave_json_add_string (b, "method", set->method);
  json_builder_set_member_name (b, "source");
  json_builder_begin_object (b);
  cleave_json_add_string (b, "path", set->source_path);
  cleave_json_add_string (b, "sha256", set->source_sha256);
  json_builder_end_object (b);
  cleave_json_add_string (b, "dataset", set->dataset);
  cleave_json_add_string (b, "split", "validation");
  json_builder_set_member_name (b, "classes");
  json_builder_begin_array (b);
  for (int i = 0; i < set->n_classes; i++)
    json_builder_add_string_value (b, set->class_names[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "total_kernels");
  json_builder_add_int_value (b, set->total_kernels);
  cleave_json_add_number (b, "source_accuracy", set->source_accuracy);
  cleave_json_add_number (b, "composed_accuracy", set->composed_accuracy);
  cleave_json_add_number (b, "accuracy_loss_points", 100.0 * (set->source_accuracy - set->composed_accuracy));
  cleave_json_add_number (b, "mean_krr", cleave_module_set_mean_krr (set));

  json_builder_set_member_name (b, "modules");
  json_builder_begin_array (b);
  for (int k = 0; k < n_mod; k++)
    {
      const CleaveModule *m = module_at (set, k);
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "class");
      json_builder_add_int_value (b, m->class_index);
      cleave_json_add_string (b, "name", m->class_name);
      json_builder_set_member_name (b, "head");
      json_builder_add_boolean_value (b, m->has_head);
      cleave_json_add_number (b, "krr", m->krr);
      json_builder_set_member_name (b, "kept_kernels");
      json_builder_add_int_value (b, cleave_module_kept_total (m));
      json_builder_set_member_name (b, "params");
      json_builder_add_int_value (b, (gint64) cleave_module_params (m));
      json_builder_set_member_name (b, "flops");
      json_builder_add_int_value (b, (gint64) cleave_module_flops (m));
      cleave_json_add_number (b, "val_accuracy", m->val_accuracy);
      cleave_json_add_number (b, "val_precision", m->val_precision);
      cleave_json_add_number (b, "val_recall", m->val_recall);
      cleave_json_add_number (b, "val_f1", m->val_f1);
      cleave_json_add_number (b, "score_min", m->score_min);
      cleave_json_add_number (b, "score_max", m->score_max);
      json_builder_end_object (b);
      params += cleave_module_params (m);
      flops += cleave_module_flops (m);
      kept += cleave_module_kept_total (m);
    }
  json_builder_end_array (b);

  /* Reused together, modules share nothing (docs/ALGORITHMS.md, Metrics). */
  json_builder_set_member_name (b, "composition");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "kept_kernels");
  json_builder_add_int_value (b, kept);
  cleave_json_add_number (b, "krr", set->total_kernels ? (double) kept / set->total_kernels : NAN);
  json_builder_set_member_name (b, "params");
  json_builder_add_int_value (b, (gint64) params);
  json_builder_set_member_name (b, "flops");
  json_builder_add_int_value (b, (gint64) flops);
  json_builder_end_object (b);

  json_builder_set_member_name (b, "layers");
  json_builder_begin_array (b);
  for (int s = 0; s < set->n_sites; s++)
    {
      json_builder_begin_object (b);
      cleave_json_add_string (b, "layer", set->site_names[s]);
      json_builder_set_member_name (b, "kernels");
      json_builder_add_int_value (b, set->site_channels[s]);
      cleave_json_add_string (b, "tied_to", set->site_tie[s] != s ? set->site_names[set->site_tie[s]] : NULL);
      json_builder_set_member_name (b, "krr");
      json_builder_begin_array (b);
      for (int k = 0; k < n_mod; k++)
        json_builder_add_double_value (b, layer_krr (set, module_at (set, k), s));
      json_builder_end_array (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);

  json_builder_set_member_name (b, "jaccard");
  json_builder_begin_array (b);
  for (int i = 0; i < n_mod; i++)
    {
      json_builder_begin_array (b);
      for (int j = 0; j < n_mod; j++)
        json_builder_add_double_value (b, cleave_module_jaccard (module_at (set, i), module_at (set, j)));
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  cleave_json_add_json_text (b, "options", set->options_json);
  cleave_json_add_json_text (b, "log", set->log_json);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

/* ---- charts ---- */

static gboolean
save_both (CleaveChartKind kind, gconstpointer chart, int width, int height, const char *dir,
           const char *stem, GError **error)
{
  g_autofree char *png_name = g_strconcat (stem, ".png", NULL);
  g_autofree char *svg_name = g_strconcat (stem, ".svg", NULL);
  g_autofree char *png = g_build_filename (dir, png_name, NULL);
  g_autofree char *svg = g_build_filename (dir, svg_name, NULL);
  return cleave_chart_save (kind, chart, NULL, width, height, CLEAVE_CHART_FORMAT_PNG, png, error) &&
         cleave_chart_save (kind, chart, NULL, width, height, CLEAVE_CHART_FORMAT_SVG, svg, error);
}

/* Layer names become file names: keep them readable, drop separators. */
static char *
file_stem (const char *prefix, const char *name)
{
  char *s = g_strconcat (prefix, name, NULL);
  for (char *p = s + strlen (prefix); *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '.' && *p != '-' && *p != '_')
      *p = '_';
  return s;
}

static char **
module_labels (const CleaveModuleSet *set)
{
  int n = (int) set->modules->len;
  char **labels = g_new0 (char *, n + 1);
  for (int k = 0; k < n; k++)
    {
      const CleaveModule *m = module_at (set, k);
      labels[k] = g_strdup (m->class_name && *m->class_name ? m->class_name : set->class_names[m->class_index]);
    }
  return labels;
}

static gboolean
write_layer_masks (const CleaveModuleSet *set, const char *dir, const char *const *labels, GError **error)
{
  int n_mod = (int) set->modules->len;
  g_autofree int *classes = g_new0 (int, MAX (1, n_mod));

  for (int k = 0; k < n_mod; k++)
    classes[k] = module_at (set, k)->class_index;
  for (int s = 0; s < set->n_sites; s++)
    {
      int ch = set->site_channels[s];
      g_autofree guint8 *kept = g_new0 (guint8, (gsize) MAX (1, n_mod) * ch);
      g_autofree char *stem = file_stem ("masks-", set->site_names[s]);
      g_autofree char *title = NULL;
      CleaveMaskMatrix chart = { 0 };
      int width = CLAMP (160 + ch * 10, 480, 2400), height = CLAMP (90 + n_mod * 24, 160, 1600);

      for (int k = 0; k < n_mod; k++)
        {
          const CleaveModule *m = module_at (set, k);
          for (int i = 0; i < m->n_kept[s]; i++)
            kept[(gsize) k * ch + m->kept[s][i]] = 1;
        }
      if (set->site_tie[s] != s)
        title = g_strdup_printf ("%s (%d kernels, tied to %s)", set->site_names[s], ch, set->site_names[set->site_tie[s]]);
      else
        title = g_strdup_printf ("%s (%d kernels)", set->site_names[s], ch);
      chart.title = title;
      chart.n_modules = n_mod;
      chart.n_kernels = ch;
      chart.kept = kept;
      chart.module_class = classes;
      chart.module_labels = labels;
      if (!save_both (CLEAVE_CHART_MASK_MATRIX, &chart, width, height, dir, stem, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
write_module_bars (const CleaveModuleSet *set, const char *dir, const char *const *labels, GError **error)
{
  int n_mod = (int) set->modules->len;
  static const char *const series[3] = { "KRR", "accuracy", "F1" };
  g_autofree double *values = g_new0 (double, MAX (1, n_mod) * 3);
  CleaveBarChart chart = { 0 };

  for (int k = 0; k < n_mod; k++)
    {
      const CleaveModule *m = module_at (set, k);
      values[k * 3 + 0] = m->krr;
      values[k * 3 + 1] = isfinite (m->val_accuracy) ? m->val_accuracy : 0.0;
      values[k * 3 + 2] = isfinite (m->val_f1) ? m->val_f1 : 0.0;
    }
  chart.title = "Modules: kernel retention, validation accuracy and F1";
  chart.categories = labels;
  chart.n_categories = n_mod;
  chart.series_names = series;
  chart.n_series = 3;
  chart.values = values;
  chart.y_max = 1.0;
  return save_both (CLEAVE_CHART_BARS, &chart, CLAMP (200 + n_mod * 70, 640, 2400), 420, dir, "modules", error);
}

static gboolean
write_heat_maps (const CleaveModuleSet *set, const char *dir, const char *const *labels, GError **error)
{
  int n_mod = (int) set->modules->len;
  g_autofree double *krr = g_new0 (double, (gsize) MAX (1, set->n_sites) * MAX (1, n_mod));
  g_autofree double *jac = g_new0 (double, (gsize) MAX (1, n_mod) * MAX (1, n_mod));
  CleaveHeatMap layers = { 0 }, overlap = { 0 };
  int side = CLAMP (160 + n_mod * 48, 420, 2000);

  for (int s = 0; s < set->n_sites; s++)
    for (int k = 0; k < n_mod; k++)
      krr[s * n_mod + k] = layer_krr (set, module_at (set, k), s);
  for (int i = 0; i < n_mod; i++)
    for (int j = 0; j < n_mod; j++)
      jac[i * n_mod + j] = cleave_module_jaccard (module_at (set, i), module_at (set, j));

  layers.title = "Kernel retention per layer";
  layers.row_title = "layer";
  layers.col_title = "module";
  layers.row_labels = (const char *const *) set->site_names;
  layers.n_rows = set->n_sites;
  layers.col_labels = labels;
  layers.n_cols = n_mod;
  layers.values = krr;
  layers.v_max = 1.0;
  layers.value_format = "%.2f";
  if (!save_both (CLEAVE_CHART_HEAT_MAP, &layers, side, CLAMP (120 + set->n_sites * 40, 300, 2000), dir,
                  "layer-krr", error))
    return FALSE;

  overlap.title = "Module overlap (Jaccard of kept kernels)";
  overlap.row_labels = labels;
  overlap.n_rows = n_mod;
  overlap.col_labels = labels;
  overlap.n_cols = n_mod;
  overlap.values = jac;
  overlap.v_max = 1.0;
  overlap.value_format = "%.2f";
  return save_both (CLEAVE_CHART_HEAT_MAP, &overlap, side, side, dir, "jaccard", error);
}

/* The epoch (or generation) number of a log entry; 0 when it has none. */
static int
log_entry_epoch (JsonNode *e)
{
  JsonObject *o;
  JsonNode *n;
  gint64 epoch;
  if (!JSON_NODE_HOLDS_OBJECT (e))
    return 0;
  o = json_node_get_object (e);
  n = json_object_get_member (o, json_object_has_member (o, "epoch") ? "epoch" : "generation");
  epoch = n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_INT64 ? json_node_get_int (n) : 0;
  return epoch >= 1 && epoch <= 100000 ? (int) epoch : 0;
}

/* A log value; the splitters write -1 (or null) for "not measured this
 * epoch", which the charts show as a gap. */
static double
log_value (JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member (o, key);
  double v;
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) ||
      (json_node_get_value_type (n) != G_TYPE_DOUBLE && json_node_get_value_type (n) != G_TYPE_INT64))
    return NAN;
  v = json_node_get_double (n);
  return v >= 0 ? v : NAN;
}

/* Reads the log's per-epoch (or per-generation) entries into two series
 * indexed by epoch − 1 (gaps stay NAN); FALSE when the log has none. */
static gboolean
read_log (const char *log_json, double **acc, double **krr, int *n)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  JsonArray *a;
  int max_epoch = 0;

  *acc = *krr = NULL;
  *n = 0;
  if (log_json == NULL || !json_parser_load_from_data (p, log_json, -1, NULL) ||
      !cleave_json_root (p, JSON_NODE_ARRAY))
    return FALSE;
  a = json_node_get_array (json_parser_get_root (p));
  for (guint i = 0; i < json_array_get_length (a); i++)
    max_epoch = MAX (max_epoch, log_entry_epoch (json_array_get_element (a, i)));
  if (max_epoch == 0)
    return FALSE;
  *n = max_epoch;
  *acc = g_new (double, max_epoch);
  *krr = g_new (double, max_epoch);
  for (int k = 0; k < max_epoch; k++)
    (*acc)[k] = (*krr)[k] = NAN;
  for (guint i = 0; i < json_array_get_length (a); i++)
    {
      JsonNode *e = json_array_get_element (a, i);
      int epoch = log_entry_epoch (e);
      if (epoch == 0)
        continue;
      (*acc)[epoch - 1] = log_value (json_node_get_object (e), "val_accuracy");
      (*krr)[epoch - 1] = log_value (json_node_get_object (e), "mean_krr");
    }
  return TRUE;
}

static gboolean
write_epoch_charts (const CleaveModuleSet *set, const char *dir, gboolean *written, GError **error)
{
  g_autofree double *acc = NULL, *krr = NULL, *source = NULL;
  int n;
  CleaveChartSeries acc_series[2], krr_series[1];
  CleaveLineChart acc_chart = { 0 }, krr_chart = { 0 };
  const char *x_label = set->method && g_str_equal (set->method, "ga") ? "generation" : "epoch";

  *written = FALSE;
  if (!read_log (set->log_json, &acc, &krr, &n))
    return TRUE;
  source = g_new (double, n);
  for (int i = 0; i < n; i++)
    source[i] = set->source_accuracy;
  acc_series[0] = (CleaveChartSeries) { "composed modules", acc, n };
  acc_series[1] = (CleaveChartSeries) { "source model", source, n };
  acc_chart.title = "Validation accuracy";
  acc_chart.x_label = x_label;
  acc_chart.y_label = "accuracy";
  acc_chart.series = acc_series;
  acc_chart.n_series = isfinite (set->source_accuracy) ? 2 : 1;
  krr_series[0] = (CleaveChartSeries) { "mean KRR", krr, n };
  krr_chart.title = "Mean kernel retention";
  krr_chart.x_label = x_label;
  krr_chart.y_label = "KRR";
  krr_chart.y_min = 0.0;
  krr_chart.y_max = 1.0;
  krr_chart.series = krr_series;
  krr_chart.n_series = 1;
  if (!save_both (CLEAVE_CHART_LINE, &acc_chart, 720, 420, dir, "accuracy-per-epoch", error) ||
      !save_both (CLEAVE_CHART_LINE, &krr_chart, 720, 420, dir, "krr-per-epoch", error))
    return FALSE;
  *written = TRUE;
  return TRUE;
}

static gboolean
write_report (const CleaveModuleSet *set, const char *dir, GError **error)
{
  g_auto(GStrv) labels = NULL;
  g_autofree char *json = NULL;
  g_autofree char *json_path = NULL;
  gboolean epochs;

  labels = module_labels (set);
  if (!write_layer_masks (set, dir, (const char *const *) labels, error) ||
      !write_module_bars (set, dir, (const char *const *) labels, error) ||
      !write_heat_maps (set, dir, (const char *const *) labels, error) ||
      !write_epoch_charts (set, dir, &epochs, error))
    return FALSE;
  json = cleave_report_module_set_json (set);
  json_path = g_build_filename (dir, "report.json", NULL);
  return cleave_file_replace (json_path, json, strlen (json), 0666, error);
}

/* Removes @dir and the files in it (a report folder holds no subfolders). */
static void
remove_flat_dir (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *p = g_build_filename (dir, name, NULL);
      g_unlink (p);
    }
  g_rmdir (dir);
}

/* Moves every file of @from into @to (renames within one file system). */
static gboolean
move_files (const char *from, const char *to, GError **error)
{
  g_autoptr(GDir) d = g_dir_open (from, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *a = g_build_filename (from, name, NULL), *b = g_build_filename (to, name, NULL);
      if (g_rename (a, b) != 0)
        {
          int e = errno;
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: cannot move into place: %s", b, g_strerror (e));
          return FALSE;
        }
    }
  return TRUE;
}

/* The report is written into DIR.partial and only then moved into place: a
 * failure (a full disk) leaves no report folder, or an existing one as it
 * was, not half a report. */
gboolean
cleave_report_write_module_set (const CleaveModuleSet *set, const char *dir, GError **error)
{
  g_autofree char *partial = g_strconcat (dir, ".partial", NULL);
  gboolean ok;

  if (set->modules->len == 0)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "the module set holds no modules");
      return FALSE;
    }
  remove_flat_dir (partial);
  if (g_mkdir_with_parents (partial, 0755) != 0)
    {
      int e = errno;
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "cannot create report folder '%s': %s", partial, g_strerror (e));
      return FALSE;
    }
  ok = write_report (set, partial, error);
  if (ok && g_file_test (dir, G_FILE_TEST_IS_DIR))
    ok = move_files (partial, dir, error);
  else if (ok && g_rename (partial, dir) != 0)
    {
      int e = errno;
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "cannot create report folder '%s': %s", dir, g_strerror (e));
      ok = FALSE;
    }
  remove_flat_dir (partial);
  return ok;
}
