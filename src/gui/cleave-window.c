/* cleave-window.c: page switching, model loading, drops and recent files. */
#include <glib/gi18n.h>

#include "cleave-window.h"
#include "cleave-chart-view.h"
#include "cleave-compose-page.h"
#include "cleave-gui-util.h"
#include "cleave-model-page.h"
#include "cleave-modules-page.h"
#include "cleave-split-page.h"
#include "cleave-start-page.h"
#include "cleave-workspace.h"
#include "cleave-file-kind.h"
#include "cleave-compose-recipe.h"
#include "cleave-onnx.h"
#include "cleave-arch.h"
#include <stdio.h>

#define MAX_RECENT 10

struct _CleaveWindow
{
  AdwApplicationWindow parent_instance;

  /* template children */
  AdwViewStack *stack;
  AdwToastOverlay *toasts;
  CleaveStartPage *start_page;
  CleaveModelPage *model_page;
  CleaveSplitPage *split_page;
  CleaveModulesPage *modules_page;
  CleaveComposePage *compose_page;

  CleaveWorkspace *workspace;
  GCancellable *load_cancellable;
  GtkFileChooserNative *chooser;
};

G_DEFINE_FINAL_TYPE (CleaveWindow, cleave_window, ADW_TYPE_APPLICATION_WINDOW)

enum {
  SIGNAL_LOAD_FINISHED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static GSettings *
settings_of (CleaveWindow *self)
{
  GtkApplication *app = gtk_window_get_application (GTK_WINDOW (self));

  return app ? cleave_application_get_settings (CLEAVE_APPLICATION (app)) : NULL;
}

void
cleave_window_toast (CleaveWindow *self, const char *message)
{
  AdwToast *toast = adw_toast_new (message);

  adw_toast_set_timeout (toast, 5);
  adw_toast_overlay_add_toast (self->toasts, toast);
}

static void
remember_recent (CleaveWindow *self, const char *path)
{
  GSettings *settings = settings_of (self);
  g_auto(GStrv) old = NULL;
  g_autoptr(GStrvBuilder) builder = NULL;
  g_auto(GStrv) recent = NULL;
  guint n = 1;

  if (!settings)
    return;
  old = g_settings_get_strv (settings, "recent-files");
  builder = g_strv_builder_new ();
  g_strv_builder_add (builder, path);
  for (guint i = 0; old[i] && n < MAX_RECENT; i++)
    if (g_strcmp0 (old[i], path) != 0)
      {
        g_strv_builder_add (builder, old[i]);
        n++;
      }
  recent = g_strv_builder_end (builder);
  g_settings_set_strv (settings, "recent-files", (const char *const *) recent);
}

/* What the worker made of a file: a model, a module set, a composition or
 * a patched model (these two reopen on the Compose page), or just its kind
 * (weights that need an architecture). */
typedef struct {
  CleaveFileKind kind;
  CleaveModel *model;
  CleaveModuleSet *set;
  CleaveComposition *composition;
  CleavePatched *patched;
} Loaded;

static void
loaded_free (Loaded *l)
{
  cleave_model_free (l->model);
  if (l->set)
    cleave_module_set_free (l->set);
  cleave_composition_free (l->composition);
  cleave_patched_free (l->patched);
  g_free (l);
}

/* A weights-only file with the architecture the user named for it. */
typedef struct {
  char *arch;
  int c, h, w, n_classes;
} ArchChoice;

static void
load_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  const char *path = task_data;
  const ArchChoice *arch = g_object_get_data (G_OBJECT (task), "arch");
  GError *error = NULL;
  Loaded *l = g_new0 (Loaded, 1);
  gboolean ok = cleave_file_kind_detect (path, &l->kind, &error);

  if (ok && l->kind == CLEAVE_FILE_STATE_DICT && arch)
    ok = (l->model = cleave_model_load_with_arch (path, arch->arch, arch->c, arch->h, arch->w, arch->n_classes,
                                                  &error)) != NULL;
  else if (ok && l->kind == CLEAVE_FILE_MODEL)
    ok = (l->model = cleave_model_load (path, &error)) != NULL;
  else if (ok && l->kind == CLEAVE_FILE_ONNX)
    ok = (l->model = cleave_onnx_load_model (path, &error)) != NULL;
  else if (ok && l->kind == CLEAVE_FILE_MODULE_SET)
    ok = (l->set = cleave_module_set_load (path, &error)) != NULL;
  else if (ok && l->kind == CLEAVE_FILE_COMPOSITION)
    ok = (l->composition = cleave_composition_load (path, &error)) != NULL;
  else if (ok && l->kind == CLEAVE_FILE_PATCHED)
    ok = (l->patched = cleave_patched_load (path, &error)) != NULL;
  if (ok)
    g_task_return_pointer (task, l, (GDestroyNotify) loaded_free);
  else
    {
      loaded_free (l);
      g_task_return_error (task, error);
    }
}

static void
on_module_set_response (AdwMessageDialog *dialog, const char *response, CleaveWindow *self)
{
  CleaveModuleSet *set = g_object_steal_data (G_OBJECT (dialog), "module-set");
  const char *name = g_object_get_data (G_OBJECT (dialog), "name");

  if (g_strcmp0 (response, "open") == 0 && set)
    {
      cleave_workspace_add_set (self->workspace, set, name);
      cleave_window_show_page (self, "modules");
    }
  else if (set)
    cleave_module_set_free (set);
}

/* A module set opened as a model: offer to open it where it belongs. */
static void
offer_module_set (CleaveWindow *self, const char *path, CleaveModuleSet *set)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *source = set->source_path ? g_path_get_basename (set->source_path) : g_strdup (_("a model"));
  /* Translators: file name, number of modules, source model file name */
  g_autofree char *body = g_strdup_printf (_("“%s” holds %u modules split from %s, not a model. Open it on the "
                                             "Modules page, where its modules can be composed and used for patching?"),
                                           base, set->modules->len, source);
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), _("This Is a Module Set"), body);

  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"),
                                    "open", _("_Open on Modules Page"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "open", ADW_RESPONSE_SUGGESTED);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "open");
  g_object_set_data_full (G_OBJECT (dialog), "module-set", set, (GDestroyNotify) cleave_module_set_free);
  g_object_set_data_full (G_OBJECT (dialog), "name", g_steal_pointer (&base), g_free);
  g_signal_connect (dialog, "response", G_CALLBACK (on_module_set_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

/* The modules of a composition (or of a patched model's patches) become
 * open sets, and a recipe refers to them; @targets: the patched classes,
 * NULL for a composition. */
static GArray *
recipe_from (CleaveWindow *self, const char *base, CleaveComposition *c, const int *targets)
{
  GArray *recipe = cleave_recipe_new ();
  g_autoptr(GPtrArray) items = g_ptr_array_new ();

  for (guint s = 0; s < c->sources->len; s++)
    {
      CleaveModuleSet *set = g_steal_pointer (&c->sources->pdata[s]);
      g_autofree char *source = set->source_path ? g_path_get_basename (set->source_path) : g_strdup ("?");
      /* Translators: name of the modules of a reopened file: the file, then the model they were split from */
      g_autofree char *name = g_strdup_printf (_("%s · modules of %s"), base, source);

      g_ptr_array_add (items, cleave_workspace_add_set (self->workspace, set, name));
    }
  for (guint k = 0; k < c->classes->len; k++)
    {
      const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
      g_autoptr(CleaveModuleRef) ref = cleave_module_ref_new (items->pdata[cc->source], (guint) cc->module);

      cleave_recipe_append (recipe, ref, targets ? targets[k] : -1);
    }
  return recipe;
}

/* A composition or patched model reopens on the Compose page, where it
 * can be evaluated, changed and exported again. */
static void
reopen_on_compose_page (CleaveWindow *self, const char *path, Loaded *l)
{
  g_autofree char *base = g_path_get_basename (path);
  g_autofree char *message = NULL;

  if (l->composition)
    cleave_compose_page_set_recipe (self->compose_page, NULL, recipe_from (self, base, l->composition, NULL));
  else
    {
      GArray *recipe = recipe_from (self, base, l->patched->modules, l->patched->target);

      cleave_compose_page_set_recipe (self->compose_page, g_steal_pointer (&l->patched->weak), recipe);
    }
  remember_recent (self, path);
  cleave_window_show_page (self, "compose");
  /* Translators: %s is a file name */
  message = g_strdup_printf (_("Opened %s on the Compose page"), base);
  cleave_window_toast (self, message);
}

static void open_path_with_arch (CleaveWindow *self, const char *path, ArchChoice *arch);

static void
arch_choice_free (ArchChoice *a)
{
  g_free (a->arch);
  g_free (a);
}

static void
on_arch_response (AdwMessageDialog *dialog, const char *response, CleaveWindow *self)
{
  GtkDropDown *presets = g_object_get_data (G_OBJECT (dialog), "presets");
  GtkEditable *input = g_object_get_data (G_OBJECT (dialog), "input");
  GtkSpinButton *classes = g_object_get_data (G_OBJECT (dialog), "classes");
  const char *path = g_object_get_data (G_OBJECT (dialog), "path");
  ArchChoice *a;

  if (g_strcmp0 (response, "open") != 0)
    return;
  a = g_new0 (ArchChoice, 1);
  a->arch = g_strdup (gtk_string_object_get_string (gtk_drop_down_get_selected_item (presets)));
  a->n_classes = gtk_spin_button_get_value_as_int (classes);
  if (sscanf (gtk_editable_get_text (input), "%dx%dx%d", &a->c, &a->h, &a->w) != 3 || a->c <= 0 || a->h <= 0 || a->w <= 0)
    {
      cleave_gui_show_error_details (GTK_WIDGET (self), _("Could Not Open the File"),
                                     _("The input size must look like 1x28x28 (channels × height × width)."),
                                     gtk_editable_get_text (input));
      arch_choice_free (a);
      return;
    }
  open_path_with_arch (self, path, a);
}

/* Weights without a graph: ask which architecture they belong to. */
static void
ask_architecture (CleaveWindow *self, const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  /* Translators: %s is a file name */
  g_autofree char *body = g_strdup_printf (_("“%s” holds weights only (a PyTorch state_dict), without the network "
                                             "that uses them. Which architecture are they for?"), base);
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), _("Which Architecture?"), body);
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  GtkWidget *presets = gtk_drop_down_new_from_strings ((const char *const *) cleave_arch_presets ());
  GtkWidget *input = gtk_entry_new ();
  GtkWidget *classes = gtk_spin_button_new_with_range (2, 1000, 1);

  gtk_editable_set_text (GTK_EDITABLE (input), "1x28x28");
  gtk_widget_set_tooltip_text (input, _("Input size: channels × height × width"));
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (classes), 10);
  gtk_widget_set_tooltip_text (classes, _("Number of classes"));
  gtk_box_append (GTK_BOX (box), presets);
  gtk_box_append (GTK_BOX (box), input);
  gtk_box_append (GTK_BOX (box), classes);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (dialog), box);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", _("_Cancel"), "open", _("_Open"), NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "open", ADW_RESPONSE_SUGGESTED);
  g_object_set_data (G_OBJECT (dialog), "presets", presets);
  g_object_set_data (G_OBJECT (dialog), "input", input);
  g_object_set_data (G_OBJECT (dialog), "classes", classes);
  g_object_set_data_full (G_OBJECT (dialog), "path", g_strdup (path), g_free);
  g_signal_connect (dialog, "response", G_CALLBACK (on_arch_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
load_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveWindow *self = CLEAVE_WINDOW (source);
  GTask *task = G_TASK (result);
  g_autoptr(GError) error = NULL;
  Loaded *l = g_task_propagate_pointer (task, &error);
  const char *path = g_task_get_task_data (task);
  CleaveModel *model = l ? g_steal_pointer (&l->model) : NULL;

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_clear_object (&self->load_cancellable);

  if (!model)
    {
      if (l && l->kind == CLEAVE_FILE_MODULE_SET)
        offer_module_set (self, path, g_steal_pointer (&l->set));
      else if (l && l->kind == CLEAVE_FILE_STATE_DICT)
        ask_architecture (self, path);
      else if (l)
        reopen_on_compose_page (self, path, l);
      else
        cleave_gui_show_error_details (GTK_WIDGET (self), _("Could Not Open the File"),
                                       cleave_gui_file_error_text (error), error->message);
      g_clear_pointer (&l, loaded_free);
      g_signal_emit (self, signals[SIGNAL_LOAD_FINISHED], 0, FALSE);
      return;
    }
  loaded_free (l);
  cleave_workspace_set_model (self->workspace, model);

  remember_recent (self, path);
  {
    g_autofree char *base = g_path_get_basename (path);

    gtk_window_set_title (GTK_WINDOW (self), base);
  }
  adw_view_stack_set_visible_child_name (self->stack, "model");
  g_signal_emit (self, signals[SIGNAL_LOAD_FINISHED], 0, TRUE);
}

static void
start_load (CleaveWindow *self, char *path /* taken */, ArchChoice *arch /* taken, nullable */)
{
  g_autoptr(GTask) task = NULL;

  if (self->load_cancellable)
    g_cancellable_cancel (self->load_cancellable);
  g_clear_object (&self->load_cancellable);
  self->load_cancellable = g_cancellable_new ();

  task = g_task_new (self, self->load_cancellable, load_done, NULL);
  g_task_set_source_tag (task, cleave_window_open_file);
  g_task_set_task_data (task, path, g_free);
  if (arch)
    g_object_set_data_full (G_OBJECT (task), "arch", arch, (GDestroyNotify) arch_choice_free);
  g_task_run_in_thread (task, load_thread);
}

static void
open_path_with_arch (CleaveWindow *self, const char *path, ArchChoice *arch)
{
  start_load (self, g_strdup (path), arch);
}

void
cleave_window_open_file (CleaveWindow *self, GFile *file)
{
  char *path;

  g_return_if_fail (CLEAVE_IS_WINDOW (self));
  g_return_if_fail (G_IS_FILE (file));

  path = g_file_get_path (file);
  if (!path)
    {
      cleave_window_toast (self, _("Only local files can be opened"));
      return;
    }
  start_load (self, path, NULL);
}

gboolean
cleave_window_is_loading (CleaveWindow *self)
{
  g_return_val_if_fail (CLEAVE_IS_WINDOW (self), FALSE);
  return self->load_cancellable != NULL;
}

CleaveWorkspace *
cleave_window_get_workspace (CleaveWindow *self)
{
  g_return_val_if_fail (CLEAVE_IS_WINDOW (self), NULL);
  return self->workspace;
}

gboolean
cleave_window_open_demo (CleaveWindow *self)
{
  g_autofree char *path = cleave_application_find_demo_model ();
  g_autoptr(GFile) file = NULL;

  if (!path)
    {
      cleave_window_toast (self, _("The demo model is not installed"));
      return FALSE;
    }
  file = g_file_new_for_path (path);
  cleave_window_open_file (self, file);
  return TRUE;
}

void
cleave_window_show_page (CleaveWindow *self, const char *name)
{
  g_return_if_fail (CLEAVE_IS_WINDOW (self));
  if (adw_view_stack_get_child_by_name (self->stack, name))
    adw_view_stack_set_visible_child_name (self->stack, name);
}

GtkWidget *
cleave_window_get_page (CleaveWindow *self, const char *name)
{
  g_return_val_if_fail (CLEAVE_IS_WINDOW (self), NULL);
  return adw_view_stack_get_child_by_name (self->stack, name);
}

static void
on_chooser_response (GtkNativeDialog *dialog, int response, CleaveWindow *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));

      if (file)
        cleave_window_open_file (self, file);
    }
  g_clear_object (&self->chooser);
}

static void
open_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveWindow *self = CLEAVE_WINDOW (widget);
  g_autoptr(GtkFileFilter) models = gtk_file_filter_new ();
  g_autoptr(GtkFileFilter) onnx = gtk_file_filter_new ();
  g_autoptr(GtkFileFilter) all = gtk_file_filter_new ();

  if (self->chooser)
    return;
  gtk_file_filter_set_name (models, _("Models (Cleave, safetensors, ONNX)"));
  gtk_file_filter_add_pattern (models, "*.safetensors");
  gtk_file_filter_add_pattern (models, "*.onnx");
  gtk_file_filter_add_pattern (models, "*.cleave-modules");
  gtk_file_filter_add_pattern (models, "*.cleave-composition");
  gtk_file_filter_add_pattern (models, "*.cleave-patched");
  gtk_file_filter_set_name (onnx, _("ONNX models (*.onnx)"));
  gtk_file_filter_add_pattern (onnx, "*.onnx");
  gtk_file_filter_set_name (all, _("All files"));
  gtk_file_filter_add_pattern (all, "*");

  self->chooser = gtk_file_chooser_native_new (_("Open Model"), GTK_WINDOW (self),
                                               GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), models);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), onnx);
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (self->chooser), all);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
open_demo_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_window_open_demo (CLEAVE_WINDOW (widget));
}

static void
open_path_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  g_autoptr(GFile) file = g_file_new_for_path (g_variant_get_string (param, NULL));

  cleave_window_open_file (CLEAVE_WINDOW (widget), file);
}

static void
show_page_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_window_show_page (CLEAVE_WINDOW (widget), g_variant_get_string (param, NULL));
}

static void
toast_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_window_toast (CLEAVE_WINDOW (widget), g_variant_get_string (param, NULL));
}

/* The pages that predate the workspace take the model by a setter; the
 * others follow the workspace themselves. */
static void
on_model_changed (CleaveWindow *self)
{
  CleaveModel *model = cleave_workspace_get_model (self->workspace);

  cleave_model_page_set_model (self->model_page, model);
  cleave_split_page_set_model (self->split_page, model);
}

static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveWindow *self)
{
  g_autoptr(GFile) file = cleave_gui_dropped_file (value);

  if (!file)
    return FALSE;
  cleave_window_open_file (self, file);
  return TRUE;
}

static gboolean
cleave_window_close_request (GtkWindow *window)
{
  CleaveWindow *self = CLEAVE_WINDOW (window);

  if (self->load_cancellable)
    g_cancellable_cancel (self->load_cancellable);
  return GTK_WINDOW_CLASS (cleave_window_parent_class)->close_request (window);
}

static void
cleave_window_dispose (GObject *object)
{
  CleaveWindow *self = CLEAVE_WINDOW (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  if (self->load_cancellable)
    g_cancellable_cancel (self->load_cancellable);
  g_clear_object (&self->load_cancellable);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_WINDOW);
  /* After the pages are gone: they borrow the model and the sets. */
  if (self->workspace)
    g_signal_handlers_disconnect_by_data (self->workspace, self);
  g_clear_object (&self->workspace);
  G_OBJECT_CLASS (cleave_window_parent_class)->dispose (object);
}

static void
cleave_window_class_init (CleaveWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_window_dispose;
  GTK_WINDOW_CLASS (klass)->close_request = cleave_window_close_request;

  signals[SIGNAL_LOAD_FINISHED] =
    g_signal_new ("load-finished", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);

  /* Pages are template children: make sure their types exist. */
  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  g_type_ensure (CLEAVE_TYPE_START_PAGE);
  g_type_ensure (CLEAVE_TYPE_MODEL_PAGE);
  g_type_ensure (CLEAVE_TYPE_SPLIT_PAGE);
  g_type_ensure (CLEAVE_TYPE_MODULES_PAGE);
  g_type_ensure (CLEAVE_TYPE_COMPOSE_PAGE);

  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-window.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, stack);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, toasts);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, start_page);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, model_page);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, split_page);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, modules_page);
  gtk_widget_class_bind_template_child (widget_class, CleaveWindow, compose_page);

  gtk_widget_class_install_action (widget_class, "win.open", NULL, open_action);
  gtk_widget_class_install_action (widget_class, "win.open-demo", NULL, open_demo_action);
  gtk_widget_class_install_action (widget_class, "win.open-path", "s", open_path_action);
  gtk_widget_class_install_action (widget_class, "win.show-page", "s", show_page_action);
  gtk_widget_class_install_action (widget_class, "win.toast", "s", toast_action);
}

static void
cleave_window_init (CleaveWindow *self)
{
  GtkDropTarget *drop;
  g_autofree char *demo = cleave_application_find_demo_model ();

  gtk_widget_init_template (GTK_WIDGET (self));
  self->workspace = cleave_workspace_new ();
  g_signal_connect_swapped (self->workspace, "notify::model", G_CALLBACK (on_model_changed), self);
  g_object_set (self->split_page, "workspace", self->workspace, NULL);
  g_object_set (self->modules_page, "workspace", self->workspace, NULL);
  g_object_set (self->compose_page, "workspace", self->workspace, NULL);

  drop = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));

  gtk_widget_action_set_enabled (GTK_WIDGET (self), "win.open-demo", demo != NULL);
}

static void
bind_settings (CleaveWindow *self)
{
  GSettings *settings = settings_of (self);

  if (!settings)
    return;
  g_settings_bind (settings, "window-width", self, "default-width", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (settings, "window-height", self, "default-height", G_SETTINGS_BIND_DEFAULT);
  g_settings_bind (settings, "window-maximized", self, "maximized", G_SETTINGS_BIND_DEFAULT);
  cleave_start_page_set_settings (self->start_page, settings);
  cleave_model_page_set_settings (self->model_page, settings);
  cleave_split_page_set_settings (self->split_page, settings);
  cleave_compose_page_set_settings (self->compose_page, settings);
}

CleaveWindow *
cleave_window_new (CleaveApplication *app)
{
  CleaveWindow *self = g_object_new (CLEAVE_TYPE_WINDOW, "application", app, NULL);

  /* The application is known only now, and with it the settings. */
  bind_settings (self);
  return self;
}
