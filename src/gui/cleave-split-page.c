/* cleave-split-page.c: runs GradSplitter or CNNSplitter on a worker thread.
 *
 * The splitters call the progress function on the worker; every report is
 * copied and handed to the main loop with g_main_context_invoke, where it
 * moves the progress bar and, once per epoch or generation, adds a point to
 * the live charts. Reports of an earlier run that arrive late are dropped
 * by comparing run numbers. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-split-page.h"
#include "cleave-chart-view.h"
#include "cleave-dataset-row.h"
#include "cleave-device.h"
#include "cleave-error.h"
#include "cleave-gui-util.h"
#include "cleave-workspace.h"
#include <json-glib/json-glib.h>
#include <string.h>

/* The validation share of the training split, as `cleave-cli train/split`. */
#define VAL_FRACTION 0.2

struct _CleaveSplitPage
{
  AdwBin parent_instance;

  GtkLabel *model_label;
  AdwComboRow *method_row;
  CleaveDatasetRow *dataset_row;
  AdwComboRow *device_row;
  AdwPreferencesGroup *grad_group;
  AdwPreferencesGroup *ga_group;
  GtkSpinButton *rounds_spin;
  GtkSpinButton *mask_epochs_spin;
  GtkSpinButton *head_epochs_spin;
  GtkSpinButton *train_images_spin;
  GtkSpinButton *batch_spin;
  GtkSpinButton *alpha_spin;
  GtkSpinButton *lr_mask_spin;
  GtkSpinButton *population_spin;
  GtkSpinButton *generations_spin;
  GtkSpinButton *mutation_spin;
  AdwComboRow *fitness_row;
  GtkSpinButton *val_images_spin;
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

void
cleave_split_page_set_grad_options (CleaveSplitPage *self, const CleaveGradSplitOptions *opt)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  self->grad = *opt;
  gtk_spin_button_set_value (self->rounds_spin, opt->rounds);
  gtk_spin_button_set_value (self->mask_epochs_spin, opt->mask_epochs);
  gtk_spin_button_set_value (self->head_epochs_spin, opt->head_epochs);
  gtk_spin_button_set_value (self->train_images_spin, opt->train_images);
  gtk_spin_button_set_value (self->batch_spin, opt->batch);
  gtk_spin_button_set_value (self->alpha_spin, opt->alpha);
  gtk_spin_button_set_value (self->lr_mask_spin, opt->lr_mask);
  if (!method_is_ga (self))
    gtk_spin_button_set_value (self->val_images_spin, opt->val_images);
}

void
cleave_split_page_set_ga_options (CleaveSplitPage *self, const CleaveGaSplitOptions *opt)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  self->ga = *opt;
  gtk_spin_button_set_value (self->population_spin, opt->population);
  gtk_spin_button_set_value (self->generations_spin, opt->generations);
  gtk_spin_button_set_value (self->mutation_spin, opt->mutation);
  adw_combo_row_set_selected (self->fitness_row, opt->fitness == CLEAVE_GA_FITNESS_KRR ? 1 : 0);
  if (method_is_ga (self))
    gtk_spin_button_set_value (self->val_images_spin, opt->val_images);
}

/* Rows → option structs; the validation row belongs to the shown method. */
static void
read_options (CleaveSplitPage *self)
{
  int val_images = gtk_spin_button_get_value_as_int (self->val_images_spin);

  self->grad.rounds = gtk_spin_button_get_value_as_int (self->rounds_spin);
  self->grad.mask_epochs = gtk_spin_button_get_value_as_int (self->mask_epochs_spin);
  self->grad.head_epochs = gtk_spin_button_get_value_as_int (self->head_epochs_spin);
  self->grad.train_images = gtk_spin_button_get_value_as_int (self->train_images_spin);
  self->grad.batch = gtk_spin_button_get_value_as_int (self->batch_spin);
  self->grad.alpha = (float) gtk_spin_button_get_value (self->alpha_spin);
  self->grad.lr_mask = (float) gtk_spin_button_get_value (self->lr_mask_spin);
  self->ga.population = gtk_spin_button_get_value_as_int (self->population_spin);
  self->ga.generations = gtk_spin_button_get_value_as_int (self->generations_spin);
  self->ga.mutation = gtk_spin_button_get_value (self->mutation_spin);
  self->ga.fitness = adw_combo_row_get_selected (self->fitness_row) == 1
    ? CLEAVE_GA_FITNESS_KRR : CLEAVE_GA_FITNESS_REFERENCE;
  /* The GA keeps parents and elites below the population. */
  self->ga.parents = MIN (self->ga.parents, MAX (1, self->ga.population / 2));
  self->ga.elites = MIN (self->ga.elites, self->ga.parents);
  if (method_is_ga (self))
    self->ga.val_images = val_images;
  else
    self->grad.val_images = val_images;
}

static void
on_method_selected (CleaveSplitPage *self)
{
  gboolean ga = method_is_ga (self);

  gtk_widget_set_visible (GTK_WIDGET (self->grad_group), !ga);
  gtk_widget_set_visible (GTK_WIDGET (self->ga_group), ga);
  /* The shared validation row shows the chosen method's value. */
  gtk_spin_button_set_value (self->val_images_spin, ga ? self->ga.val_images : self->grad.val_images);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->method_row),
                              ga ? _("A genetic search for each class’s kernels (CNNSplitter)")
                                 : _("Gradient descent on one kernel mask per class (GradSplitter)"));
}

void
cleave_split_page_set_method (CleaveSplitPage *self, const char *method)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  if (method_is_ga (self))
    self->ga.val_images = gtk_spin_button_get_value_as_int (self->val_images_spin);
  else
    self->grad.val_images = gtk_spin_button_get_value_as_int (self->val_images_spin);
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
                           GTK_WIDGET (self->ga_group), GTK_WIDGET (self->val_images_spin) };

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
  /* The Model page and this page share the device preference. */
  g_signal_connect_object (settings, "changed::device", G_CALLBACK (on_device_setting_changed),
                           self, G_CONNECT_SWAPPED);
}

/* ---- the split --------------------------------------------------------- */

typedef struct {
  CleaveModel *model;          /* private copy */
  char *dataset;
  char *device;
  gboolean ga;
  CleaveGradSplitOptions grad;
  CleaveGaSplitOptions gaopt;
  CleaveSplitPage *page;       /* alive: the task holds a reference */
  guint run;
  gboolean cancelled;          /* out */
} SplitJob;

static void
split_job_free (SplitJob *job)
{
  cleave_model_free (job->model);
  g_free (job->dataset);
  g_free (job->device);
  g_free (job);
}

typedef struct {
  CleaveSplitPage *page;       /* strong */
  guint run;
  CleaveProgress p;
  char *phase;
} ProgressUpdate;

static void
progress_update_free (gpointer data)
{
  ProgressUpdate *u = data;

  g_object_unref (u->page);
  g_free (u->phase);
  g_free (u);
}

static const char *
phase_label (const char *phase)
{
  if (!phase)
    return "";
  if (g_str_equal (phase, "heads"))
    return _("training heads");
  if (g_str_equal (phase, "masks"))
    return _("training masks");
  if (g_str_equal (phase, "refit"))
    return _("refitting the chosen modules' heads");
  if (g_str_equal (phase, "importance"))
    return _("measuring kernel importance");
  if (g_str_equal (phase, "sensitivity"))
    return _("measuring layer sensitivity");
  if (g_str_equal (phase, "generation"))
    return _("evolving masks");
  return phase;
}

static gboolean
apply_progress (gpointer data)
{
  ProgressUpdate *u = data;
  CleaveSplitPage *self = u->page;
  double f = u->p.fraction, elapsed;
  g_autofree char *text = NULL, *eta = NULL;

  if (u->run != self->run || !self->cancellable)
    return G_SOURCE_REMOVE;

  elapsed = (g_get_monotonic_time () - self->started) / 1e6;
  gtk_progress_bar_set_fraction (self->progress_bar, CLAMP (f, 0, 1));
  if (f > 0.005)
    eta = cleave_gui_format_duration (elapsed * (1 - f) / f);
  if (u->p.epochs > 0)
    /* Translators: "Epoch 3 of 9 · training masks · 1:20 left" */
    text = g_strdup_printf (self->is_ga ? _("Generation %d of %d · %s · %s left") : _("Epoch %d of %d · %s · %s left"),
                            MAX (u->p.epoch, 1), u->p.epochs, phase_label (u->phase), eta ? eta : "…");
  else
    text = g_strdup_printf (_("%s · %s left"), phase_label (u->phase), eta ? eta : "…");
  gtk_progress_bar_set_text (self->progress_bar, text);

  if (u->p.epoch_done)
    {
      double acc = u->p.val_accuracy, krr = u->p.krr;
      double loss = self->is_ga ? u->p.fitness : u->p.loss;

      g_array_append_val (self->acc_points, acc);
      g_array_append_val (self->krr_points, krr);
      g_array_append_val (self->loss_points, loss);
      show_charts (self);
    }
  return G_SOURCE_REMOVE;
}

/* Worker thread: copy the report and hand it to the main loop. */
static void
on_split_progress (const CleaveProgress *progress, gpointer user_data)
{
  SplitJob *job = user_data;
  ProgressUpdate *u = g_new0 (ProgressUpdate, 1);

  u->page = g_object_ref (job->page);
  u->run = job->run;
  u->p = *progress;
  u->phase = g_strdup (progress->phase);
  u->p.phase = NULL;
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, apply_progress, u, progress_update_free);
}

static void
split_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  SplitJob *job = task_data;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  int n_train = 0, n_val = 0;
  CleaveModuleSet *set = NULL;
  GError *error = NULL;

  ds = cleave_dataset_load (job->dataset, CLEAVE_SPLIT_TRAIN, cancellable, &error);
  if (ds && ds->n_classes != job->model->n_classes)
    g_set_error (&error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                 _("The dataset has %d classes, the model %d"), ds->n_classes, job->model->n_classes);
  if (!error)
    backend = cleave_device_open (g_strcmp0 (job->device, "auto") == 0 ? NULL : job->device, &error);
  if (!error)
    {
      cleave_dataset_split (ds, VAL_FRACTION, job->ga ? job->gaopt.seed : job->grad.seed,
                            &train_idx, &n_train, &val_idx, &n_val);
      if (job->ga)
        set = cleave_ga_split (job->model, backend, ds, val_idx, n_val, &job->gaopt, on_split_progress, job,
                               cancellable, &job->cancelled, &error);
      else
        set = cleave_grad_split (job->model, backend, ds, train_idx, n_train, val_idx, n_val, &job->grad,
                                 on_split_progress, job, cancellable, &job->cancelled, &error);
    }
  if (set)
    {
      g_free (set->source_path);
      set->source_path = g_strdup (job->model->path);
      if (!set->dataset)
        set->dataset = g_strdup (job->dataset);
      g_task_return_pointer (task, set, (GDestroyNotify) cleave_module_set_free);
    }
  else if (error)
    g_task_return_error (task, error);
  else
    g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, _("Cancelled"));
}

/* The epoch the splitter selected, from the module set's log: its number
 * (0 before any validation), validation accuracy and why it was chosen. */
static gboolean
selected_epoch (const CleaveModuleSet *set, gint64 *epoch, double *accuracy, char **selection)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  JsonArray *log;

  if (!set->log_json || !json_parser_load_from_data (parser, set->log_json, -1, NULL) ||
      !JSON_NODE_HOLDS_ARRAY (json_parser_get_root (parser)))
    return FALSE;
  log = json_node_get_array (json_parser_get_root (parser));
  for (guint i = 0; i < json_array_get_length (log); i++)
    {
      JsonNode *node = json_array_get_element (log, i);
      JsonObject *o = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;

      if (!o || !json_object_get_boolean_member_with_default (o, "selected", FALSE))
        continue;
      *epoch = json_object_get_int_member_with_default (o, "epoch",
                                                        json_object_get_int_member_with_default (o, "generation", 0));
      *accuracy = json_object_get_double_member_with_default (o, "val_accuracy", NAN);
      *selection = g_strdup (json_object_get_string_member_with_default (o, "selection", ""));
      return TRUE;
    }
  return FALSE;
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
  CleaveModuleSet *set = g_task_propagate_pointer (task, &error);
  gboolean cancelled = job->cancelled || g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
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
      const char *method = job->ga ? _("CNNSplitter") : _("GradSplitter");
      g_autofree char *name = NULL;

      if (cancelled)
        /* Translators: name of a module set from a cancelled split: model file, method, epoch or generation number */
        name = g_strdup_printf (_("%s · %s · cancelled at %s %u"), base, method,
                                job->ga ? _("generation") : _("epoch"), self->acc_points->len);
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
  SplitJob *job;

  g_return_val_if_fail (CLEAVE_IS_SPLIT_PAGE (self), FALSE);
  if (!self->model || self->cancellable)
    return FALSE;

  read_options (self);
  job = g_new0 (SplitJob, 1);
  job->model = cleave_gui_copy_model (self->model);
  job->dataset = g_strdup (cleave_dataset_row_get_spec (self->dataset_row));
  job->device = g_strdup (cleave_split_page_get_device (self));
  job->ga = method_is_ga (self);
  job->grad = self->grad;
  job->gaopt = self->ga;
  job->page = self;
  job->run = ++self->run;

  self->is_ga = job->ga;
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
  BIND (rounds_spin);
  BIND (mask_epochs_spin);
  BIND (head_epochs_spin);
  BIND (train_images_spin);
  BIND (batch_spin);
  BIND (alpha_spin);
  BIND (lr_mask_spin);
  BIND (population_spin);
  BIND (generations_spin);
  BIND (mutation_spin);
  BIND (fitness_row);
  BIND (val_images_spin);
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
