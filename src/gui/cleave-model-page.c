/* cleave-model-page.c: layer table, dataset picker, evaluation results. */
#include <glib/gi18n.h>

#include "cleave-model-page.h"
#include "cleave-chart-view.h"
#include "cleave-dataset-row.h"
#include "cleave-job.h"
#include "cleave-gui-util.h"
#include "cleave-metrics.h"

struct _CleaveModelPage
{
  AdwBin parent_instance;

  GtkStack *stack;
  GtkLabel *title_label;
  GtkLabel *summary_label;
  GtkGrid *layer_grid;
  CleaveDatasetRow *dataset_row;
  GtkButton *evaluate_button;
  GtkLabel *accuracy_label;
  GtkProgressBar *progress_bar;
  CleaveChartView *metrics_chart;
  CleaveChartView *confusion_chart;

  CleaveModel *model;          /* borrowed */
  GSettings *settings;
  GCancellable *eval_cancellable;
};

enum {
  SIGNAL_EVALUATED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CleaveModelPage, cleave_model_page, ADW_TYPE_BIN)

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

  cleave_gui_grid_add_cell (self->layer_grid, _("Layer"), 0, 0, FALSE, TRUE);
  cleave_gui_grid_add_cell (self->layer_grid, _("Type"), 1, 0, FALSE, TRUE);
  cleave_gui_grid_add_cell (self->layer_grid, _("Output"), 2, 0, TRUE, TRUE);
  cleave_gui_grid_add_cell (self->layer_grid, _("Kernels"), 3, 0, TRUE, TRUE);
  cleave_gui_grid_add_cell (self->layer_grid, _("Parameters"), 4, 0, TRUE, TRUE);
  cleave_gui_grid_add_cell (self->layer_grid, _("FLOPs"), 5, 0, TRUE, TRUE);

  for (int i = 0; i < cleave_graph_n_nodes (g); i++)
    {
      const CleaveNode *node = cleave_graph_node (g, i);
      g_autofree char *shape = format_shape (node);
      g_autofree char *params = cleave_gui_format_count (node_params (g, node));
      g_autofree char *flops = cleave_gui_format_count (cleave_graph_node_flops (g, i));
      g_autofree char *kernels = node->op == CLEAVE_OP_CONV2D
        ? g_strdup_printf ("%d", node->out_channels) : g_strdup ("");

      cleave_gui_grid_add_cell (self->layer_grid, node->name, 0, row, FALSE, FALSE);
      cleave_gui_grid_add_cell (self->layer_grid, cleave_op_kind_to_string (node->op), 1, row, FALSE, FALSE);
      cleave_gui_grid_add_cell (self->layer_grid, shape, 2, row, TRUE, FALSE);
      cleave_gui_grid_add_cell (self->layer_grid, kernels, 3, row, TRUE, FALSE);
      cleave_gui_grid_add_cell (self->layer_grid, params, 4, row, TRUE, FALSE);
      cleave_gui_grid_add_cell (self->layer_grid, flops, 5, row, TRUE, FALSE);
      row++;
    }
}

static void
fill_summary (CleaveModelPage *self)
{
  const CleaveGraph *g = self->model->graph;
  g_autofree char *base = self->model->path ? g_path_get_basename (self->model->path) : g_strdup (_("Untitled model"));
  g_autofree char *params = cleave_gui_format_count (cleave_graph_count_params (g));
  g_autofree char *flops = cleave_gui_format_count (cleave_graph_count_flops (g));
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
  return cleave_dataset_row_get_spec (self->dataset_row);
}

/* ---- evaluation ------------------------------------------------------ */

typedef struct {
  CleaveScorer *scorer;        /* a private copy of the model: the window may replace its model meanwhile */
  char *dataset;
  char *device;
  const char *parts[2];        /* dataset */
  CleaveEvaluateRequest request;
  CleaveEvaluateResult result;
  CleaveModelPage *page;       /* alive: the task holds a reference */
} EvalJob;

static void
eval_job_free (EvalJob *job)
{
  cleave_evaluate_result_clear (&job->result);
  cleave_scorer_free (job->scorer);
  g_free (job->dataset);
  g_free (job->device);
  g_free (job);
}

static void
apply_progress (gpointer target, const CleaveProgress *progress, guint run)
{
  CleaveModelPage *self = target;

  if (self->eval_cancellable)
    gtk_progress_bar_set_fraction (self->progress_bar, progress->fraction);
}

static void
on_eval_progress (const CleaveProgress *progress, gpointer user_data)
{
  EvalJob *job = user_data;

  cleave_gui_post_progress (job->page, 0, progress, apply_progress);
}

static void
eval_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  EvalJob *job = task_data;
  GError *error = NULL;

  if (cleave_job_evaluate (&job->request, on_eval_progress, job, cancellable, &job->result, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

static void
show_metrics (CleaveModelPage *self, const CleaveMetrics *m, char **class_names)
{
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

  cleave_gui_show_prf_chart (self->metrics_chart, _("Per-class metrics"),
                             (const char *const *) labels->pdata, m->n_classes, bars);
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
  acc = g_strdup_printf (_("%.2f %% (%d of %d)"), 100.0 * m->accuracy, m->correct, m->total);
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
  CleaveMetrics *metrics = g_task_propagate_boolean (task, &error) ? job->result.metrics[0] : NULL;

  if (g_task_get_cancellable (task) == self->eval_cancellable)
    {
      g_clear_object (&self->eval_cancellable);
      gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), FALSE);
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", self->model != NULL);
      cleave_gui_hand_focus (GTK_WIDGET (self->dataset_row), GTK_WIDGET (self->evaluate_button));
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.cancel", FALSE);
    }
  if (metrics && !g_cancellable_is_cancelled (g_task_get_cancellable (task)))
    show_metrics (self, metrics, job->result.class_names);
  else if (error && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      cleave_gui_show_error_details (GTK_WIDGET (self), _("Evaluation Failed"),
                                     _("The evaluation stopped: the dataset could not be read, or the device failed."),
                                     error->message);
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
  job->scorer = cleave_scorer_new_model (cleave_model_copy (self->model));
  job->dataset = g_strdup (cleave_dataset_row_get_spec (self->dataset_row));
  job->device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  job->parts[0] = job->dataset;
  cleave_evaluate_request_init (&job->request);
  job->request.scorers = &job->scorer;
  job->request.n_scorers = 1;
  job->request.dataset.parts = job->parts;
  job->request.dataset.data_dirs = (const char *const *) cleave_gui_config ()->data_dirs;
  job->request.device.device = job->device;
  job->request.device.config = &cleave_gui_config ()->backend;
  job->page = self;

  self->eval_cancellable = g_cancellable_new ();
  gtk_progress_bar_set_fraction (self->progress_bar, 0);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  gtk_label_set_label (self->accuracy_label, _("Evaluating…"));
  /* Focus stays nearby while the button is locked, and comes back. */
  cleave_gui_hand_focus (GTK_WIDGET (self->evaluate_button), GTK_WIDGET (self->dataset_row));
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

/* The last dataset the user picked is the default for the next session. */
static void
on_dataset_changed (CleaveModelPage *self)
{
  if (self->settings)
    g_settings_set_string (self->settings, "default-dataset",
                           cleave_dataset_row_get_spec (self->dataset_row));
}

void
cleave_model_page_set_dataset (CleaveModelPage *self, const char *spec)
{
  g_return_if_fail (CLEAVE_IS_MODEL_PAGE (self));
  g_return_if_fail (spec != NULL);
  g_signal_handlers_block_by_func (self->dataset_row, on_dataset_changed, self);
  cleave_dataset_row_set_spec (self->dataset_row, spec);
  g_signal_handlers_unblock_by_func (self->dataset_row, on_dataset_changed, self);
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
  if (!spec || !*spec)
    return;
  g_signal_handlers_block_by_func (self->dataset_row, on_dataset_changed, self);
  cleave_dataset_row_set_spec (self->dataset_row, spec);
  g_signal_handlers_unblock_by_func (self->dataset_row, on_dataset_changed, self);
}

static void
cleave_model_page_dispose (GObject *object)
{
  CleaveModelPage *self = CLEAVE_MODEL_PAGE (object);

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
cleave_model_page_class_init (CleaveModelPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_model_page_dispose;

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  g_type_ensure (CLEAVE_TYPE_DATASET_ROW);
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
  gtk_widget_class_bind_template_callback (widget_class, on_dataset_changed);
  cleave_gui_bind_leaflet_callbacks (widget_class);

  gtk_widget_class_install_action (widget_class, "model.evaluate", NULL, evaluate_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_e, GDK_CONTROL_MASK, "model.evaluate", NULL);
  gtk_widget_class_install_action (widget_class, "model.cancel", NULL, cancel_action);

  signals[SIGNAL_EVALUATED] =
    g_signal_new ("evaluated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
cleave_model_page_init (CleaveModelPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.evaluate", FALSE);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "model.cancel", FALSE);
}
