/* cleave-model-page.c: layer table, dataset picker, evaluation results. */
#include <glib/gi18n.h>

#include "cleave-model-page.h"
#include "cleave-chart-view.h"
#include "cleave-device.h"
#include "cleave-metrics.h"

/* Picker rows, in the order of the string list in the .ui file. */
static const char *const dataset_specs[] = { "fashion-mnist", "mnist", "cifar10" };
#define FOLDER_ROW G_N_ELEMENTS (dataset_specs)

struct _CleaveModelPage
{
  AdwBin parent_instance;

  GtkStack *stack;
  GtkLabel *title_label;
  GtkLabel *summary_label;
  GtkGrid *layer_grid;
  AdwComboRow *dataset_row;
  GtkButton *evaluate_button;
  GtkLabel *accuracy_label;
  GtkProgressBar *progress_bar;
  CleaveChartView *metrics_chart;
  CleaveChartView *confusion_chart;

  CleaveModel *model;          /* borrowed */
  GSettings *settings;
  char *dataset;               /* current spec */
  char *folder;                /* last chosen ImageFolder root */
  GtkFileChooserNative *chooser;
  GCancellable *eval_cancellable;
};

enum {
  SIGNAL_EVALUATED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CleaveModelPage, cleave_model_page, ADW_TYPE_BIN)

/* 1234567 → "1,234,567" in the user's locale grouping would need printf's
 * "'" flag, which GLib does not promise; a thin space reads well everywhere. */
static char *
format_count (guint64 v)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, v);
  GString *out = g_string_new (NULL);
  gsize n = strlen (digits);

  for (gsize i = 0; i < n; i++)
    {
      if (i > 0 && (n - i) % 3 == 0)
        g_string_append (out, "\u2009");
      g_string_append_c (out, digits[i]);
    }
  return g_string_free (out, FALSE);
}

static char *
format_shape (const CleaveNode *node)
{
  if (node->out_ndim == 3)
    return g_strdup_printf ("%d × %d × %d", node->out_shape[0], node->out_shape[1], node->out_shape[2]);
  if (node->out_ndim == 1)
    return g_strdup_printf ("%d", node->out_shape[0]);
  return g_strdup ("—");
}

static guint64
node_params (const CleaveGraph *graph, const CleaveNode *node)
{
  guint64 n = 0;

  for (int s = 0; s < CLEAVE_N_PARAM_SLOTS; s++)
    if (node->param[s] >= 0)
      {
        const CleaveParam *p = cleave_graph_param (graph, node->param[s]);

        if (!p->is_buffer)
          n += cleave_param_numel (p);
      }
  return n;
}

static void
add_cell (CleaveModelPage *self, const char *text, int col, int row, gboolean numeric, gboolean header)
{
  GtkWidget *label = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (label), numeric ? 1.0 : 0.0);
  gtk_widget_set_hexpand (label, col == 0);
  if (numeric)
    gtk_widget_add_css_class (label, "numeric");
  if (header)
    gtk_widget_add_css_class (label, "header");
  gtk_grid_attach (self->layer_grid, label, col, row, 1, 1);
}

static void
fill_layers (CleaveModelPage *self)
{
  GtkWidget *child;
  const CleaveGraph *g;
  int row = 1;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->layer_grid))))
    gtk_grid_remove (self->layer_grid, child);
  if (!self->model)
    return;
  g = self->model->graph;

  add_cell (self, _("Layer"), 0, 0, FALSE, TRUE);
  add_cell (self, _("Type"), 1, 0, FALSE, TRUE);
  add_cell (self, _("Output"), 2, 0, TRUE, TRUE);
  add_cell (self, _("Kernels"), 3, 0, TRUE, TRUE);
  add_cell (self, _("Parameters"), 4, 0, TRUE, TRUE);
  add_cell (self, _("FLOPs"), 5, 0, TRUE, TRUE);

  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    {
      const CleaveNode *node = cleave_graph_node (g, i);
      g_autofree char *shape = format_shape (node);
      g_autofree char *params = format_count (node_params (g, node));
      g_autofree char *flops = format_count (cleave_graph_node_flops (g, i));
      g_autofree char *kernels = node->op == CLEAVE_OP_CONV2D
        ? g_strdup_printf ("%d", node->out_channels) : g_strdup ("");

      add_cell (self, node->name, 0, row, FALSE, FALSE);
      add_cell (self, cleave_op_kind_to_string (node->op), 1, row, FALSE, FALSE);
      add_cell (self, shape, 2, row, TRUE, FALSE);
      add_cell (self, kernels, 3, row, TRUE, FALSE);
      add_cell (self, params, 4, row, TRUE, FALSE);
      add_cell (self, flops, 5, row, TRUE, FALSE);
      row++;
    }
}

static void
fill_summary (CleaveModelPage *self)
{
  const CleaveGraph *g = self->model->graph;
  g_autofree char *base = self->model->path ? g_path_get_basename (self->model->path) : g_strdup (_("Untitled model"));
  g_autofree char *params = format_count (cleave_graph_count_params (g));
  g_autofree char *flops = format_count (cleave_graph_count_flops (g));
  g_autofree char *classes = NULL;
  g_autofree char *summary = NULL;
  int c, h, w;

  cleave_graph_input_shape (g, &c, &h, &w);
  classes = self->model->class_names
    ? g_strjoinv (", ", self->model->class_names) : g_strdup_printf ("%d", self->model->n_classes);
  /* Translators: model summary; input shape, parameter count, FLOPs per image, class count, class names */
  summary = g_strdup_printf (_("Input %d × %d × %d · %s parameters · %s FLOPs per image\n%d classes: %s"),
                             c, h, w, params, flops, self->model->n_classes, classes);
  gtk_label_set_label (self->title_label, base);
  gtk_label_set_label (self->summary_label, summary);
}

void
cleave_model_page_set_model (CleaveModelPage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_MODEL_PAGE (self));

  if (self->eval_cancellable)
    g_cancellable_cancel (self->eval_cancellable);
  self->model = model;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", model != NULL);
  cleave_chart_view_set_chart (self->metrics_chart, CLEAVE_CHART_BARS, NULL);
  cleave_chart_view_set_chart (self->confusion_chart, CLEAVE_CHART_HEAT_MAP, NULL);
  gtk_label_set_label (self->accuracy_label, "");
  fill_layers (self);
  if (model)
    fill_summary (self);
  gtk_stack_set_visible_child_name (self->stack, model ? "model" : "empty");
}

const char *
cleave_model_page_get_dataset (CleaveModelPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_MODEL_PAGE (self), NULL);
  return self->dataset;
}

/* ---- evaluation ------------------------------------------------------ */

typedef struct {
  CleaveModel *model;          /* private copy: the window may replace its model meanwhile */
  char *dataset;
  char *device;
  char **class_names;
  CleaveModelPage *page;       /* alive: the task holds a reference */
} EvalJob;

static void
eval_job_free (EvalJob *job)
{
  cleave_model_free (job->model);
  g_free (job->dataset);
  g_free (job->device);
  g_strfreev (job->class_names);
  g_free (job);
}

static CleaveModel *
copy_model (const CleaveModel *src)
{
  CleaveModel *m = cleave_model_new (cleave_graph_copy (src->graph), src->n_classes,
                                     (const char *const *) src->class_names);

  m->n_channels = src->n_channels;
  memcpy (m->mean, src->mean, sizeof m->mean);
  memcpy (m->std, src->std, sizeof m->std);
  m->path = g_strdup (src->path);
  return m;
}

typedef struct {
  CleaveModelPage *page;       /* strong */
  double fraction;
} ProgressUpdate;

static gboolean
apply_progress (gpointer data)
{
  ProgressUpdate *u = data;

  if (u->page->eval_cancellable)
    gtk_progress_bar_set_fraction (u->page->progress_bar, u->fraction);
  return G_SOURCE_REMOVE;
}

static void
progress_update_free (gpointer data)
{
  ProgressUpdate *u = data;

  g_object_unref (u->page);
  g_free (u);
}

/* Runs on the worker thread: hand the number to the main loop. */
static void
on_eval_progress (const CleaveProgress *progress, gpointer user_data)
{
  EvalJob *job = user_data;
  ProgressUpdate *u = g_new (ProgressUpdate, 1);

  u->page = g_object_ref (job->page);
  u->fraction = progress->fraction;
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, apply_progress, u, progress_update_free);
}

static void
eval_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  EvalJob *job = task_data;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  CleaveMetrics *metrics;
  GError *error = NULL;

  ds = cleave_dataset_load (job->dataset, CLEAVE_SPLIT_TEST, cancellable, &error);
  if (ds)
    backend = cleave_device_open (g_strcmp0 (job->device, "auto") == 0 ? NULL : job->device, &error);
  metrics = backend ? cleave_model_evaluate (job->model, backend, ds, on_eval_progress, job, cancellable, &error) : NULL;
  if (!metrics)
    {
      g_task_return_error (task, error);
      return;
    }
  if (ds->class_names)
    job->class_names = g_strdupv (ds->class_names);
  g_task_return_pointer (task, metrics, (GDestroyNotify) cleave_metrics_free);
}

static void
show_metrics (CleaveModelPage *self, const CleaveMetrics *m, char **class_names)
{
  const char *const series[] = { _("precision"), _("recall"), _("F1"), NULL };
  g_autofree double *bars = g_new (double, (gsize) m->n_classes * 3);
  g_autofree double *conf = g_new (double, (gsize) m->n_classes * m->n_classes);
  g_autoptr(GPtrArray) labels = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *acc = NULL;

  for (int c = 0; c < m->n_classes; c++)
    {
      const char *name = class_names && c < (int) g_strv_length (class_names) ? class_names[c] : NULL;

      if (!name && self->model && self->model->class_names && c < self->model->n_classes)
        name = self->model->class_names[c];
      g_ptr_array_add (labels, name ? g_strdup (name) : g_strdup_printf ("%d", c));
      bars[c * 3 + 0] = m->precision[c];
      bars[c * 3 + 1] = m->recall[c];
      bars[c * 3 + 2] = m->f1[c];
      for (int p = 0; p < m->n_classes; p++)
        conf[c * m->n_classes + p] = m->confusion[c * m->n_classes + p];
    }
  g_ptr_array_add (labels, NULL);

  {
    CleaveBarChart chart = {
      .title = _("Per-class metrics"),
      .categories = (const char *const *) labels->pdata,
      .n_categories = m->n_classes,
      .series_names = series,
      .n_series = 3,
      .values = bars,
      .y_max = 1.0,
    };
    cleave_chart_view_set_chart (self->metrics_chart, CLEAVE_CHART_BARS, &chart);
  }
  {
    CleaveHeatMap chart = {
      .title = _("Confusion matrix"),
      .row_title = _("true class"),
      .col_title = _("predicted class"),
      .row_labels = (const char *const *) labels->pdata,
      .n_rows = m->n_classes,
      .col_labels = (const char *const *) labels->pdata,
      .n_cols = m->n_classes,
      .values = conf,
      .row_normalize = TRUE,
      .value_format = "%.0f",
    };
    cleave_chart_view_set_chart (self->confusion_chart, CLEAVE_CHART_HEAT_MAP, &chart);
  }
  /* Translators: accuracy in percent, then correct and total image counts */
  acc = g_strdup_printf (_("%.2f %% (%d of %d)"), 100.0 * m->accuracy, m->correct, m->total);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->accuracy_label), acc);
  gtk_label_set_label (self->accuracy_label, acc);
}

static void
eval_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveModelPage *self = CLEAVE_MODEL_PAGE (source);
  GTask *task = G_TASK (result);
  EvalJob *job = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveMetrics) metrics = g_task_propagate_pointer (task, &error);

  if (g_task_get_cancellable (task) == self->eval_cancellable)
    {
      g_clear_object (&self->eval_cancellable);
      gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), FALSE);
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", self->model != NULL);
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.cancel", FALSE);
    }
  if (metrics && !g_cancellable_is_cancelled (g_task_get_cancellable (task)))
    show_metrics (self, metrics, job->class_names);
  else if (error && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
      GtkWidget *msg = adw_message_dialog_new (GTK_WINDOW (root), _("Evaluation Failed"), error->message);

      adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (msg), "close", _("_Close"));
      gtk_window_present (GTK_WINDOW (msg));
      gtk_label_set_label (self->accuracy_label, "");
    }
  g_signal_emit (self, signals[SIGNAL_EVALUATED], 0, metrics != NULL);
}

gboolean
cleave_model_page_evaluate (CleaveModelPage *self)
{
  g_autoptr(GTask) task = NULL;
  EvalJob *job;

  g_return_val_if_fail (CLEAVE_IS_MODEL_PAGE (self), FALSE);
  if (!self->model || self->eval_cancellable)
    return FALSE;

  job = g_new0 (EvalJob, 1);
  job->model = copy_model (self->model);
  job->dataset = g_strdup (self->dataset);
  job->device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  job->page = self;

  self->eval_cancellable = g_cancellable_new ();
  gtk_progress_bar_set_fraction (self->progress_bar, 0);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  gtk_label_set_label (self->accuracy_label, _("Evaluating…"));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.cancel", TRUE);

  task = g_task_new (self, self->eval_cancellable, eval_done, NULL);
  g_task_set_source_tag (task, cleave_model_page_evaluate);
  g_task_set_task_data (task, job, (GDestroyNotify) eval_job_free);
  g_task_run_in_thread (task, eval_thread);
  return TRUE;
}

static void
evaluate_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_model_page_evaluate (CLEAVE_MODEL_PAGE (widget));
}

static void
cancel_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveModelPage *self = CLEAVE_MODEL_PAGE (widget);

  if (self->eval_cancellable)
    g_cancellable_cancel (self->eval_cancellable);
}

/* ---- dataset picker ---------------------------------------------------- */

static void
set_dataset (CleaveModelPage *self, const char *spec)
{
  if (g_strcmp0 (self->dataset, spec) == 0)
    return;
  g_free (self->dataset);
  self->dataset = g_strdup (spec);
  if (self->settings)
    g_settings_set_string (self->settings, "default-dataset", spec);
}

static void
on_folder_chosen (GtkNativeDialog *dialog, int response, CleaveModelPage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;

      if (path)
        {
          g_free (self->folder);
          self->folder = g_strdup (path);
          set_dataset (self, path);
        }
    }
  g_clear_object (&self->chooser);
}

static void
choose_folder (CleaveModelPage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  if (self->chooser)
    return;
  self->chooser = gtk_file_chooser_native_new (_("Choose an Image Folder"), GTK_WINDOW (root),
                                               GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                               _("_Select"), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_folder_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
on_dataset_selected (CleaveModelPage *self)
{
  guint i = adw_combo_row_get_selected (self->dataset_row);

  if (i < FOLDER_ROW)
    set_dataset (self, dataset_specs[i]);
  else if (i == FOLDER_ROW && gtk_widget_get_mapped (GTK_WIDGET (self)))
    choose_folder (self);
}

static void
select_dataset_row (CleaveModelPage *self, const char *spec)
{
  guint row = FOLDER_ROW;

  for (guint i = 0; i < G_N_ELEMENTS (dataset_specs); i++)
    if (g_strcmp0 (spec, dataset_specs[i]) == 0)
      row = i;
  if (row == FOLDER_ROW)
    {
      g_free (self->folder);
      self->folder = g_strdup (spec);
    }
  g_free (self->dataset);
  self->dataset = g_strdup (spec);
  g_signal_handlers_block_by_func (self->dataset_row, on_dataset_selected, self);
  adw_combo_row_set_selected (self->dataset_row, row);
  g_signal_handlers_unblock_by_func (self->dataset_row, on_dataset_selected, self);
}

void
cleave_model_page_set_dataset (CleaveModelPage *self, const char *spec)
{
  g_return_if_fail (CLEAVE_IS_MODEL_PAGE (self));
  g_return_if_fail (spec != NULL);
  select_dataset_row (self, spec);
  if (self->settings)
    g_settings_set_string (self->settings, "default-dataset", spec);
}

void
cleave_model_page_set_settings (CleaveModelPage *self, GSettings *settings)
{
  g_autofree char *spec = NULL;

  g_return_if_fail (CLEAVE_IS_MODEL_PAGE (self));
  g_set_object (&self->settings, settings);
  if (!settings)
    return;
  spec = g_settings_get_string (settings, "default-dataset");
  if (spec && *spec)
    select_dataset_row (self, spec);
}

static void
cleave_model_page_dispose (GObject *object)
{
  CleaveModelPage *self = CLEAVE_MODEL_PAGE (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  if (self->eval_cancellable)
    g_cancellable_cancel (self->eval_cancellable);
  g_clear_object (&self->eval_cancellable);
  g_clear_object (&self->settings);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_MODEL_PAGE);
  G_OBJECT_CLASS (cleave_model_page_parent_class)->dispose (object);
}

static void
cleave_model_page_finalize (GObject *object)
{
  CleaveModelPage *self = CLEAVE_MODEL_PAGE (object);

  g_free (self->dataset);
  g_free (self->folder);
  G_OBJECT_CLASS (cleave_model_page_parent_class)->finalize (object);
}

static void
cleave_model_page_class_init (CleaveModelPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_model_page_dispose;
  object_class->finalize = cleave_model_page_finalize;

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-model-page.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, stack);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, title_label);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, summary_label);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, layer_grid);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, dataset_row);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, evaluate_button);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, accuracy_label);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, metrics_chart);
  gtk_widget_class_bind_template_child (widget_class, CleaveModelPage, confusion_chart);
  gtk_widget_class_bind_template_callback (widget_class, on_dataset_selected);

  gtk_widget_class_install_action (widget_class, "model.evaluate", NULL, evaluate_action);
  gtk_widget_class_install_action (widget_class, "model.cancel", NULL, cancel_action);

  signals[SIGNAL_EVALUATED] =
    g_signal_new ("evaluated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
cleave_model_page_init (CleaveModelPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->dataset = g_strdup (dataset_specs[0]);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.cancel", FALSE);
}
