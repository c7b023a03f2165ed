/* cleave-modules-page.c: mask view, per-module bars and overlap matrix.
 * Module sets do not exist in the core yet; the charts are in place and
 * empty, and the file actions stay insensitive. */
#include <glib/gi18n.h>

#include "cleave-modules-page.h"
#include "cleave-chart-view.h"

struct _CleaveModulesPage
{
  AdwBin parent_instance;

  GtkWidget *open_button;
  GtkWidget *save_button;
};

G_DEFINE_FINAL_TYPE (CleaveModulesPage, cleave_modules_page, ADW_TYPE_BIN)

static void
cleave_modules_page_dispose (GObject *object)
{
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
  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-modules-page.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveModulesPage, open_button);
  gtk_widget_class_bind_template_child (widget_class, CleaveModulesPage, save_button);
}

static void
cleave_modules_page_init (CleaveModulesPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_widget_set_sensitive (self->open_button, FALSE);
  gtk_widget_set_sensitive (self->save_button, FALSE);
}
