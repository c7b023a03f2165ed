/* cleave-split-page.c: runs GradSplitter or CNNSplitter on a worker thread.
 *
 * The split job (cleave-job.h) calls the progress function on the worker;
 * every report is copied and handed to the main loop
 * (cleave_gui_post_progress), where it moves the progress bar and, once per
 * epoch or generation, adds a point to the live charts. Reports of an earlier run that arrive late are dropped
 * by comparing run numbers. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-split-page.h"
#include "cleave-chart-view.h"
#include "cleave-dataset-row.h"
#include "cleave-device.h"
#include "cleave-job.h"
#include "cleave-options.h"
#include "cleave-error.h"
#include "cleave-gui-util.h"
#include "cleave-workspace.h"
#include <json-glib/json-glib.h>
#include <string.h>

/* One method's option rows, one widget per entry of its table
 * (cleave-options.h): a GtkSpinButton, a GtkSwitch or an AdwComboRow. */
typedef struct {
  const CleaveOptionDesc *table;
  guint n;
  GtkWidget **widgets;
} OptionRows;

struct _CleaveSplitPage
{
  AdwBin parent_instance;

  GtkLabel *model_label;
  AdwComboRow *method_row;
  CleaveDatasetRow *dataset_row;
  AdwComboRow *device_row;
  AdwPreferencesGroup *grad_group;
  AdwPreferencesGroup *ga_group;
  OptionRows grad_rows;        /* built from the option tables */
  OptionRows ga_rows;
  GtkLabel *status_label;
  GtkWidget *start_button;
  GtkWidget *cancel_button;
  GtkProgressBar *progress_bar;
  CleaveChartView *accuracy_chart;
  CleaveChartView *loss_chart;

  CleaveModel *model;          /* borrowed from the workspace */
  CleaveWorkspace *workspace;  /* where finished splits go */
  GSettings *settings;
  GPtrArray *device_ids;       /* char*, parallel to the device row's items */
  CleaveGradSplitOptions grad;
  CleaveGaSplitOptions ga;

  GCancellable *cancellable;   /* non-NULL while a split runs */
  guint run;                   /* number of the current/last run */
  gint64 started;              /* monotonic µs */
  gboolean is_ga;              /* method of the current/last run */
  GArray *acc_points;          /* double per epoch/generation */
  GArray *krr_points;
  GArray *loss_points;         /* loss (grad) or fitness (ga) */
};

enum {
  SIGNAL_FINISHED,
  N_SIGNALS
};

enum {
  PROP_0,
  PROP_WORKSPACE,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CleaveSplitPage, cleave_split_page, ADW_TYPE_BIN)

static gboolean
method_is_ga (CleaveSplitPage *self)
{
  return adw_combo_row_get_selected (self->method_row) == 1;
}

/* ---- charts ------------------------------------------------------------ */

static void
show_charts (CleaveSplitPage *self)
{
  CleaveChartSeries acc[] = {
    { _("composed accuracy (validation)"), (const double *) self->acc_points->data, self->acc_points->len },
    { _("mean KRR (share of conv kernels kept)"), (const double *) self->krr_points->data, self->krr_points->len },
  };
  CleaveChartSeries loss[] = {
    { self->is_ga ? _("mean best fitness") : _("training loss"),
      (const double *) self->loss_points->data, self->loss_points->len },
  };
  CleaveLineChart acc_chart = {
    .title = _("Accuracy and kernel retention"),
    .x_label = self->is_ga ? _("generation") : _("epoch"),
    .y_min = 0, .y_max = 1,
    .series = acc, .n_series = G_N_ELEMENTS (acc),
  };
  CleaveLineChart loss_chart = {
    .title = self->is_ga ? _("Fitness") : _("Loss"),
    .x_label = self->is_ga ? _("generation") : _("epoch"),
    .series = loss, .n_series = G_N_ELEMENTS (loss),
  };

  cleave_chart_view_set_chart (self->accuracy_chart, CLEAVE_CHART_LINE, &acc_chart);
  cleave_chart_view_set_chart (self->loss_chart, CLEAVE_CHART_LINE, &loss_chart);
}

static void
clear_points (CleaveSplitPage *self)
{
  g_array_set_size (self->acc_points, 0);
  g_array_set_size (self->krr_points, 0);
  g_array_set_size (self->loss_points, 0);
  show_charts (self);
}

guint
cleave_split_page_n_points (CleaveSplitPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), 0);
  return self->acc_points->len;
}

/* ---- options ----------------------------------------------------------- */

static GtkWidget *
option_widget (const CleaveOptionDesc *d, GtkWidget **row)
{
  if (d->type == CLEAVE_OPTION_CHOICE)
    {
      GtkStringList *words = gtk_string_list_new (NULL);
      for (int i = 0; d->choices[i]; i++)
        gtk_string_list_append (words, _(d->choices[i]));
      *row = adw_combo_row_new ();
      adw_combo_row_set_model (ADW_COMBO_ROW (*row), G_LIST_MODEL (words));
      g_object_unref (words);
      return *row;
    }
  *row = adw_action_row_new ();
  if (d->type == CLEAVE_OPTION_BOOL)
    {
      GtkWidget *sw = gtk_switch_new ();
      gtk_widget_set_valign (sw, GTK_ALIGN_CENTER);
      adw_action_row_add_suffix (ADW_ACTION_ROW (*row), sw);
      adw_action_row_set_activatable_widget (ADW_ACTION_ROW (*row), sw);
      return sw;
    }
  {
    double step = d->type == CLEAVE_OPTION_INT ? 1 : pow (10, -d->digits);
    GtkAdjustment *adj = gtk_adjustment_new (d->def, d->min, d->max, step, step * 10, 0);
    GtkWidget *spin = gtk_spin_button_new (adj, step, d->digits);
    gtk_widget_set_valign (spin, GTK_ALIGN_CENTER);
    adw_action_row_add_suffix (ADW_ACTION_ROW (*row), spin);
    return spin;
  }
}

/* All the table's options in @group: the main ones as rows, the others
 * under an "Advanced" expander. */
static void
build_option_rows (AdwPreferencesGroup *group, OptionRows *rows, const CleaveOptionDesc *table, guint n)
{
  GtkWidget *advanced = adw_expander_row_new ();

  rows->table = table;
  rows->n = n;
  rows->widgets = g_new0 (GtkWidget *, n);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (advanced), _("Advanced"));
  for (guint i = 0; i < n; i++)
    {
      GtkWidget *row = NULL;
      rows->widgets[i] = option_widget (&table[i], &row);
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), _(table[i].label));
      gtk_widget_set_tooltip_text (row, _(table[i].help));
      if (table[i].advanced)
        adw_expander_row_add_row (ADW_EXPANDER_ROW (advanced), row);
      else
        adw_preferences_group_add (group, row);
    }
  adw_preferences_group_add (group, advanced);
}

/* Option struct → widgets. */
static void
show_options (const OptionRows *rows, gconstpointer options)
{
  for (guint i = 0; i < rows->n; i++)
    {
      const CleaveOptionDesc *d = &rows->table[i];
      double v = cleave_option_get (d, options);
      if (d->type == CLEAVE_OPTION_CHOICE)
        adw_combo_row_set_selected (ADW_COMBO_ROW (rows->widgets[i]), (guint) v);
      else if (d->type == CLEAVE_OPTION_BOOL)
        gtk_switch_set_active (GTK_SWITCH (rows->widgets[i]), v != 0);
      else
        gtk_spin_button_set_value (GTK_SPIN_BUTTON (rows->widgets[i]), v);
    }
}

/* Widgets → option struct. */
static void
read_rows (const OptionRows *rows, gpointer options)
{
  for (guint i = 0; i < rows->n; i++)
    {
      const CleaveOptionDesc *d = &rows->table[i];
      double v;
      if (d->type == CLEAVE_OPTION_CHOICE)
        v = adw_combo_row_get_selected (ADW_COMBO_ROW (rows->widgets[i]));
      else if (d->type == CLEAVE_OPTION_BOOL)
        v = gtk_switch_get_active (GTK_SWITCH (rows->widgets[i]));
      else
        v = gtk_spin_button_get_value (GTK_SPIN_BUTTON (rows->widgets[i]));
      cleave_option_set (d, options, v);
    }
}

void
cleave_split_page_set_grad_options (CleaveSplitPage *self, const CleaveGradSplitOptions *opt)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  self->grad = *opt;
  show_options (&self->grad_rows, opt);
}

void
cleave_split_page_set_ga_options (CleaveSplitPage *self, const CleaveGaSplitOptions *opt)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  self->ga = *opt;
  show_options (&self->ga_rows, opt);
}

static void
read_options (CleaveSplitPage *self)
{
  read_rows (&self->grad_rows, &self->grad);
  read_rows (&self->ga_rows, &self->ga);
}

/* ---- remembered options ------------------------------------------------ */

/* The options as {name: value}: numbers as doubles, switches as booleans,
 * choices as their words. */
static GVariant *
options_to_variant (const OptionRows *rows, gconstpointer options)
{
  GVariantBuilder b;

  g_variant_builder_init (&b, G_VARIANT_TYPE ("a{sv}"));
  for (guint i = 0; i < rows->n; i++)
    {
      const CleaveOptionDesc *d = &rows->table[i];
      double v = cleave_option_get (d, options);
      GVariant *value = d->type == CLEAVE_OPTION_BOOL ? g_variant_new_boolean (v != 0)
                        : d->type == CLEAVE_OPTION_CHOICE ? g_variant_new_string (d->choices[(int) v])
                        : g_variant_new_double (v);
      g_variant_builder_add (&b, "{sv}", d->name, value);
    }
  return g_variant_builder_end (&b);
}

/* Applies the remembered values that still fit the table (names, types and
 * ranges may have changed since they were stored); the rest keep their
 * defaults. */
static void
options_from_variant (const OptionRows *rows, GVariant *dict, gpointer options)
{
  for (guint i = 0; i < rows->n; i++)
    {
      const CleaveOptionDesc *d = &rows->table[i];
      g_autoptr(GVariant) value = g_variant_lookup_value (dict, d->name, NULL);
      g_autofree char *text = NULL;

      if (value == NULL)
        continue;
      if (d->type == CLEAVE_OPTION_BOOL && g_variant_is_of_type (value, G_VARIANT_TYPE_BOOLEAN))
        cleave_option_set (d, options, g_variant_get_boolean (value));
      else if (d->type == CLEAVE_OPTION_CHOICE && g_variant_is_of_type (value, G_VARIANT_TYPE_STRING))
        text = g_variant_dup_string (value, NULL);
      else if (g_variant_is_of_type (value, G_VARIANT_TYPE_DOUBLE))
        {
          char buf[G_ASCII_DTOSTR_BUF_SIZE];
          double v = g_variant_get_double (value);
          text = g_strdup (d->type == CLEAVE_OPTION_INT ? g_ascii_formatd (buf, sizeof buf, "%.0f", v)
                                                        : g_ascii_dtostr (buf, sizeof buf, v));
        }
      /* parsing checks the word or the range; a misfit keeps the default */
      if (text && !cleave_option_parse (d, options, text, NULL))
        g_message ("ignoring the remembered split option %s=%s", d->name, text);
    }
}

static void
restore_options (CleaveSplitPage *self)
{
  g_autoptr(GVariant) grad = NULL, ga = NULL;

  if (!self->settings)
    return;
  grad = g_settings_get_value (self->settings, "grad-split-options");
  ga = g_settings_get_value (self->settings, "ga-split-options");
  options_from_variant (&self->grad_rows, grad, &self->grad);
  options_from_variant (&self->ga_rows, ga, &self->ga);
  show_options (&self->grad_rows, &self->grad);
  show_options (&self->ga_rows, &self->ga);
}

static void
remember_options (CleaveSplitPage *self)
{
  if (!self->settings)
    return;
  g_settings_set_value (self->settings, "grad-split-options", options_to_variant (&self->grad_rows, &self->grad));
  g_settings_set_value (self->settings, "ga-split-options", options_to_variant (&self->ga_rows, &self->ga));
}

static void
on_method_selected (CleaveSplitPage *self)
{
  gboolean ga = method_is_ga (self);

  gtk_widget_set_visible (GTK_WIDGET (self->grad_group), !ga);
  gtk_widget_set_visible (GTK_WIDGET (self->ga_group), ga);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->method_row),
                              ga ? _("A genetic search for each class’s kernels (CNNSplitter)")
                                 : _("Gradient descent on one kernel mask per class (GradSplitter)"));
}

void
cleave_split_page_set_method (CleaveSplitPage *self, const char *method)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  adw_combo_row_set_selected (self->method_row, g_strcmp0 (method, "ga") == 0 ? 1 : 0);
}

void
cleave_split_page_set_dataset (CleaveSplitPage *self, const char *spec)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  cleave_dataset_row_set_spec (self->dataset_row, spec);
}

/* ---- model and devices -------------------------------------------------- */

static void
update_actions (CleaveSplitPage *self)
{
  gboolean running = self->cancellable != NULL;
  GtkWidget *options[] = { GTK_WIDGET (self->dataset_row), GTK_WIDGET (self->device_row), GTK_WIDGET (self->grad_group),
                           GTK_WIDGET (self->ga_group) };

  /* The running split took its options when it started: lock them. */
  for (guint i = 0; i < G_N_ELEMENTS (options); i++)
    gtk_widget_set_sensitive (options[i], !running);
  if (running)
    {
      /* Stays enabled once cancelled, so that the focus can stay on it. */
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "split.cancel", TRUE);
      cleave_gui_hand_focus (self->start_button, self->cancel_button);
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "split.start", FALSE);
    }
  else
    {
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "split.start", self->model != NULL);
      cleave_gui_hand_focus (self->cancel_button, self->start_button);
      gtk_widget_action_set_enabled (GTK_WIDGET (self), "split.cancel", FALSE);
    }
}

void
cleave_split_page_set_model (CleaveSplitPage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));

  /* The running split holds its own copy: it goes on. */
  self->model = model;
  if (model && model->path)
    {
      g_autofree char *base = g_path_get_basename (model->path);
      /* Translators: %s is a model file name */
      g_autofree char *text = g_strdup_printf (_("Split %s"), base);

      gtk_label_set_label (self->model_label, text);
    }
  else
    gtk_label_set_label (self->model_label, model ? _("Split the open model") : _("No model open"));
  if (model && model->dataset && *model->dataset && !self->cancellable)
    cleave_dataset_row_set_spec (self->dataset_row, model->dataset);
  update_actions (self);
}

const char *
cleave_split_page_get_device (CleaveSplitPage *self)
{
  guint i;

  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), NULL);
  i = adw_combo_row_get_selected (self->device_row);
  return i < self->device_ids->len ? g_ptr_array_index (self->device_ids, i) : "auto";
}

static void
on_device_selected (CleaveSplitPage *self)
{
  if (self->settings)
    g_settings_set_string (self->settings, "device", cleave_split_page_get_device (self));
}

static void
fill_devices (CleaveSplitPage *self)
{
  g_autoptr(GPtrArray) devices = cleave_device_list ();
  GtkStringList *names = gtk_string_list_new (NULL);

  g_ptr_array_set_size (self->device_ids, 0);
  gtk_string_list_append (names, _("Automatic (fastest present)"));
  g_ptr_array_add (self->device_ids, g_strdup ("auto"));
  for (guint i = 0; devices && i < devices->len; i++)
    {
      const CleaveDeviceInfo *info = g_ptr_array_index (devices, i);
      g_autofree char *label = g_strdup_printf ("%s — %s", info->name, info->platform);

      gtk_string_list_append (names, label);
      g_ptr_array_add (self->device_ids, g_strdup (info->id));
    }
  g_signal_handlers_block_by_func (self->device_row, on_device_selected, self);
  adw_combo_row_set_model (self->device_row, G_LIST_MODEL (names));
  g_signal_handlers_unblock_by_func (self->device_row, on_device_selected, self);
  g_object_unref (names);
}

static void
select_device (CleaveSplitPage *self, const char *device)
{
  for (guint i = 0; i < self->device_ids->len; i++)
    if (g_strcmp0 (device, g_ptr_array_index (self->device_ids, i)) == 0)
      {
        g_signal_handlers_block_by_func (self->device_row, on_device_selected, self);
        adw_combo_row_set_selected (self->device_row, i);
        g_signal_handlers_unblock_by_func (self->device_row, on_device_selected, self);
      }
}

static void
on_device_setting_changed (CleaveSplitPage *self, const char *key, GSettings *settings)
{
  g_autofree char *device = g_settings_get_string (settings, "device");

  select_device (self, device);
}

void
cleave_split_page_set_settings (CleaveSplitPage *self, GSettings *settings)
{
  g_autofree char *device = NULL;

  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_set_object (&self->settings, settings);
  if (!settings)
    return;
  device = g_settings_get_string (settings, "device");
  select_device (self, device);
  restore_options (self);
  /* The Model page and this page share the device preference. */
  g_signal_connect_object (settings, "changed::device", G_CALLBACK (on_device_setting_changed),
                           self, G_CONNECT_SWAPPED);
}

/* ---- the split --------------------------------------------------------- */

typedef struct {
  CleaveModel *model;          /* private copy */
  char *dataset;
  char *device;
  const char *parts[2];        /* dataset */
  CleaveSplitRequest request;  /* points into the fields above */
  CleaveSplitJobResult result;
  CleaveSplitPage *page;       /* alive: the task holds a reference */
  guint run;
} SplitJob;

static void
split_job_free (SplitJob *job)
{
  cleave_split_job_result_clear (&job->result);
  cleave_model_free (job->model);
  g_free (job->dataset);
  g_free (job->device);
  g_free (job);
}

static const char *
phase_label (CleavePhase phase)
{
  switch (phase)
    {
    case CLEAVE_PHASE_LOAD:
      return _("loading the dataset");
    case CLEAVE_PHASE_HEADS:
      return _("training heads");
    case CLEAVE_PHASE_MASKS:
      return _("training masks");
    case CLEAVE_PHASE_REFIT:
      return _("refitting the chosen modules' heads");
    case CLEAVE_PHASE_IMPORTANCE:
      return _("measuring kernel importance");
    case CLEAVE_PHASE_SENSITIVITY:
      return _("measuring layer sensitivity");
    case CLEAVE_PHASE_GENERATION:
      return _("evolving masks");
    case CLEAVE_PHASE_EVALUATE:
    case CLEAVE_PHASE_TEST:
      return _("evaluating");
    case CLEAVE_PHASE_TRAIN:
    case CLEAVE_PHASE_VALIDATE:
    default:
      return _("training");
    }
}

/* Main loop: moves the bar; once per epoch or generation, a chart point. */
static void
apply_progress (gpointer target, const CleaveProgress *p, guint run)
{
  CleaveSplitPage *self = target;
  double f = p->fraction, elapsed;
  g_autofree char *text = NULL, *eta = NULL;

  if (run != self->run || !self->cancellable)
    return;

  elapsed = (g_get_monotonic_time () - self->started) / 1e6;
  gtk_progress_bar_set_fraction (self->progress_bar, CLAMP (f, 0, 1));
  if (f > 0.005)
    eta = cleave_gui_format_duration (elapsed * (1 - f) / f);
  if (p->epochs > 0)
    /* Translators: "Epoch 3 of 9 · training masks · 1:20 left" */
    text = g_strdup_printf (self->is_ga ? _("Generation %d of %d · %s · %s left") : _("Epoch %d of %d · %s · %s left"),
                            MAX (p->epoch, 1), p->epochs, phase_label (p->phase), eta ? eta : "…");
  else
    text = g_strdup_printf (_("%s · %s left"), phase_label (p->phase), eta ? eta : "…");
  gtk_progress_bar_set_text (self->progress_bar, text);

  if (p->epoch_done)
    {
      double acc = p->val_accuracy, krr = p->krr;
      double loss = self->is_ga ? p->fitness : p->loss;

      g_array_append_val (self->acc_points, acc);
      g_array_append_val (self->krr_points, krr);
      g_array_append_val (self->loss_points, loss);
      show_charts (self);
    }
}

static void
on_split_progress (const CleaveProgress *progress, gpointer user_data)
{
  SplitJob *job = user_data;

  cleave_gui_post_progress (job->page, job->run, progress, apply_progress);
}

/* Worker thread: the job; a cancel that kept modules is still a result. */
static void
split_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  SplitJob *job = task_data;
  GError *error = NULL;

  if (cleave_job_split (&job->request, on_split_progress, job, cancellable, &job->result, &error)
      || job->result.split.set)
    {
      g_clear_error (&error);
      g_task_return_boolean (task, TRUE);
    }
  else
    g_task_return_error (task, error);
}

/* The epoch the splitter selected, from the module set's log: its number
 * (0 before any validation), validation accuracy and why it was chosen. */
static gboolean
selected_epoch (const CleaveModuleSet *set, gint64 *epoch, double *accuracy, char **selection)
{
  const CleaveSplitLogEntry *e = set->log ? cleave_split_log_selected (set->log) : NULL;

  if (e == NULL)
    return FALSE;
  *epoch = e->epoch;
  *accuracy = e->val_accuracy;
  *selection = g_strdup (e->selection ? e->selection : "");
  return TRUE;
}

/* The status line of a cancelled split, and whether its modules are worth
 * keeping: they are when at least one epoch (generation) was validated. */
static char *
cancelled_status (CleaveSplitPage *self, const CleaveModuleSet *set, gboolean *keep)
{
  guint done = self->acc_points->len;
  const char *unit = self->is_ga ? _("generation") : _("epoch");
  gint64 epoch = 0;
  double acc = NAN;
  g_autofree char *selection = NULL;
  gboolean known = set && selected_epoch (set, &epoch, &acc, &selection);

  *keep = set != NULL && done > 0 && (!known || epoch > 0 || isfinite (acc));
  if (!set)
    /* Translators: a split cancelled before the splitter returned anything; %s is "epoch" or "generation" */
    return g_strdup_printf (_("Cancelled at %s %u: the splitter stopped before it had built any modules"), unit, done);
  if (!*keep)
    /* Translators: %s is "epoch" or "generation" */
    return g_strdup_printf (_("Cancelled at %s %u: no %s had been validated yet, so no modules were kept "
                              "(the first validation comes at the end of %s 1)"), unit, done, unit, unit);
  if (known && strstr (selection, "no epoch within"))
    /* Translators: cancelled split whose epochs all lost too much accuracy: epoch numbers, accuracies, mean KRR */
    return g_strdup_printf (_("Cancelled at %s %u: no %s was within the accuracy bound (source %.1f %%), "
                              "so the most accurate one was kept: %s %" G_GINT64_FORMAT ", validation accuracy %.1f %%, mean KRR %.1f %%"),
                            unit, done, unit, 100 * set->source_accuracy, unit, epoch, 100 * acc,
                            100 * cleave_module_set_mean_krr (set));
  /* Translators: cancelled split: epochs done, then the kept modules' composed accuracy and mean KRR */
  return g_strdup_printf (_("Cancelled at %s %u: kept the best %u modules so far (composed accuracy %.1f %%, mean KRR %.1f %%)"),
                          unit, done, set->modules->len, 100 * set->composed_accuracy,
                          100 * cleave_module_set_mean_krr (set));
}

const char *
cleave_split_page_get_status (CleaveSplitPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), NULL);
  return gtk_label_get_label (self->status_label);
}

static void
split_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveSplitPage *self = CLEAVE_SPLIT_PAGE (source);
  GTask *task = G_TASK (result);
  SplitJob *job = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  gboolean ok = g_task_propagate_boolean (task, &error);
  CleaveModuleSet *set = ok ? g_steal_pointer (&job->result.split.set) : NULL;
  gboolean cancelled = job->result.split.cancelled || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  gboolean keep = set != NULL;
  g_autofree char *status = NULL;

  if (!self->status_label)
    {
      /* The window closed while the split ran: nobody to show it to. */
      if (set)
        cleave_module_set_free (set);
      return;
    }
  g_clear_object (&self->cancellable);
  update_actions (self);
  gtk_widget_set_sensitive (GTK_WIDGET (self->method_row), TRUE);

  if (cancelled)
    status = cancelled_status (self, set, &keep);
  if (!keep)
    g_clear_pointer (&set, cleave_module_set_free);
  if (set)
    {
      g_autofree char *base = job->model->path ? g_path_get_basename (job->model->path) : g_strdup (_("model"));
      gboolean ga = job->request.method == CLEAVE_SPLIT_METHOD_GA;
      const char *method = ga ? _("CNNSplitter") : _("GradSplitter");
      g_autofree char *name = NULL;

      if (cancelled)
        /* Translators: name of a module set from a cancelled split: model file, method, epoch or generation number */
        name = g_strdup_printf (_("%s · %s · cancelled at %s %u"), base, method,
                                ga ? _("generation") : _("epoch"), self->acc_points->len);
      else
        {
          /* Translators: name of a module set made in this session: model file and method */
          name = g_strdup_printf (_("%s · %s"), base, method);
          /* Translators: module count, composed accuracy in %, mean kernel retention in % */
          status = g_strdup_printf (_("Done: %d modules, composed accuracy %.1f %%, mean KRR %.1f %%"),
                                    (int) set->modules->len, 100 * set->composed_accuracy,
                                    100 * cleave_module_set_mean_krr (set));
        }
      gtk_progress_bar_set_fraction (self->progress_bar, cancelled ? gtk_progress_bar_get_fraction (self->progress_bar) : 1.0);
      gtk_progress_bar_set_text (self->progress_bar, cancelled ? _("Cancelled") : _("Finished"));
      if (self->workspace)
        cleave_workspace_add_set (self->workspace, set, name);
      else
        cleave_module_set_free (set);
      /* The status line says it already when this page is in view. */
      if (!gtk_widget_get_mapped (GTK_WIDGET (self)))
        gtk_widget_activate_action (GTK_WIDGET (self), "win.toast", "s",
                                    cancelled ? _("Split cancelled: the best modules so far are on the Modules page")
                                              : _("Split finished: the modules are on the Modules page"));
    }
  else if (cancelled)
    gtk_progress_bar_set_text (self->progress_bar, _("Cancelled"));
  else
    {
      status = g_strdup_printf (_("Split failed: %s"), error->message);
      gtk_progress_bar_set_text (self->progress_bar, _("Failed"));
      cleave_gui_show_error_details (GTK_WIDGET (self), _("Split Failed"),
                                     _("The split stopped with an error; the model is unchanged."), error->message);
    }
  gtk_label_set_label (self->status_label, status);
  g_signal_emit (self, signals[SIGNAL_FINISHED], 0, set != NULL, cancelled);
}

gboolean
cleave_split_page_start (CleaveSplitPage *self)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  SplitJob *job;

  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), FALSE);
  if (!self->model || self->cancellable)
    return FALSE;

  read_options (self);
  if (!(method_is_ga (self) ? cleave_ga_split_options_validate (&self->ga, &error)
                            : cleave_grad_split_options_validate (&self->grad, &error)))
    {
      cleave_gui_show_error (GTK_WIDGET (self), _("Invalid Split Options"), error->message);
      return FALSE;
    }
  remember_options (self);
  job = g_new0 (SplitJob, 1);
  job->model = cleave_model_copy (self->model);
  job->dataset = g_strdup (cleave_dataset_row_get_spec (self->dataset_row));
  job->device = g_strdup (cleave_split_page_get_device (self));
  job->parts[0] = job->dataset;
  cleave_split_request_init (&job->request);
  job->request.model = job->model;
  job->request.dataset.parts = job->parts;
  job->request.dataset.data_dirs = (const char *const *) cleave_gui_config ()->data_dirs;
  job->request.device.device = job->device;
  job->request.device.config = &cleave_gui_config ()->backend;
  job->request.method = method_is_ga (self) ? CLEAVE_SPLIT_METHOD_GA : CLEAVE_SPLIT_METHOD_GRAD;
  job->request.seed = method_is_ga (self) ? self->ga.seed : self->grad.seed;
  job->request.grad = self->grad;
  job->request.ga = self->ga;
  job->page = self;
  job->run = ++self->run;

  self->is_ga = method_is_ga (self);
  self->started = g_get_monotonic_time ();
  self->cancellable = g_cancellable_new ();
  clear_points (self);
  gtk_progress_bar_set_fraction (self->progress_bar, 0);
  gtk_progress_bar_set_text (self->progress_bar, _("Loading the dataset…"));
  gtk_label_set_label (self->status_label, _("Splitting…"));
  gtk_widget_set_sensitive (GTK_WIDGET (self->method_row), FALSE);
  update_actions (self);

  task = g_task_new (self, self->cancellable, split_done, NULL);
  g_task_set_source_tag (task, cleave_split_page_start);
  /* A cancelled split still returns the best modules so far: GTask must
   * not turn that result into a "cancelled" error. */
  g_task_set_check_cancellable (task, FALSE);
  g_task_set_task_data (task, job, (GDestroyNotify) split_job_free);
  g_task_run_in_thread (task, split_thread);
  return TRUE;
}

void
cleave_split_page_cancel (CleaveSplitPage *self)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  if (!self->cancellable)
    return;
  g_cancellable_cancel (self->cancellable);
  gtk_progress_bar_set_text (self->progress_bar, _("Cancelling…"));
  update_actions (self);
}

gboolean
cleave_split_page_is_running (CleaveSplitPage *self)
{
  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), FALSE);
  return self->cancellable != NULL;
}

static void
start_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_split_page_start (CLEAVE_SPLIT_PAGE (widget));
}

static void
cancel_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_split_page_cancel (CLEAVE_SPLIT_PAGE (widget));
}

/* ---- life cycle --------------------------------------------------------- */

static void
cleave_split_page_dispose (GObject *object)
{
  CleaveSplitPage *self = CLEAVE_SPLIT_PAGE (object);

  if (self->cancellable)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  g_clear_object (&self->workspace);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_SPLIT_PAGE);
  G_OBJECT_CLASS (cleave_split_page_parent_class)->dispose (object);
}

static void
cleave_split_page_finalize (GObject *object)
{
  CleaveSplitPage *self = CLEAVE_SPLIT_PAGE (object);

  g_ptr_array_unref (self->device_ids);
  g_free (self->grad_rows.widgets);
  g_free (self->ga_rows.widgets);
  g_array_unref (self->acc_points);
  g_array_unref (self->krr_points);
  g_array_unref (self->loss_points);
  G_OBJECT_CLASS (cleave_split_page_parent_class)->finalize (object);
}

static void
cleave_split_page_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    g_value_set_object (value, CLEAVE_SPLIT_PAGE (object)->workspace);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_split_page_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  if (prop_id == PROP_WORKSPACE)
    g_set_object (&CLEAVE_SPLIT_PAGE (object)->workspace, g_value_get_object (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
}

static void
cleave_split_page_class_init (CleaveSplitPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_split_page_dispose;
  object_class->finalize = cleave_split_page_finalize;
  object_class->get_property = cleave_split_page_get_property;
  object_class->set_property = cleave_split_page_set_property;
  props[PROP_WORKSPACE] = g_param_spec_object ("workspace", NULL, NULL, CLEAVE_TYPE_WORKSPACE,
                                               G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  g_type_ensure (CLEAVE_TYPE_DATASET_ROW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-split-page.ui");
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, name)
  BIND (model_label);
  BIND (method_row);
  BIND (dataset_row);
  BIND (device_row);
  BIND (grad_group);
  BIND (ga_group);
  BIND (status_label);
  BIND (start_button);
  BIND (cancel_button);
  BIND (progress_bar);
  BIND (accuracy_chart);
  BIND (loss_chart);
#undef BIND
  gtk_widget_class_bind_template_callback (widget_class, on_device_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_method_selected);
  cleave_gui_bind_leaflet_callbacks (widget_class);

  gtk_widget_class_install_action (widget_class, "split.start", NULL, start_action);
  gtk_widget_class_install_action (widget_class, "split.cancel", NULL, cancel_action);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Return, GDK_CONTROL_MASK, "split.start", NULL);

  signals[SIGNAL_FINISHED] =
    g_signal_new ("finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_BOOLEAN, G_TYPE_BOOLEAN);
}

static void
cleave_split_page_init (CleaveSplitPage *self)
{
  CleaveGradSplitOptions grad;
  CleaveGaSplitOptions ga;

  self->device_ids = g_ptr_array_new_with_free_func (g_free);
  self->acc_points = g_array_new (FALSE, FALSE, sizeof (double));
  self->krr_points = g_array_new (FALSE, FALSE, sizeof (double));
  self->loss_points = g_array_new (FALSE, FALSE, sizeof (double));
  gtk_widget_init_template (GTK_WIDGET (self));
  fill_devices (self);
  {
    guint n;
    const CleaveOptionDesc *t = cleave_grad_split_option_table (&n);
    build_option_rows (self->grad_group, &self->grad_rows, t, n);
    t = cleave_ga_split_option_table (&n);
    build_option_rows (self->ga_group, &self->ga_rows, t, n);
  }

  cleave_grad_split_options_init (&grad);
  cleave_ga_split_options_init (&ga);
  self->grad = grad;
  self->ga = ga;
  cleave_split_page_set_ga_options (self, &ga);
  cleave_split_page_set_grad_options (self, &grad);
  on_method_selected (self);
  gtk_progress_bar_set_text (self->progress_bar, _("Not started"));
  show_charts (self);
  update_actions (self);
}
