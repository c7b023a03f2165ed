/* cleave-module-palette.c: the list of open modules to compose or patch with. */
#include <glib/gi18n.h>

#include "cleave-module-palette.h"

struct _CleaveModulePalette
{
  AdwBin parent_instance;

  GtkListBox *list;
  CleaveWorkspace *workspace;
};

enum {
  SIGNAL_MODULE_ACTIVATED,
  SIGNAL_SELECTION_CHANGED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (CleaveModulePalette, cleave_module_palette, ADW_TYPE_BIN)

GdkContentProvider *
cleave_module_palette_content (const CleaveModuleRef *ref)
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

  return ref ? cleave_module_palette_content (ref) : NULL;
}

static void
on_drag_begin (GtkDragSource *source, GdkDrag *drag, GtkWidget *row)
{
  g_autoptr(GdkPaintable) icon = gtk_widget_paintable_new (row);

  gtk_drag_source_set_icon (source, icon, 16, 16);
}

static GtkWidget *
palette_row (CleaveOpenSet *item, guint module_index)
{
  const CleaveModule *m = cleave_open_set_get_module (item, module_index);
  g_autoptr(CleaveModuleRef) ref = cleave_module_ref_new (item, module_index);
  g_autofree char *title = m->class_name ? g_strdup (m->class_name) : g_strdup_printf (_("class %d"), m->class_index);
  /* Translators: palette row subtitle: class index, kernel retention rate %, validation F1 % */
  g_autofree char *subtitle = g_strdup_printf (_("Class %d · KRR %.1f %% · F1 %.1f %%"),
                                               m->class_index, 100 * m->krr, 100 * m->val_f1);
  GtkWidget *row = adw_action_row_new ();
  GtkDragSource *drag = gtk_drag_source_new ();
  GtkWidget *handle = gtk_image_new_from_icon_name ("list-drag-handle-symbolic");

  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);
  adw_action_row_add_prefix (ADW_ACTION_ROW (row), handle);
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
  gtk_widget_set_tooltip_text (row, _("Drag onto the canvas, or double-click or press Enter to add it. "
                                      "KRR: kernel retention rate, the share of conv kernels the module keeps"));
  g_object_set_data_full (G_OBJECT (row), "module-ref", g_steal_pointer (&ref), (GDestroyNotify) cleave_module_ref_free);
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
  const CleaveModuleRef *ref = g_object_get_data (G_OBJECT (row), "module-ref");
  const CleaveModuleRef *prev = before ? g_object_get_data (G_OBJECT (before), "module-ref") : NULL;
  GtkWidget *label;

  if (!ref || (prev && prev->set == ref->set))
    {
      gtk_list_box_row_set_header (row, NULL);
      return;
    }
  label = gtk_label_new (cleave_open_set_get_name (ref->set));
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_widget_set_margin_start (label, 12);
  gtk_widget_set_margin_end (label, 12);
  gtk_widget_set_margin_top (label, 6);
  gtk_widget_set_margin_bottom (label, 6);
  gtk_widget_add_css_class (label, "heading");
  gtk_list_box_row_set_header (row, label);
}

static void
rebuild (CleaveModulePalette *self)
{
  GtkWidget *child;
  guint n;

  /* Rows only: the placeholder is a child too, and must stay. */
  while ((child = GTK_WIDGET (gtk_list_box_get_row_at_index (self->list, 0))))
    gtk_list_box_remove (self->list, child);
  n = self->workspace ? cleave_workspace_n_sets (self->workspace) : 0;
  for (guint s = 0; s < n; s++)
    {
      CleaveOpenSet *item = cleave_workspace_get_set (self->workspace, s);

      for (guint k = 0; k < cleave_open_set_get_set (item)->modules->len; k++)
        gtk_list_box_append (self->list, palette_row (item, k));
    }
  g_signal_emit (self, signals[SIGNAL_SELECTION_CHANGED], 0);
}

void
cleave_module_palette_set_workspace (CleaveModulePalette *self, CleaveWorkspace *workspace)
{
  g_return_if_fail (CLEAVE_IS_MODULE_PALETTE (self));
  if (self->workspace)
    g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
  g_set_object (&self->workspace, workspace);
  if (workspace)
    g_signal_connect_object (cleave_workspace_get_sets (workspace), "items-changed", G_CALLBACK (rebuild), self,
                             G_CONNECT_SWAPPED);
  rebuild (self);
}

const CleaveModuleRef *
cleave_module_palette_get_selected (CleaveModulePalette *self)
{
  GtkListBoxRow *row;

  g_return_val_if_fail (CLEAVE_IS_MODULE_PALETTE (self), NULL);
  row = self->list ? gtk_list_box_get_selected_row (self->list) : NULL;
  return row ? g_object_get_data (G_OBJECT (row), "module-ref") : NULL;
}

gboolean
cleave_module_palette_select (CleaveModulePalette *self, const CleaveModuleRef *ref)
{
  g_return_val_if_fail (CLEAVE_IS_MODULE_PALETTE (self), FALSE);
  if (!ref)
    {
      gtk_list_box_unselect_all (self->list);
      return TRUE;
    }
  for (GtkWidget *row = gtk_widget_get_first_child (GTK_WIDGET (self->list)); row; row = gtk_widget_get_next_sibling (row))
    {
      const CleaveModuleRef *r = g_object_get_data (G_OBJECT (row), "module-ref");

      if (r && cleave_module_ref_equal (r, ref))
        {
          gtk_list_box_select_row (self->list, GTK_LIST_BOX_ROW (row));
          return TRUE;
        }
    }
  return FALSE;
}

void
cleave_module_palette_activate_selected (CleaveModulePalette *self)
{
  GtkListBoxRow *row;

  g_return_if_fail (CLEAVE_IS_MODULE_PALETTE (self));
  row = gtk_list_box_get_selected_row (self->list);
  if (row)
    g_signal_emit_by_name (self->list, "row-activated", row);
}

GtkListBox *
cleave_module_palette_get_list (CleaveModulePalette *self)
{
  g_return_val_if_fail (CLEAVE_IS_MODULE_PALETTE (self), NULL);
  return self->list;
}

static void
on_row_activated (CleaveModulePalette *self, GtkListBoxRow *row)
{
  const CleaveModuleRef *ref = g_object_get_data (G_OBJECT (row), "module-ref");

  if (ref)
    g_signal_emit (self, signals[SIGNAL_MODULE_ACTIVATED], 0, ref);
}

static void
on_selected_rows_changed (CleaveModulePalette *self)
{
  g_signal_emit (self, signals[SIGNAL_SELECTION_CHANGED], 0);
}

static void
cleave_module_palette_dispose (GObject *object)
{
  CleaveModulePalette *self = CLEAVE_MODULE_PALETTE (object);

  if (self->workspace)
    g_signal_handlers_disconnect_by_data (cleave_workspace_get_sets (self->workspace), self);
  g_clear_object (&self->workspace);
  if (self->list)
    g_signal_handlers_disconnect_by_data (self->list, self);
  self->list = NULL;
  adw_bin_set_child (ADW_BIN (self), NULL);
  G_OBJECT_CLASS (cleave_module_palette_parent_class)->dispose (object);
}

static void
cleave_module_palette_class_init (CleaveModulePaletteClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = cleave_module_palette_dispose;

  signals[SIGNAL_MODULE_ACTIVATED] =
    g_signal_new ("module-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 1, CLEAVE_TYPE_MODULE_REF | G_SIGNAL_TYPE_STATIC_SCOPE);
  signals[SIGNAL_SELECTION_CHANGED] =
    g_signal_new ("selection-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
cleave_module_palette_init (CleaveModulePalette *self)
{
  GtkWidget *scrolled = gtk_scrolled_window_new ();
  GtkWidget *placeholder = gtk_label_new (_("No module sets open: split a model or open a module set on the Modules page."));

  self->list = GTK_LIST_BOX (gtk_list_box_new ());
  gtk_list_box_set_selection_mode (self->list, GTK_SELECTION_SINGLE);
  /* A click selects; double-click and Enter activate. */
  gtk_list_box_set_activate_on_single_click (self->list, FALSE);
  gtk_widget_set_valign (GTK_WIDGET (self->list), GTK_ALIGN_START);
  gtk_widget_add_css_class (GTK_WIDGET (self->list), "boxed-list");
  gtk_list_box_set_header_func (self->list, palette_header, self, NULL);
  gtk_label_set_wrap (GTK_LABEL (placeholder), TRUE);
  g_object_set (placeholder, "margin-top", 24, "margin-bottom", 24, "margin-start", 12, "margin-end", 12, NULL);
  gtk_widget_add_css_class (placeholder, "dim-label");
  gtk_list_box_set_placeholder (self->list, placeholder);
  g_signal_connect_swapped (self->list, "row-activated", G_CALLBACK (on_row_activated), self);
  g_signal_connect_swapped (self->list, "selected-rows-changed", G_CALLBACK (on_selected_rows_changed), self);

  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scrolled), GTK_POLICY_NEVER, GTK_POLICY_AUTOMATIC);
  gtk_widget_set_vexpand (scrolled, TRUE);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scrolled), GTK_WIDGET (self->list));
  adw_bin_set_child (ADW_BIN (self), scrolled);
}
