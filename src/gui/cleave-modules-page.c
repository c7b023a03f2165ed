/* cleave-modules-page.c: mask view, per-module bars, overlap matrix, module
 * table, and module-set files. The sets belong to the workspace; this page
 * shows one of them and reads it only on the main thread. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-modules-page.h"
#include "cleave-chart-view.h"
#include "cleave-gui-util.h"
#include "cleave-workspace.h"

struct _CleaveModulesPage
{
  AdwBin parent_instance;

  GtkDropDown *set_dropdown;
  GtkWidget *open_button;
  GtkWidget *save_button;
  GtkStack *stack;
  GtkLabel *summary_label;
  GtkDropDown *layer_dropdown;
  CleaveChartView *mask_view;
  CleaveChartView *module_chart;
  CleaveChartView *overlap_chart;
  GtkGrid *module_grid;

  CleaveWorkspace *workspace;
  CleaveOpenSet *item;         /* the shown set */
  CleaveModuleSet *set;        /* its module set */
  gboolean updating;
  GtkFileChooserNative *chooser;
  GCancellable *open_cancellable;
};

enum {
  SIGNAL_OPENED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

enum {
  PROP_0,
  PROP_WORKSPACE,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (CleaveModulesPage, cleave_modules_page, ADW_TYPE_BIN)

static GPtrArray *
class_labels (const CleaveModuleSet *set)
{
  GPtrArray *labels = g_ptr_array_new_with_free_func (g_free);

  for (guint k = 0; k < set->modules->len; k++)
    {
      const CleaveModule *m = g_ptr_array_index (set->modules, k);

      g_ptr_array_add (labels, m->class_name ? g_strdup (m->class_name) : g_strdup_printf ("%d", m->class_index));
    }
  g_ptr_array_add (labels, NULL);
  return labels;
}

/* ---- charts and table ----------------------------------------------------- */

static void
show_masks (CleaveModulesPage *self, int site)
{
  const CleaveModuleSet *set = self->set;
  int n_mod, n_kernels;
  g_autofree guint8 *kept = NULL;
  g_autofree int *classes = NULL;
  g_autoptr(GPtrArray) labels = NULL;

  if (!set || site < 0 || site >= set->n_sites || set->modules->len == 0)
    {
      cleave_chart_view_set_chart (self->mask_view, CLEAVE_CHART_MASK_MATRIX, NULL);
      return;
    }
  n_mod = (int) set->modules->len;
  n_kernels = set->site_channels[site];
  kept = g_new0 (guint8, (gsize) n_mod * n_kernels);
  classes = g_new (int, n_mod);
  labels = class_labels (set);
  for (int k = 0; k < n_mod; k++)
    {
      const CleaveModule *m = g_ptr_array_index (set->modules, k);

      classes[k] = m->class_index;
      for (int i = 0; site < m->n_sites && i < m->n_kept[site]; i++)
        if (m->kept[site][i] >= 0 && m->kept[site][i] < n_kernels)
          kept[(gsize) k * n_kernels + m->kept[site][i]] = 1;
    }
  {
    CleaveMaskMatrix chart = {
      .title = set->site_names[site],
      .n_modules = n_mod,
      .n_kernels = n_kernels,
      .kept = kept,
      .module_class = classes,
      .module_labels = (const char *const *) labels->pdata,
    };
    cleave_chart_view_set_chart (self->mask_view, CLEAVE_CHART_MASK_MATRIX, &chart);
  }
}

static void
show_module_charts (CleaveModulesPage *self)
{
  const CleaveModuleSet *set = self->set;
  int n = (int) set->modules->len;
  const char *const series[] = { _("KRR (share of conv kernels kept)"), _("accuracy"), _("F1"), NULL };
  g_autofree double *bars = g_new (double, (gsize) MAX (n, 1) * 3);
  g_autofree double *overlap = g_new (double, (gsize) MAX (n, 1) * MAX (n, 1));
  g_autoptr(GPtrArray) labels = class_labels (set);

  for (int k = 0; k < n; k++)
    {
      const CleaveModule *m = g_ptr_array_index (set->modules, k);

      bars[k * 3 + 0] = m->krr;
      bars[k * 3 + 1] = m->val_accuracy;
      bars[k * 3 + 2] = m->val_f1;
      for (int j = 0; j < n; j++)
        overlap[k * n + j] = cleave_module_jaccard (m, g_ptr_array_index (set->modules, j));
    }
  {
    CleaveBarChart chart = {
      .title = _("Modules: kernel retention and validation accuracy"),
      .categories = (const char *const *) labels->pdata,
      .n_categories = n,
      .series_names = series,
      .n_series = 3,
      .values = bars,
      .y_max = 1.0,
    };
    cleave_chart_view_set_chart (self->module_chart, CLEAVE_CHART_BARS, &chart);
  }
  {
    CleaveHeatMap chart = {
      .title = _("Kernel overlap (Jaccard)"),
      .row_labels = (const char *const *) labels->pdata,
      .n_rows = n,
      .col_labels = (const char *const *) labels->pdata,
      .n_cols = n,
      .values = overlap,
      .v_max = 1.0,
      .value_format = n <= 12 ? "%.2f" : NULL,
    };
    cleave_chart_view_set_chart (self->overlap_chart, CLEAVE_CHART_HEAT_MAP, &chart);
  }
}

static char *
percent (double v)
{
  return isfinite (v) ? g_strdup_printf ("%.1f %%", 100 * v) : g_strdup ("—");
}

static void
fill_table (CleaveModulesPage *self)
{
  const char *const headers[] = { _("Class"), _("KRR"), _("Kept kernels"), _("Parameters"), _("FLOPs"),
                                  _("Accuracy"), _("Precision"), _("Recall"), _("F1") };
  GtkWidget *child;

  gtk_widget_set_tooltip_text (GTK_WIDGET (self->module_grid),
                               _("KRR: kernel retention rate, the share of conv kernels a module keeps"));
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->module_grid))))
    gtk_grid_remove (self->module_grid, child);
  if (!self->set)
    return;
  for (guint i = 0; i < G_N_ELEMENTS (headers); i++)
    cleave_gui_grid_add_cell (self->module_grid, headers[i], i, 0, i > 0, TRUE);
  for (guint k = 0; k < self->set->modules->len; k++)
    {
      const CleaveModule *m = g_ptr_array_index (self->set->modules, k);
      g_autofree char *name = m->class_name ? g_strdup_printf ("%d · %s", m->class_index, m->class_name)
                                            : g_strdup_printf ("%d", m->class_index);
      g_autofree char *krr = percent (m->krr);
      g_autofree char *kept = g_strdup_printf ("%d", cleave_module_kept_total (m));
      g_autofree char *params = cleave_gui_format_count (cleave_module_params (m));
      g_autofree char *flops = cleave_gui_format_count (cleave_module_flops (m));
      g_autofree char *acc = percent (m->val_accuracy);
      g_autofree char *p = percent (m->val_precision);
      g_autofree char *r = percent (m->val_recall);
      g_autofree char *f1 = percent (m->val_f1);
      const char *cells[] = { name, krr, kept, params, flops, acc, p, r, f1 };

      for (guint i = 0; i < G_N_ELEMENTS (cells); i++)
        cleave_gui_grid_add_cell (self->module_grid, cells[i], i, k + 1, i > 0, FALSE);
    }
}

static void
fill_summary (CleaveModulesPage *self)
{
  const CleaveModuleSet *set = self->set;
  g_autofree char *source = set->source_path ? g_path_get_basename (set->source_path) : g_strdup (_("unknown model"));
  g_autofree char *src_acc = percent (set->source_accuracy);
  g_autofree char *comp_acc = percent (set->composed_accuracy);
  g_autofree char *krr = percent (cleave_module_set_mean_krr (set));
  const char *method = g_strcmp0 (set->method, "ga") == 0 ? _("CNNSplitter")
                     : g_strcmp0 (set->method, "grad") == 0 ? _("GradSplitter") : set->method;
  g_autofree char *text = NULL;

  /* Translators: module-set summary: count, method, source file, dataset, accuracies, mean KRR */
  text = g_strdup_printf (_("%u modules by %s from %s on %s · validation accuracy: source %s, composed modules %s · mean KRR %s"),
                          set->modules->len, method ? method : "?", source, set->dataset ? set->dataset : "?",
                          src_acc, comp_acc, krr);
  gtk_label_set_label (self->summary_label, text);
}

static void
on_layer_selected (CleaveModulesPage *self)
{
  guint i = gtk_drop_down_get_selected (self->layer_dropdown);

  if (self->updating || i == GTK_INVALID_LIST_POSITION)
    return;
  show_masks (self, (int) i);
}

void
cleave_modules_page_show_layer (CleaveModulesPage *self, int site)
{
  g_return_if_fail (CLEAVE_IS_MODULES_PAGE (self));
  if (self->set && site >= 0 && site < self->set->n_sites)
    gtk_drop_down_set_selected (self->layer_dropdown, site);
}

static void
show_set (CleaveModulesPage *self, CleaveOpenSet *item)
{
  g_autoptr(GtkStringList) layers = gtk_string_list_new (NULL);
  CleaveModuleSet *set = item ? cleave_open_set_get_set (item) : NULL;

  g_set_object (&self->item, item);
  self->set = set;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "modules.save", set != NULL);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "modules.close", set != NULL);
  gtk_stack_set_visible_child_name (self->stack, set ? "set" : "empty");
  if (!set)
    return;
  for (int s = 0; s < set->n_sites; s++)
    {
      if (set->site_tie[s] != s)
        {
          /* Translators: a conv layer whose kept kernels are tied to another layer's (residual adds) */
          g_autofree char *name = g_strdup_printf (_("%s (tied to %s)"), set->site_names[s],
                                                   set->site_names[set->site_tie[s]]);
          gtk_string_list_append (layers, name);
        }
      else
        gtk_string_list_append (layers, set->site_names[s]);
    }
  self->updating = TRUE;
  gtk_drop_down_set_model (self->layer_dropdown, G_LIST_MODEL (layers));
  gtk_drop_down_set_selected (self->layer_dropdown, 0);
  self->updating = FALSE;
  fill_summary (self);
  show_masks (self, 0);
  show_module_charts (self);
  fill_table (self);
}

static void
on_set_selected (CleaveModulesPage *self)
{
  if (self->updating)
    return;
  show_set (self, gtk_drop_down_get_selected_item (self->set_dropdown));
}

/* A set was opened: show it; the shown one was closed: show the last. */
static void
on_sets_changed (CleaveModulesPage *self, guint position, guint removed, guint added, GListModel *sets)
{
  guint n = g_list_model_get_n_items (sets);
  guint show = added > 0 ? position + added - 1 : (n > 0 ? n - 1 : GTK_INVALID_LIST_POSITION);

  if (!gtk_widget_get_first_child (GTK_WIDGET (self)))
    return;     /* disposed */
  if (added == 0 && self->item && cleave_workspace_is_open (self->workspace, self->item))
    return;
  gtk_drop_down_set_selected (self->set_dropdown, show);
  gtk_widget_set_sensitive (GTK_WIDGET (self->set_dropdown), n > 0);
  show_set (self, gtk_drop_down_get_selected_item (self->set_dropdown));
}

/* Set and layer names can be long: the pickers ellipsize them, so that
 * they never make the window wider. */
static void
setup_set_item (GtkSignalListItemFactory *factory, GtkListItem *item)
{
  GtkWidget *label = gtk_label_new (NULL);

  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_label_set_width_chars (GTK_LABEL (label), 8);
  gtk_list_item_set_child (item, label);
}

static void
bind_set_item (GtkSignalListItemFactory *factory, GtkListItem *item)
{
  gpointer object = gtk_list_item_get_item (item);
  const char *text = CLEAVE_IS_OPEN_SET (object) ? cleave_open_set_get_name (object)
                   : GTK_IS_STRING_OBJECT (object) ? gtk_string_object_get_string (object) : "";

  gtk_label_set_label (GTK_LABEL (gtk_list_item_get_child (item)), text);
}

static void
set_workspace (CleaveModulesPage *self, CleaveWorkspace *workspace)
{
  if (self->workspace)
    g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
  g_set_object (&self->workspace, workspace);
  self->updating = TRUE;
  gtk_drop_down_set_model (self->set_dropdown, workspace ? cleave_workspace_get_sets (workspace) : NULL);
  self->updating = FALSE;
  if (workspace)
    g_signal_connect_object (cleave_workspace_get_sets (workspace), "items-changed",
                             G_CALLBACK (on_sets_changed), self, G_CONNECT_SWAPPED);
  show_set (self, NULL);
}

CleaveModuleSet *
cleave_modules_page_get_set (CleaveModulesPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_MODULES_PAGE (self), NULL);
  return self->set;
}

GtkWidget *
cleave_modules_page_get_mask_view (CleaveModulesPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_MODULES_PAGE (self), NULL);
  return GTK_WIDGET (self->mask_view);
}

GtkWidget *
cleave_modules_page_get_overlap_view (CleaveModulesPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_MODULES_PAGE (self), NULL);
  return GTK_WIDGET (self->overlap_chart);
}

/* ---- files ------------------------------------------------------------------ */

gboolean
cleave_modules_page_save (CleaveModulesPage *self, const char *path, GError **error)
{
  g_return_val_if_fail (CLEAVE_IS_MODULES_PAGE (self), FALSE);
  g_return_val_if_fail (self->set != NULL, FALSE);
  return cleave_module_set_save (self->set, path, error);
}

static void
open_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  CleaveModuleSet *set = cleave_module_set_load (task_data, &error);

  if (set)
    g_task_return_pointer (task, set, (GDestroyNotify) cleave_module_set_free);
  else
    g_task_return_error (task, error);
}

static void
open_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveModulesPage *self = CLEAVE_MODULES_PAGE (source);
  GTask *task = G_TASK (result);
  g_autoptr(GError) error = NULL;
  CleaveModuleSet *set = g_task_propagate_pointer (task, &error);

  if (g_task_get_cancellable (task) == self->open_cancellable)
    g_clear_object (&self->open_cancellable);
  if (set && self->workspace)
    {
      g_autofree char *name = g_path_get_basename (g_task_get_task_data (task));

      cleave_workspace_add_set (self->workspace, set, name);
    }
  else if (set)
    cleave_module_set_free (set);
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    cleave_gui_show_error_details (GTK_WIDGET (self), _("Could Not Open the Module Set"),
                                   cleave_gui_file_error_text (error), error->message);
  g_signal_emit (self, signals[SIGNAL_OPENED], 0, set != NULL);
}

void
cleave_modules_page_open_file (CleaveModulesPage *self, GFile *file)
{
  g_autoptr(GTask) task = NULL;
  char *path;

  g_return_if_fail (CLEAVE_IS_MODULES_PAGE (self));
  path = g_file_get_path (file);
  if (!path)
    {
      cleave_gui_show_error (GTK_WIDGET (self), _("Could Not Open the Module Set"), _("Only local files can be opened"));
      return;
    }
  if (!self->open_cancellable)
    self->open_cancellable = g_cancellable_new ();
  task = g_task_new (self, self->open_cancellable, open_done, NULL);
  g_task_set_source_tag (task, cleave_modules_page_open_file);
  g_task_set_task_data (task, path, g_free);
  g_task_run_in_thread (task, open_thread);
}

static void
on_chooser_response (GtkNativeDialog *dialog, int response, CleaveModulesPage *self)
{
  gboolean saving = gtk_file_chooser_get_action (GTK_FILE_CHOOSER (dialog)) == GTK_FILE_CHOOSER_ACTION_SAVE;

  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      g_autoptr(GError) error = NULL;

      if (!saving && file)
        cleave_modules_page_open_file (self, file);
      else if (saving && path && self->set && !cleave_modules_page_save (self, path, &error))
        cleave_gui_show_error_details (GTK_WIDGET (self), _("Could Not Save the Module Set"),
                                       _("The file could not be written."), error->message);
    }
  g_clear_object (&self->chooser);
}

static void
run_chooser (CleaveModulesPage *self, gboolean save)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  g_autoptr(GtkFileFilter) sets = gtk_file_filter_new ();
  g_autoptr(GtkFileFilter) all = gtk_file_filter_new ();

  if (self->chooser || !GTK_IS_WINDOW (root))
    return;
  gtk_file_filter_set_name (sets, _("Module sets (*.cleave-modules)"));
  gtk_file_filter_add_mime_type (sets, "application/x-cleave-modules");
  gtk_file_filter_add_pattern (sets, "*.cleave-modules");
  gtk_file_filter_add_pattern (sets, "*.safetensors");
  gtk_file_filter_set_name (all, _("All files"));
  gtk_file_filter_add_pattern (all, "*");
  self->chooser = gtk_file_chooser_native_new (save ? _("Save Module Set") : _("Open Module Set"), GTK_WINDOW (root),
                                               save ? GTK_FILE_CHOOSER_ACTION_SAVE : GTK_FILE_CHOOSER_ACTION_OPEN,
                                               save ? _("_Save") : _("_Open"), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), sets);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), all);
  if (save)
    /* Translators: default file name of a saved module set */
    gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (self->chooser), _("modules.cleave-modules"));
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
open_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  run_chooser (CLEAVE_MODULES_PAGE (widget), FALSE);
}

static void
save_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  run_chooser (CLEAVE_MODULES_PAGE (widget), TRUE);
}

static void
close_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveModulesPage *self = CLEAVE_MODULES_PAGE (widget);

  if (self->item && self->workspace)
    cleave_workspace_close_set (self->workspace, self->item);
}

static void
cleave_modules_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    g_value_set_object (value, CLEAVE_MODULES_PAGE (object)->workspace);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_modules_page_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    set_workspace (CLEAVE_MODULES_PAGE (object), g_value_get_object (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

/* ---- life cycle --------------------------------------------------------------- */

static void
cleave_modules_page_dispose (GObject *object)
{
  CleaveModulesPage *self = CLEAVE_MODULES_PAGE (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  if (self->open_cancellable)
    g_cancellable_cancel (self->open_cancellable);
  g_clear_object (&self->open_cancellable);
  self->set = NULL;
  g_clear_object (&self->item);
  if (self->workspace)
    g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
  g_clear_object (&self->workspace);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_MODULES_PAGE);
  G_OBJECT_CLASS (cleave_modules_page_parent_class)->dispose (object);
}

static void
cleave_modules_page_class_init (CleaveModulesPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  G_OBJECT_CLASS (klass)->dispose = cleave_modules_page_dispose;
  G_OBJECT_CLASS (klass)->get_property = cleave_modules_page_get_property;
  G_OBJECT_CLASS (klass)->set_property = cleave_modules_page_set_property;
  props[PROP_WORKSPACE] = g_param_spec_object ("workspace", NULL, NULL, CLEAVE_TYPE_WORKSPACE,
                                               G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (G_OBJECT_CLASS (klass), N_PROPS, props);
  g_type_ensure (CLEAVE_TYPE_OPEN_SET);
  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-modules-page.ui");
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, CleaveModulesPage, name)
  BIND (set_dropdown);
  BIND (open_button);
  BIND (save_button);
  BIND (stack);
  BIND (summary_label);
  BIND (layer_dropdown);
  BIND (mask_view);
  BIND (module_chart);
  BIND (overlap_chart);
  BIND (module_grid);
#undef BIND
  gtk_widget_class_bind_template_callback (widget_class, on_set_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_layer_selected);

  gtk_widget_class_install_action (widget_class, "modules.open", NULL, open_action);
  gtk_widget_class_install_action (widget_class, "modules.save", NULL, save_action);
  gtk_widget_class_install_action (widget_class, "modules.close", NULL, close_action);

  signals[SIGNAL_OPENED] =
    g_signal_new ("opened", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
cleave_modules_page_init (CleaveModulesPage *self)
{
  GtkListItemFactory *factory = gtk_signal_list_item_factory_new ();

  gtk_widget_init_template (GTK_WIDGET (self));
  g_signal_connect (factory, "setup", G_CALLBACK (setup_set_item), NULL);
  g_signal_connect (factory, "bind", G_CALLBACK (bind_set_item), NULL);
  gtk_drop_down_set_factory (self->set_dropdown, factory);
  gtk_drop_down_set_factory (self->layer_dropdown, factory);
  g_object_unref (factory);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "modules.save", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "modules.close", FALSE);
  gtk_widget_set_sensitive (GTK_WIDGET (self->set_dropdown), FALSE);
}
