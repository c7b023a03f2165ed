/* cleave-compose-page.c: module palette and composition canvas. Composition
 * and patching are not in the core yet; the layout is in place and the
 * actions stay insensitive. */
#include <glib/gi18n.h>

#include "cleave-compose-page.h"

struct _CleaveComposePage
{
  AdwBin parent_instance;

  GtkWidget *evaluate_button;
  GtkWidget *export_button;
};

G_DEFINE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, ADW_TYPE_BIN)

static void
cleave_compose_page_dispose (GObject *object)
{
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_COMPOSE_PAGE);
  G_OBJECT_CLASS (cleave_compose_page_parent_class)->dispose (object);
}

static void
cleave_compose_page_class_init (CleaveComposePageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  G_OBJECT_CLASS (klass)->dispose = cleave_compose_page_dispose;
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-compose-page.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveComposePage, evaluate_button);
  gtk_widget_class_bind_template_child (widget_class, CleaveComposePage, export_button);
}

static void
cleave_compose_page_init (CleaveComposePage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_widget_set_sensitive (self->evaluate_button, FALSE);
  gtk_widget_set_sensitive (self->export_button, FALSE);
}
