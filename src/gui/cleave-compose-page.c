/* cleave-compose-page.c: composing new models from modules and patching
 * weak models, by drag and drop or keyboard.
 *
 * The page keeps recipes, not core objects: which (set, module) serves each
 * composed class, and which module patches each weak class. The window owns
 * the sets for its whole life, so the references stay valid; the core
 * composition or patched model is rebuilt from the recipe whenever it is
 * needed (validating a drop, evaluating, exporting), which makes removing
 * an entry trivial and leaves every check to the core. */
#include <glib/gi18n.h>

#include "cleave-dataset.h"
#include <math.h>

#include "cleave-compose-page.h"
#include "cleave-job.h"
#include "cleave-chart-view.h"
#include "cleave-compose.h"
#include "cleave-device.h"
#include "cleave-error.h"
#include "cleave-window.h"

/* The named datasets (cleave_dataset_names), then "Image Folder…". */
#define FOLDER_ROW CLEAVE_N_DATASET_NAMES

typedef struct {
  CleaveModuleRef ref;
  int target;                  /* patches: the weak class; compositions: -1 */
} Entry;

struct _CleaveComposePage
{
  AdwBin parent_instance;

  GtkListBox *palette;
  GtkDropDown *dataset_dropdown;
  GtkStack *mode_stack;
  GtkWidget *compose_canvas;
  GtkListBox *composition_list;
  GtkLabel *weak_label;
  GtkWidget *patch_canvas;
  GtkListBox *class_list;
  GtkProgressBar *progress_bar;
  GtkLabel *before_label;
  GtkLabel *after_label;
  CleaveChartView *before_chart;
  CleaveChartView *after_chart;

  CleaveModel *model;          /* the window's, borrowed */
  CleaveModel *weak;           /* owned */
  GArray *composed;            /* Entry */
  GArray *patches;             /* Entry */
  GSettings *settings;
  char *dataset;
  gboolean updating;
  GtkFileChooserNative *chooser;
  GCancellable *eval_cancellable;
  GCancellable *weak_cancellable;
};

enum {
  SIGNAL_EVALUATED,
  SIGNAL_WEAK_LOADED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, ADW_TYPE_BIN)

static CleaveWindow *
window_of (CleaveComposePage *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  return CLEAVE_IS_WINDOW (root) ? CLEAVE_WINDOW (root) : NULL;
}

static const CleaveModuleSet *
set_of (CleaveComposePage *self, const CleaveModuleRef *ref)
{
  CleaveWindow *window = window_of (self);

  return window ? cleave_window_get_module_set (window, ref->set_index) : NULL;
}

static const CleaveModule *
module_of (CleaveComposePage *self, const CleaveModuleRef *ref)
{
  const CleaveModuleSet *set = set_of (self, ref);

  if (!set || ref->module_index >= set->modules->len)
    return NULL;
  return g_ptr_array_index (set->modules, ref->module_index);
}

static char *
module_title (CleaveComposePage *self, const CleaveModuleRef *ref)
{
  const CleaveModule *m = module_of (self, ref);

  if (!m)
    return g_strdup ("?");
  return m->class_name ? g_strdup (m->class_name) : g_strdup_printf (_("class %d"), m->class_index);
}

static void
toast (CleaveComposePage *self, const char *message)
{
  CleaveWindow *window = window_of (self);

  if (window)
    cleave_window_toast (window, message);
}

/* ---- building core objects from the recipes ------------------------------ */

static CleaveComposition *
build_composition (CleaveComposePage *self, GArray *entries, GError **error)
{
  g_autoptr(CleaveComposition) c = cleave_composition_new ();

  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *e = &g_array_index (entries, Entry, i);
      const CleaveModuleSet *set = set_of (self, &e->ref);

      if (!set)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("Module set %u is not open"),
                       e->ref.set_index);
          return NULL;
        }
      if (!cleave_composition_add (c, set, (int) e->ref.module_index, NULL, error))
        return NULL;
    }
  return g_steal_pointer (&c);
}

static CleavePatched *
build_patched (CleaveComposePage *self, GArray *entries, GError **error)
{
  g_autoptr(CleavePatched) p = NULL;

  if (!self->weak)
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                           _("Open a weak model first: drop a model file on the canvas"));
      return NULL;
    }
  p = cleave_patched_new (cleave_model_copy (self->weak));
  for (guint i = 0; i < entries->len; i++)
    {
      const Entry *e = &g_array_index (entries, Entry, i);
      const CleaveModuleSet *set = set_of (self, &e->ref);

      if (!set)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("Module set %u is not open"),
                       e->ref.set_index);
          return NULL;
        }
      if (!cleave_patched_add (p, set, (int) e->ref.module_index, e->target, error))
        return NULL;
    }
  return g_steal_pointer (&p);
}

/* ---- actions' sensitivity ------------------------------------------------------ */

static gboolean
patch_mode (CleaveComposePage *self)
{
  return g_strcmp0 (gtk_stack_get_visible_child_name (self->mode_stack), "patch") == 0;
}

static void
update_actions (CleaveComposePage *self)
{
  GtkWidget *w = GTK_WIDGET (self);
  gboolean selected = gtk_list_box_get_selected_row (self->palette) != NULL;
  gboolean patch = patch_mode (self);
  gboolean has_result = patch ? self->weak != NULL : self->composed->len > 0;
  gboolean idle = self->eval_cancellable == NULL;

  gtk_widget_action_set_enabled (w, "compose.add", selected);
  gtk_widget_action_set_enabled (w, "compose.patch", selected && self->weak != NULL);
  gtk_widget_action_set_enabled (w, "compose.evaluate", has_result && idle);
  gtk_widget_action_set_enabled (w, "compose.export", has_result && (!patch || self->patches->len > 0));
  gtk_widget_action_set_enabled (w, "compose.use-model", self->model != NULL);
  gtk_widget_action_set_enabled (w, "compose.remove",
                                 patch ? gtk_list_box_get_selected_row (self->class_list) != NULL
                                       : gtk_list_box_get_selected_row (self->composition_list) != NULL);
}

/* ---- palette --------------------------------------------------------------------- */

GdkContentProvider *
cleave_compose_page_module_content (const CleaveModuleRef *ref)
{
  GValue value = G_VALUE_INIT;
  GdkContentProvider *provider;

  g_value_init (&value, CLEAVE_TYPE_MODULE_REF);
  g_value_set_boxed (&value, ref);
  provider = gdk_content_provider_new_for_value (&value);
  g_value_unset (&value);
  return provider;
}

static GdkContentProvider *
on_drag_prepare (GtkDragSource *source, double x, double y, GtkWidget *row)
{
  const CleaveModuleRef *ref = g_object_get_data (G_OBJECT (row), "module-ref");

  return ref ? cleave_compose_page_module_content (ref) : NULL;
}

static void
on_drag_begin (GtkDragSource *source, GdkDrag *drag, GtkWidget *row)
{
  g_autoptr(GdkPaintable) icon = gtk_widget_paintable_new (row);

  gtk_drag_source_set_icon (source, icon, 16, 16);
}

static GtkWidget *
palette_row (CleaveComposePage *self, guint set_index, guint module_index)
{
  CleaveWindow *window = window_of (self);
  const CleaveModuleSet *set = cleave_window_get_module_set (window, set_index);
  const CleaveModule *m = g_ptr_array_index (set->modules, module_index);
  CleaveModuleRef ref = { set_index, module_index };
  g_autofree char *title = module_title (self, &ref);
  /* Translators: palette row subtitle: class index, kernel retention %, validation F1 % */
  g_autofree char *subtitle = g_strdup_printf (_("Class %d · KRR %.1f %% · F1 %.1f %%"),
                                               m->class_index, 100 * m->krr, 100 * m->val_f1);
  GtkWidget *row = adw_action_row_new ();
  GtkDragSource *drag = gtk_drag_source_new ();
  GtkWidget *handle = gtk_image_new_from_icon_name ("list-drag-handle-symbolic");

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  adw_action_row_add_prefix (ADW_ACTION_ROW (row), handle);
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
  gtk_widget_set_tooltip_text (row, _("Drag onto the canvas, or press Enter to add it"));
  g_object_set_data_full (G_OBJECT (row), "module-ref", cleave_module_ref_copy (&ref),
                          (GDestroyNotify) cleave_module_ref_free);
  gtk_drag_source_set_actions (drag, GDK_ACTION_COPY);
  g_signal_connect (drag, "prepare", G_CALLBACK (on_drag_prepare), row);
  g_signal_connect (drag, "drag-begin", G_CALLBACK (on_drag_begin), row);
  gtk_widget_add_controller (row, GTK_EVENT_CONTROLLER (drag));
  return row;
}

/* Rows are grouped under their module set's name. */
static void
palette_header (GtkListBoxRow *row, GtkListBoxRow *before, gpointer user_data)
{
  CleaveComposePage *self = user_data;
  const CleaveModuleRef *ref = g_object_get_data (G_OBJECT (row), "module-ref");
  const CleaveModuleRef *prev = before ? g_object_get_data (G_OBJECT (before), "module-ref") : NULL;
  CleaveWindow *window = window_of (self);
  GtkWidget *label;

  if (!ref || !window || (prev && prev->set_index == ref->set_index))
    {
      gtk_list_box_row_set_header (row, NULL);
      return;
    }
  label = gtk_label_new (cleave_window_get_module_set_name (window, ref->set_index));
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_widget_set_margin_start (label, 12);
  gtk_widget_set_margin_end (label, 12);
  gtk_widget_set_margin_top (label, 6);
  gtk_widget_set_margin_bottom (label, 6);
  gtk_widget_add_css_class (label, "heading");
  gtk_list_box_row_set_header (row, label);
}

void
cleave_compose_page_sets_changed (CleaveComposePage *self)
{
  CleaveWindow *window;
  GtkWidget *child;
  guint n;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  window = window_of (self);
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->palette))))
    gtk_list_box_remove (self->palette, child);
  n = window ? cleave_window_n_module_sets (window) : 0;
  for (guint s = 0; s < n; s++)
    {
      const CleaveModuleSet *set = cleave_window_get_module_set (window, s);

      for (guint k = 0; k < set->modules->len; k++)
        gtk_list_box_append (self->palette, palette_row (self, s, k));
    }
  update_actions (self);
}

static const CleaveModuleRef *
selected_palette_ref (CleaveComposePage *self)
{
  GtkListBoxRow *row = gtk_list_box_get_selected_row (self->palette);

  return row ? g_object_get_data (G_OBJECT (row), "module-ref") : NULL;
}

/* ---- canvas: composition ------------------------------------------------------------ */

static void
on_remove_composed_clicked (GtkButton *button, CleaveComposePage *self)
{
  cleave_compose_page_remove_composed (self, GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (button), "index")));
}

static void
fill_composition (CleaveComposePage *self)
{
  CleaveWindow *window = window_of (self);
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->composition_list))))
    gtk_list_box_remove (self->composition_list, child);
  for (guint i = 0; i < self->composed->len; i++)
    {
      const Entry *e = &g_array_index (self->composed, Entry, i);
      const CleaveModule *m = module_of (self, &e->ref);
      g_autofree char *name = module_title (self, &e->ref);
      /* Translators: a composed class: its index in the new model and its name */
      g_autofree char *title = g_strdup_printf (_("Class %u: %s"), i, name);
      g_autofree char *subtitle = g_strdup_printf (_("Module for class %d of %s · KRR %.1f %%"),
                                                   m ? m->class_index : -1,
                                                   window ? cleave_window_get_module_set_name (window, e->ref.set_index) : "?",
                                                   m ? 100 * m->krr : NAN);
      GtkWidget *row = adw_action_row_new ();
      GtkWidget *remove = gtk_button_new_from_icon_name ("user-trash-symbolic");

      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      gtk_widget_set_valign (remove, GTK_ALIGN_CENTER);
      gtk_widget_add_css_class (remove, "flat");
      gtk_widget_set_tooltip_text (remove, _("Remove from the composition (Delete)"));
      g_object_set_data (G_OBJECT (remove), "index", GUINT_TO_POINTER (i));
      g_signal_connect (remove, "clicked", G_CALLBACK (on_remove_composed_clicked), self);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), remove);
      gtk_list_box_append (self->composition_list, row);
    }
  update_actions (self);
}

static gboolean
add_composed (CleaveComposePage *self, const CleaveModuleRef *ref, GError **error)
{
  Entry e = { *ref, -1 };
  g_autoptr(CleaveComposition) c = NULL;

  for (guint i = 0; i < self->composed->len; i++)
    {
      const Entry *o = &g_array_index (self->composed, Entry, i);

      if (o->ref.set_index == ref->set_index && o->ref.module_index == ref->module_index)
        {
          g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                               _("This module is already in the composition"));
          return FALSE;
        }
    }
  g_array_append_val (self->composed, e);
  c = build_composition (self, self->composed, error);
  if (!c)
    {
      g_array_set_size (self->composed, self->composed->len - 1);
      return FALSE;
    }
  fill_composition (self);
  return TRUE;
}

void
cleave_compose_page_remove_composed (CleaveComposePage *self, guint index)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  if (index >= self->composed->len)
    return;
  g_array_remove_index (self->composed, index);
  fill_composition (self);
}

guint
cleave_compose_page_n_composed (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), 0);
  return self->composed->len;
}

/* ---- canvas: patching ------------------------------------------------------------------ */

static gboolean on_class_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self);

static void
on_unpatch_clicked (GtkButton *button, CleaveComposePage *self)
{
  cleave_compose_page_unpatch (self, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "class")));
}

static const Entry *
patch_for (CleaveComposePage *self, int target)
{
  for (guint i = 0; i < self->patches->len; i++)
    if (g_array_index (self->patches, Entry, i).target == target)
      return &g_array_index (self->patches, Entry, i);
  return NULL;
}

static void
fill_classes (CleaveComposePage *self)
{
  CleaveWindow *window = window_of (self);
  GtkWidget *child;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->class_list))))
    gtk_list_box_remove (self->class_list, child);
  if (!self->weak)
    {
      gtk_label_set_label (self->weak_label, _("No weak model"));
      update_actions (self);
      return;
    }
  {
    g_autofree char *base = self->weak->path ? g_path_get_basename (self->weak->path) : g_strdup (_("model"));
    /* Translators: %s is a model file name */
    g_autofree char *text = g_strdup_printf (_("Weak model: %s"), base);

    gtk_label_set_label (self->weak_label, text);
  }
  for (int c = 0; c < self->weak->n_classes; c++)
    {
      const Entry *e = patch_for (self, c);
      const char *cname = self->weak->class_names ? self->weak->class_names[c] : NULL;
      g_autofree char *title = cname ? g_strdup_printf ("%d · %s", c, cname) : g_strdup_printf ("%d", c);
      g_autofree char *subtitle = NULL;
      GtkWidget *row = adw_action_row_new ();
      GtkDropTarget *drop = gtk_drop_target_new (CLEAVE_TYPE_MODULE_REF, GDK_ACTION_COPY);

      if (e)
        {
          g_autofree char *mod = module_title (self, &e->ref);

          /* Translators: a patched class: module class name and module set name */
          subtitle = g_strdup_printf (_("Patched with the module for %s from %s"), mod,
                                      window ? cleave_window_get_module_set_name (window, e->ref.set_index) : "?");
          gtk_widget_add_css_class (row, "patched-class");
        }
      else
        subtitle = g_strdup (_("The weak model’s own score · drop a module here to patch"));
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
      if (e)
        {
          GtkWidget *remove = gtk_button_new_from_icon_name ("edit-undo-symbolic");

          gtk_widget_set_valign (remove, GTK_ALIGN_CENTER);
          gtk_widget_add_css_class (remove, "flat");
          gtk_widget_set_tooltip_text (remove, _("Remove the patch (Delete)"));
          g_object_set_data (G_OBJECT (remove), "class", GINT_TO_POINTER (c));
          g_signal_connect (remove, "clicked", G_CALLBACK (on_unpatch_clicked), self);
          adw_action_row_add_suffix (ADW_ACTION_ROW (row), remove);
        }
      g_object_set_data (G_OBJECT (row), "class", GINT_TO_POINTER (c));
      g_object_set_data (G_OBJECT (drop), "class", GINT_TO_POINTER (c));
      g_signal_connect (drop, "drop", G_CALLBACK (on_class_drop), self);
      gtk_widget_add_controller (row, GTK_EVENT_CONTROLLER (drop));
      gtk_list_box_append (self->class_list, row);
    }
  update_actions (self);
}

static gboolean
add_patch (CleaveComposePage *self, const CleaveModuleRef *ref, int target, GError **error)
{
  g_autoptr(GArray) trial = g_array_new (FALSE, FALSE, sizeof (Entry));
  g_autoptr(CleavePatched) p = NULL;
  Entry e = { *ref, target };

  /* A drop on a patched class replaces its patch. */
  for (guint i = 0; i < self->patches->len; i++)
    if (g_array_index (self->patches, Entry, i).target != target)
      g_array_append_val (trial, g_array_index (self->patches, Entry, i));
  g_array_append_val (trial, e);
  p = build_patched (self, trial, error);
  if (!p)
    return FALSE;
  g_array_set_size (self->patches, 0);
  g_array_append_vals (self->patches, trial->data, trial->len);
  fill_classes (self);
  return TRUE;
}

void
cleave_compose_page_unpatch (CleaveComposePage *self, int target_class)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  for (guint i = 0; i < self->patches->len; i++)
    if (g_array_index (self->patches, Entry, i).target == target_class)
      {
        g_array_remove_index (self->patches, i);
        fill_classes (self);
        return;
      }
}

guint
cleave_compose_page_n_patched (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), 0);
  return self->patches->len;
}

void
cleave_compose_page_set_weak_model (CleaveComposePage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_clear_pointer (&self->weak, cleave_model_free);
  self->weak = model;
  g_array_set_size (self->patches, 0);
  fill_classes (self);
}

static void
weak_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  GError *error = NULL;
  CleaveModel *model = cleave_model_load (task_data, &error);

  if (model)
    g_task_return_pointer (task, model, (GDestroyNotify) cleave_model_free);
  else
    g_task_return_error (task, error);
}

static void
weak_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  g_autoptr(GError) error = NULL;
  CleaveModel *model = g_task_propagate_pointer (G_TASK (result), &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !self->class_list)
    {
      cleave_model_free (model);
      return;
    }
  g_clear_object (&self->weak_cancellable);
  if (model)
    {
      cleave_compose_page_set_weak_model (self, model);
      cleave_compose_page_set_mode (self, "patch");
    }
  else
    cleave_gui_show_error (GTK_WIDGET (self), _("Could Not Open the Weak Model"), error->message);
  g_signal_emit (self, signals[SIGNAL_WEAK_LOADED], 0, model != NULL);
}

void
cleave_compose_page_open_weak_model (CleaveComposePage *self, GFile *file)
{
  g_autoptr(GTask) task = NULL;
  char *path;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  path = g_file_get_path (file);
  if (!path)
    {
      cleave_gui_show_error (GTK_WIDGET (self), _("Could Not Open the Weak Model"), _("Only local files can be opened"));
      return;
    }
  if (self->weak_cancellable)
    g_cancellable_cancel (self->weak_cancellable);
  g_clear_object (&self->weak_cancellable);
  self->weak_cancellable = g_cancellable_new ();
  task = g_task_new (self, self->weak_cancellable, weak_done, NULL);
  g_task_set_source_tag (task, cleave_compose_page_open_weak_model);
  g_task_set_task_data (task, path, g_free);
  g_task_run_in_thread (task, weak_thread);
}

/* ---- drops (and everything that does what a drop does) ------------------------------------ */

gboolean
cleave_compose_page_drop_module (CleaveComposePage *self, const GValue *value, int target_class, GError **error)
{
  const CleaveModuleRef *ref;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (!G_VALUE_HOLDS (value, CLEAVE_TYPE_MODULE_REF) || !(ref = g_value_get_boxed (value)))
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("Not a module"));
      return FALSE;
    }
  if (!module_of (self, ref))
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("The module is not open"));
      return FALSE;
    }
  return target_class < 0 ? add_composed (self, ref, error) : add_patch (self, ref, target_class, error);
}

static gboolean
drop_and_report (CleaveComposePage *self, const GValue *value, int target_class)
{
  g_autoptr(GError) error = NULL;

  if (cleave_compose_page_drop_module (self, value, target_class, &error))
    return TRUE;
  toast (self, error->message);
  return FALSE;
}

static gboolean
on_canvas_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  return drop_and_report (self, value, -1);
}

static gboolean
on_class_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  return drop_and_report (self, value, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (target), "class")));
}

static gboolean
on_file_drop (GtkDropTarget *target, const GValue *value, double x, double y, CleaveComposePage *self)
{
  g_autoptr(GFile) file = cleave_gui_dropped_file (value);

  if (!file)
    return FALSE;
  cleave_compose_page_open_weak_model (self, file);
  return TRUE;
}

static void
with_ref_value (CleaveComposePage *self, const CleaveModuleRef *ref, int target_class)
{
  GValue value = G_VALUE_INIT;

  g_value_init (&value, CLEAVE_TYPE_MODULE_REF);
  g_value_set_boxed (&value, ref);
  drop_and_report (self, &value, target_class);
  g_value_unset (&value);
}

static void
add_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  const CleaveModuleRef *ref = selected_palette_ref (self);

  if (!ref)
    return;
  cleave_compose_page_set_mode (self, "compose");
  with_ref_value (self, ref, -1);
}

static void
patch_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  const CleaveModuleRef *ref = selected_palette_ref (self);
  GtkListBoxRow *row = gtk_list_box_get_selected_row (self->class_list);
  const CleaveModule *m;
  int target;

  if (!ref || !(m = module_of (self, ref)))
    return;
  /* The selected weak class, else the module's own class. */
  target = row ? GPOINTER_TO_INT (g_object_get_data (G_OBJECT (row), "class")) : m->class_index;
  cleave_compose_page_set_mode (self, "patch");
  with_ref_value (self, ref, target);
}

static void
on_palette_activated (CleaveComposePage *self, GtkListBoxRow *row)
{
  const CleaveModuleRef *ref = g_object_get_data (G_OBJECT (row), "module-ref");

  if (!ref)
    return;
  if (patch_mode (self) && self->weak)
    patch_action (GTK_WIDGET (self), NULL, NULL);
  else
    with_ref_value (self, ref, -1);
}

static void
remove_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  GtkListBoxRow *row;

  if (patch_mode (self))
    {
      row = gtk_list_box_get_selected_row (self->class_list);
      if (row)
        cleave_compose_page_unpatch (self, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (row), "class")));
    }
  else
    {
      row = gtk_list_box_get_selected_row (self->composition_list);
      if (row)
        cleave_compose_page_remove_composed (self, gtk_list_box_row_get_index (row));
    }
}

static void
use_model_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);

  if (!self->model)
    return;
  cleave_compose_page_set_weak_model (self, cleave_model_copy (self->model));
  cleave_compose_page_set_mode (self, "patch");
}

void
cleave_compose_page_set_mode (CleaveComposePage *self, const char *mode)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  gtk_stack_set_visible_child_name (self->mode_stack, g_strcmp0 (mode, "patch") == 0 ? "patch" : "compose");
  update_actions (self);
}

const char *
cleave_compose_page_get_mode (CleaveComposePage *self)
{
  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), NULL);
  return patch_mode (self) ? "patch" : "compose";
}

void
cleave_compose_page_set_model (CleaveComposePage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  self->model = model;
  update_actions (self);
}

/* ---- evaluation --------------------------------------------------------------------------- */

typedef struct {
  gboolean patch;
  CleaveScorer *scorer;             /* the composition or patched model (a private copy) */
  char *dataset;
  char *device;
  const char *parts[2];             /* dataset */
  CleaveReuseRequest request;
  CleaveReuseResult result;
} EvalJob;

static void
eval_job_free (EvalJob *job)
{
  cleave_reuse_result_clear (&job->result);
  cleave_scorer_free (job->scorer);
  g_free (job->dataset);
  g_free (job->device);
  g_free (job);
}

static void
eval_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  EvalJob *job = task_data;
  GError *error = NULL;

  if (cleave_job_reuse (&job->request, NULL, NULL, cancellable, &job->result, &error))
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

/* "Before: weak model 80.00 %", "Before: a.safetensors 90.00 %; b.safetensors not available" */
static char *
before_text (const EvalJob *job)
{
  const CleaveReuseResult *r = &job->result;
  GString *s;

  if (job->patch)
    /* Translators: accuracy of the weak model before patching */
    return g_strdup_printf (_("Before: weak model %.2f %%"), 100 * r->source_accuracy[0]);
  s = g_string_new (_("Before:"));
  for (int i = 0; i < r->n_sources; i++)
    {
      if (isnan (r->source_accuracy[i]))
        /* Translators: the source model of a module set cannot be evaluated; %s is its file name */
        g_string_append_printf (s, _(" %s not available"), r->source_names[i]);
      else
        /* Translators: source model file name and its accuracy on the composed classes' images */
        g_string_append_printf (s, _(" %s %.2f %%"), r->source_names[i], 100 * r->source_accuracy[i]);
      if (i + 1 < r->n_sources)
        g_string_append_c (s, ';');
    }
  return g_string_free (s, FALSE);
}

static void
eval_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (source);
  GTask *task = G_TASK (result);
  EvalJob *job = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  gboolean ok = g_task_propagate_boolean (task, &error);

  if (!self->progress_bar)
    return;     /* disposed while the evaluation ran */
  if (g_task_get_cancellable (task) == self->eval_cancellable)
    g_clear_object (&self->eval_cancellable);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), FALSE);
  update_actions (self);
  if (ok)
    {
      const CleaveMetrics *m = job->result.after;
      g_autofree double *after = g_new (double, (gsize) m->n_classes * 3);
      g_autofree char *after_text = NULL, *before = before_text (job);

      for (int c = 0; c < m->n_classes; c++)
        {
          after[c * 3 + 0] = m->precision[c];
          after[c * 3 + 1] = m->recall[c];
          after[c * 3 + 2] = m->f1[c];
        }
      /* Translators: accuracy after composing or patching, then correct and total images */
      after_text = g_strdup_printf (job->patch ? _("After: patched model %.2f %% (%d of %d)")
                                               : _("After: composed model %.2f %% (%d of %d)"),
                                    100 * m->accuracy, m->correct, m->total);
      gtk_label_set_label (self->before_label, before);
      gtk_label_set_label (self->after_label, after_text);
      cleave_gui_show_prf_chart (self->before_chart, job->patch ? _("Weak model") : _("Source models"),
                                 (const char *const *) job->result.class_names, job->result.n_classes,
                                 job->result.before_prf);
      cleave_gui_show_prf_chart (self->after_chart, job->patch ? _("Patched model") : _("Composed model"),
                                 (const char *const *) job->result.class_names, m->n_classes, after);
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      gtk_label_set_label (self->after_label, _("After"));
      cleave_gui_show_error (GTK_WIDGET (self), _("Evaluation Failed"), error->message);
    }
  g_signal_emit (self, signals[SIGNAL_EVALUATED], 0, ok);
}

gboolean
cleave_compose_page_evaluate (CleaveComposePage *self)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  EvalJob *job;

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (self->eval_cancellable)
    return FALSE;
  job = g_new0 (EvalJob, 1);
  job->patch = patch_mode (self);
  if (job->patch)
    {
      CleavePatched *patched = build_patched (self, self->patches, &error);
      job->scorer = patched ? cleave_scorer_new_patched (patched) : NULL;
    }
  else if (self->composed->len == 0)
    g_set_error_literal (&error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("The composition is empty"));
  else
    {
      CleaveComposition *c = build_composition (self, self->composed, &error);
      job->scorer = c ? cleave_scorer_new_composition (c) : NULL;
    }
  if (error)
    {
      cleave_gui_show_error (GTK_WIDGET (self), _("Evaluation Failed"), error->message);
      eval_job_free (job);
      return FALSE;
    }
  job->dataset = g_strdup (self->dataset);
  job->device = self->settings ? g_settings_get_string (self->settings, "device") : g_strdup ("auto");
  job->parts[0] = job->dataset;
  job->request.scorer = job->scorer;
  job->request.dataset.parts = job->parts;
  job->request.dataset.data_dirs = (const char *const *) cleave_gui_config ()->data_dirs;
  job->request.device.device = job->device;
  job->request.device.config = &cleave_gui_config ()->backend;

  self->eval_cancellable = g_cancellable_new ();
  gtk_progress_bar_set_fraction (self->progress_bar, 0);
  gtk_progress_bar_pulse (self->progress_bar);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
  gtk_label_set_label (self->after_label, _("Evaluating…"));
  update_actions (self);

  task = g_task_new (self, self->eval_cancellable, eval_done, NULL);
  g_task_set_source_tag (task, cleave_compose_page_evaluate);
  g_task_set_task_data (task, job, (GDestroyNotify) eval_job_free);
  g_task_run_in_thread (task, eval_thread);
  return TRUE;
}

static void
evaluate_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  cleave_compose_page_evaluate (CLEAVE_COMPOSE_PAGE (widget));
}

/* ---- export ------------------------------------------------------------------------------------ */

gboolean
cleave_compose_page_export (CleaveComposePage *self, const char *path, GError **error)
{
  gboolean onnx = g_str_has_suffix (path, ".onnx");

  g_return_val_if_fail (CLEAVE_IS_COMPOSE_PAGE (self), FALSE);
  if (patch_mode (self))
    {
      g_autoptr(CleavePatched) p = build_patched (self, self->patches, error);

      if (!p)
        return FALSE;
      return onnx ? cleave_export_patched_onnx (p, path, error) : cleave_patched_save (p, path, error);
    }
  else
    {
      g_autoptr(CleaveComposition) c = NULL;

      if (self->composed->len == 0)
        {
          g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("The composition is empty"));
          return FALSE;
        }
      c = build_composition (self, self->composed, error);
      if (!c)
        return FALSE;
      return onnx ? cleave_export_composition_onnx (c, path, error) : cleave_composition_save (c, path, error);
    }
}

static void
on_export_response (GtkNativeDialog *dialog, int response, CleaveComposePage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      g_autoptr(GError) error = NULL;

      if (path && !cleave_compose_page_export (self, path, &error))
        cleave_gui_show_error (GTK_WIDGET (self), _("Export Failed"), error->message);
      else if (path)
        toast (self, _("Exported"));
    }
  g_clear_object (&self->chooser);
}

static void
on_weak_chosen (GtkNativeDialog *dialog, int response, CleaveComposePage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));

      if (file)
        cleave_compose_page_open_weak_model (self, file);
    }
  g_clear_object (&self->chooser);
}

static void
on_folder_chosen (GtkNativeDialog *dialog, int response, CleaveComposePage *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;

      if (path)
        {
          g_free (self->dataset);
          self->dataset = g_strdup (path);
        }
    }
  g_clear_object (&self->chooser);
  cleave_compose_page_set_dataset (self, self->dataset);
}

static GtkFileChooserNative *
new_chooser (CleaveComposePage *self, const char *title, GtkFileChooserAction action, const char *accept)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));

  if (self->chooser || !GTK_IS_WINDOW (root))
    return NULL;
  self->chooser = gtk_file_chooser_native_new (title, GTK_WINDOW (root), action, accept, _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  return self->chooser;
}

static void
export_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  gboolean onnx = g_strcmp0 (g_variant_get_string (param, NULL), "onnx") == 0;
  GtkFileChooserNative *chooser = new_chooser (self, onnx ? _("Export as ONNX") : _("Export as a Cleave File"),
                                               GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"));
  g_autofree char *name = NULL;

  if (!chooser)
    return;
  /* Translators: default file names of exported compositions and patched models */
  name = g_strdup_printf ("%s.%s", patch_mode (self) ? _("patched") : _("composition"), onnx ? "onnx" : "safetensors");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), name);
  g_signal_connect (chooser, "response", G_CALLBACK (on_export_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static void
open_weak_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (widget);
  GtkFileChooserNative *chooser = new_chooser (self, _("Open Weak Model"), GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"));

  if (!chooser)
    return;
  g_signal_connect (chooser, "response", G_CALLBACK (on_weak_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* ---- dataset ------------------------------------------------------------------------------------ */

void
cleave_compose_page_set_dataset (CleaveComposePage *self, const char *spec)
{
  guint row = FOLDER_ROW;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_return_if_fail (spec != NULL);
  for (guint i = 0; i < CLEAVE_N_DATASET_NAMES; i++)
    if (g_strcmp0 (spec, cleave_dataset_names ()[i]) == 0)
      row = i;
  if (spec != self->dataset)
    {
      g_free (self->dataset);
      self->dataset = g_strdup (spec);
    }
  self->updating = TRUE;
  gtk_drop_down_set_selected (self->dataset_dropdown, row);
  self->updating = FALSE;
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->dataset_dropdown), spec);
}

static void
on_dataset_selected (CleaveComposePage *self)
{
  guint i = gtk_drop_down_get_selected (self->dataset_dropdown);
  GtkFileChooserNative *chooser;

  if (self->updating)
    return;
  if (i < FOLDER_ROW)
    {
      cleave_compose_page_set_dataset (self, cleave_dataset_names ()[i]);
      return;
    }
  chooser = new_chooser (self, _("Choose an Image Folder"), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Select"));
  if (!chooser)
    return;
  g_signal_connect (chooser, "response", G_CALLBACK (on_folder_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

void
cleave_compose_page_set_settings (CleaveComposePage *self, GSettings *settings)
{
  g_autofree char *spec = NULL;

  g_return_if_fail (CLEAVE_IS_COMPOSE_PAGE (self));
  g_set_object (&self->settings, settings);
  if (!settings)
    return;
  spec = g_settings_get_string (settings, "default-dataset");
  if (spec && *spec)
    cleave_compose_page_set_dataset (self, spec);
}

/* ---- life cycle ------------------------------------------------------------------------------------ */

static void
cleave_compose_page_dispose (GObject *object)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  if (self->eval_cancellable)
    g_cancellable_cancel (self->eval_cancellable);
  g_clear_object (&self->eval_cancellable);
  if (self->weak_cancellable)
    g_cancellable_cancel (self->weak_cancellable);
  g_clear_object (&self->weak_cancellable);
  g_clear_object (&self->settings);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_COMPOSE_PAGE);
  G_OBJECT_CLASS (cleave_compose_page_parent_class)->dispose (object);
}

static void
cleave_compose_page_finalize (GObject *object)
{
  CleaveComposePage *self = CLEAVE_COMPOSE_PAGE (object);

  g_clear_pointer (&self->weak, cleave_model_free);
  g_array_unref (self->composed);
  g_array_unref (self->patches);
  g_free (self->dataset);
  G_OBJECT_CLASS (cleave_compose_page_parent_class)->finalize (object);
}

static void
cleave_compose_page_class_init (CleaveComposePageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_compose_page_dispose;
  object_class->finalize = cleave_compose_page_finalize;

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-compose-page.ui");
#define BIND(name) gtk_widget_class_bind_template_child (widget_class, CleaveComposePage, name)
  BIND (palette);
  BIND (dataset_dropdown);
  BIND (mode_stack);
  BIND (compose_canvas);
  BIND (composition_list);
  BIND (weak_label);
  BIND (patch_canvas);
  BIND (class_list);
  BIND (progress_bar);
  BIND (before_label);
  BIND (after_label);
  BIND (before_chart);
  BIND (after_chart);
#undef BIND
  gtk_widget_class_bind_template_callback (widget_class, on_palette_activated);
  gtk_widget_class_bind_template_callback (widget_class, update_actions);
  gtk_widget_class_bind_template_callback (widget_class, on_dataset_selected);

  gtk_widget_class_install_action (widget_class, "compose.add", NULL, add_action);
  gtk_widget_class_install_action (widget_class, "compose.patch", NULL, patch_action);
  gtk_widget_class_install_action (widget_class, "compose.remove", NULL, remove_action);
  gtk_widget_class_install_action (widget_class, "compose.use-model", NULL, use_model_action);
  gtk_widget_class_install_action (widget_class, "compose.open-weak", NULL, open_weak_action);
  gtk_widget_class_install_action (widget_class, "compose.evaluate", NULL, evaluate_action);
  gtk_widget_class_install_action (widget_class, "compose.export", "s", export_action);
  /* Delete removes the selected composed class or patch. */
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Delete, 0, "compose.remove", NULL);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_KP_Delete, 0, "compose.remove", NULL);

  signals[SIGNAL_EVALUATED] =
    g_signal_new ("evaluated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
  signals[SIGNAL_WEAK_LOADED] =
    g_signal_new ("weak-loaded", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_BOOLEAN);
}

static void
cleave_compose_page_init (CleaveComposePage *self)
{
  GtkDropTarget *drop;

  self->composed = g_array_new (FALSE, FALSE, sizeof (Entry));
  self->patches = g_array_new (FALSE, FALSE, sizeof (Entry));
  self->dataset = g_strdup (cleave_dataset_names ()[0]);
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_list_box_set_header_func (self->palette, palette_header, self, NULL);

  drop = gtk_drop_target_new (CLEAVE_TYPE_MODULE_REF, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_canvas_drop), self);
  gtk_widget_add_controller (self->compose_canvas, GTK_EVENT_CONTROLLER (drop));

  /* A model file dropped anywhere on the canvas becomes the weak model. */
  drop = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_file_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self->mode_stack), GTK_EVENT_CONTROLLER (drop));

  update_actions (self);
}
