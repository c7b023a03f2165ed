/* cleave-start-page.c: the welcome page. */
#include <glib/gi18n.h>

#include "cleave-start-page.h"

struct _CleaveStartPage
{
  AdwBin parent_instance;

  GtkWidget *recent_group;
  GtkListBox *recent_list;
  GSettings *settings;
};

G_DEFINE_FINAL_TYPE (CleaveStartPage, cleave_start_page, ADW_TYPE_BIN)

static void
fill_recent (CleaveStartPage *self)
{
  g_auto(GStrv) recent = NULL;
  GtkWidget *child;
  guint shown = 0;

  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->recent_list))))
    gtk_list_box_remove (self->recent_list, child);

  if (self->settings)
    recent = g_settings_get_strv (self->settings, "recent-files");
  for (guint i = 0; recent && recent[i]; i++)
    {
      g_autofree char *base = g_path_get_basename (recent[i]);
      g_autofree char *dir = g_path_get_dirname (recent[i]);
      g_autofree char *markup_title = g_markup_escape_text (base, -1);
      g_autofree char *markup_dir = g_markup_escape_text (dir, -1);
      GtkWidget *row, *arrow;

      /* Files moved or deleted since are left out rather than failing later. */
      if (!g_file_test (recent[i], G_FILE_TEST_IS_REGULAR))
        continue;
      row = adw_action_row_new ();
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), markup_title);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (row), markup_dir);
      arrow = gtk_image_new_from_icon_name ("go-next-symbolic");
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), arrow);
      gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), TRUE);
      gtk_actionable_set_action_name (GTK_ACTIONABLE (row), "win.open-path");
      gtk_actionable_set_action_target (GTK_ACTIONABLE (row), "s", recent[i]);
      gtk_list_box_append (self->recent_list, row);
      shown++;
    }
  gtk_widget_set_visible (self->recent_group, shown > 0);
}

void
cleave_start_page_set_settings (CleaveStartPage *self, GSettings *settings)
{
  g_return_if_fail (CLEAVE_IS_START_PAGE (self));

  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_set_object (&self->settings, settings);
  if (settings)
    g_signal_connect_swapped (settings, "changed::recent-files", G_CALLBACK (fill_recent), self);
  fill_recent (self);
}

static void
cleave_start_page_dispose (GObject *object)
{
  CleaveStartPage *self = CLEAVE_START_PAGE (object);

  if (self->settings)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_START_PAGE);
  G_OBJECT_CLASS (cleave_start_page_parent_class)->dispose (object);
}

static void
cleave_start_page_class_init (CleaveStartPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  G_OBJECT_CLASS (klass)->dispose = cleave_start_page_dispose;
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-start-page.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveStartPage, recent_group);
  gtk_widget_class_bind_template_child (widget_class, CleaveStartPage, recent_list);
}

static void
cleave_start_page_init (CleaveStartPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  fill_recent (self);
}
