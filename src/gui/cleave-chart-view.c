/* cleave-chart-view.c: chart widget over cleave-chart.c. */
#include <adwaita.h>
#include <glib/gi18n.h>

#include "cleave-chart-view.h"
#include "cleave-gui-util.h"

struct _CleaveChartView
{
  GtkDrawingArea parent_instance;

  CleaveChartKind kind;
  gpointer chart;               /* owned copy, NULL when empty */
  GtkWidget *menu;              /* GtkPopoverMenu */
  GtkFileChooserNative *chooser;
};

G_DEFINE_FINAL_TYPE (CleaveChartView, cleave_chart_view, GTK_TYPE_DRAWING_AREA)

static void
current_style (CleaveChartView *self, CleaveChartStyle *style)
{
  if (adw_style_manager_get_dark (adw_style_manager_get_default ()))
    cleave_chart_style_init_dark (style);
  else
    cleave_chart_style_init_light (style);
}

static void
draw_func (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer user_data)
{
  CleaveChartView *self = CLEAVE_CHART_VIEW (area);
  CleaveChartStyle style;

  current_style (self, &style);
  if (!self->chart)
    {
      /* An empty chart says so, rather than showing a blank card. */
      g_autoptr(PangoLayout) layout = gtk_widget_create_pango_layout (GTK_WIDGET (area), _("No data yet"));
      int tw, th;

      pango_layout_get_pixel_size (layout, &tw, &th);
      cairo_set_source_rgba (cr, style.fg[0], style.fg[1], style.fg[2], 0.45);
      cairo_move_to (cr, (width - tw) / 2.0, (height - th) / 2.0);
      pango_cairo_show_layout (cr, layout);
      return;
    }
  /* The window background shows through; saved files get a filled one. */
  style.fill_background = FALSE;
  cleave_chart_draw (self->kind, self->chart, cr, width, height, &style);
}

void
cleave_chart_view_set_chart (CleaveChartView *self, CleaveChartKind kind, gconstpointer chart)
{
  g_return_if_fail (CLEAVE_IS_CHART_VIEW (self));

  if (self->chart)
    cleave_chart_free (self->kind, self->chart);
  self->kind = kind;
  self->chart = chart ? cleave_chart_dup (kind, chart) : NULL;
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "chart.save", self->chart != NULL);
  gtk_widget_set_has_tooltip (GTK_WIDGET (self), self->chart && kind == CLEAVE_CHART_MASK_MATRIX);
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
cleave_chart_view_has_chart (CleaveChartView *self)
{
  g_return_val_if_fail (CLEAVE_IS_CHART_VIEW (self), FALSE);
  return self->chart != NULL;
}

gboolean
cleave_chart_view_save (CleaveChartView *self, const char *path, GError **error)
{
  CleaveChartStyle style;
  int w = gtk_widget_get_width (GTK_WIDGET (self));
  int h = gtk_widget_get_height (GTK_WIDGET (self));

  g_return_val_if_fail (CLEAVE_IS_CHART_VIEW (self), FALSE);
  g_return_val_if_fail (self->chart != NULL, FALSE);

  if (w < 50 || h < 50)
    {
      w = 800;
      h = 500;
    }
  /* Files are shared outside the app: always the light look. */
  cleave_chart_style_init_light (&style);
  return cleave_chart_save (self->kind, self->chart, &style, w, h,
                            cleave_chart_format_for_path (path), path, error);
}

/* A heat-map cell: its row and column and value (and share of its row). */
static char *
heat_tooltip (CleaveChartView *self, const CleaveChartStyle *style, double x, double y)
{
  const CleaveHeatMap *h = self->chart;
  int r, c;
  double v, sum = 0;

  if (!cleave_chart_heat_map_hit (h, style, gtk_widget_get_width (GTK_WIDGET (self)),
                                  gtk_widget_get_height (GTK_WIDGET (self)), x, y, &r, &c))
    return NULL;
  v = h->values[r * h->n_cols + c];
  for (int i = 0; i < h->n_cols; i++)
    sum += h->values[r * h->n_cols + i];
  if (h->row_normalize)
    /* Translators: confusion-matrix cell: true class, predicted class, count, share of the true class */
    return g_strdup_printf (_("%s → %s: %g (%.1f %% of %s)"),
                            h->row_labels ? h->row_labels[r] : "?", h->col_labels ? h->col_labels[c] : "?", v,
                            sum > 0 ? 100 * v / sum : 0.0, h->row_labels ? h->row_labels[r] : "?");
  /* Translators: heat-map cell: row, column, value */
  return g_strdup_printf (_("%s × %s: %.3g"), h->row_labels ? h->row_labels[r] : "?",
                          h->col_labels ? h->col_labels[c] : "?", v);
}

char *
cleave_chart_view_tooltip_at (CleaveChartView *self, double x, double y)
{
  const CleaveMaskMatrix *m;
  CleaveChartStyle style;
  GString *keepers;
  int module, kernel, n_keep = 0;

  g_return_val_if_fail (CLEAVE_IS_CHART_VIEW (self), NULL);
  if (!self->chart)
    return NULL;
  current_style (self, &style);
  if (self->kind == CLEAVE_CHART_HEAT_MAP)
    return heat_tooltip (self, &style, x, y);
  if (self->kind != CLEAVE_CHART_MASK_MATRIX)
    return NULL;
  m = self->chart;
  if (!cleave_chart_mask_matrix_hit (m, &style, gtk_widget_get_width (GTK_WIDGET (self)),
                                     gtk_widget_get_height (GTK_WIDGET (self)), x, y, &module, &kernel))
    return NULL;

  keepers = g_string_new (NULL);
  for (int i = 0; i < m->n_modules; i++)
    if (m->kept[(gsize) i * m->n_kernels + kernel])
      {
        if (n_keep++)
          g_string_append (keepers, ", ");
        if (m->module_labels && m->module_labels[i])
          g_string_append (keepers, m->module_labels[i]);
        else
          g_string_append_printf (keepers, "%d", i);
      }
  {
    g_autofree char *who = g_string_free (keepers, FALSE);

    /* Translators: tooltip of a mask cell: layer name, kernel index, the list of modules keeping it */
    return g_strdup_printf (_("Layer %s, kernel %d\nKept by %d of %d modules: %s"),
                            m->title ? m->title : "?", kernel, n_keep, m->n_modules,
                            n_keep ? who : _("none"));
  }
}

static gboolean
on_query_tooltip (GtkWidget *widget, int x, int y, gboolean keyboard, GtkTooltip *tooltip, gpointer data)
{
  g_autofree char *text = NULL;

  if (keyboard)
    return FALSE;
  text = cleave_chart_view_tooltip_at (CLEAVE_CHART_VIEW (widget), x, y);
  if (!text)
    return FALSE;
  gtk_tooltip_set_text (tooltip, text);
  return TRUE;
}

static void
on_chooser_response (GtkNativeDialog *dialog, int response, CleaveChartView *self)
{
  if (response == GTK_RESPONSE_ACCEPT && self->chart)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = g_file_get_path (file);
      g_autoptr(GError) error = NULL;

      if (path && !cleave_chart_view_save (self, path, &error))
        cleave_gui_show_error (GTK_WIDGET (self), _("Could Not Save Chart"), error->message);
    }
  g_clear_object (&self->chooser);
}

static void
save_action (GtkWidget *widget, const char *action_name, GVariant *param)
{
  CleaveChartView *self = CLEAVE_CHART_VIEW (widget);
  const char *format = g_variant_get_string (param, NULL);
  GtkRoot *root = gtk_widget_get_root (widget);
  g_autofree char *name = NULL;
  const char *title;

  if (!self->chart || self->chooser)
    return;
  title = g_strcmp0 (format, "svg") == 0 ? _("Save Chart as SVG") : _("Save Chart as PNG");
  self->chooser = gtk_file_chooser_native_new (title, GTK_WINDOW (root), GTK_FILE_CHOOSER_ACTION_SAVE,
                                               _("_Save"), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  /* Translators: default file name of a saved chart, keep the extension placeholder */
  name = g_strdup_printf (_("chart.%s"), g_strcmp0 (format, "svg") == 0 ? "svg" : "png");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (self->chooser), name);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
on_secondary_click (GtkGestureClick *gesture, int n_press, double x, double y, CleaveChartView *self)
{
  if (!self->chart)
    return;
  gtk_popover_set_pointing_to (GTK_POPOVER (self->menu), &(GdkRectangle) { x, y, 1, 1 });
  gtk_popover_popup (GTK_POPOVER (self->menu));
}

static gboolean
popup_menu_binding (GtkWidget *widget, GVariant *args, gpointer user_data)
{
  CleaveChartView *self = CLEAVE_CHART_VIEW (widget);

  if (!self->chart)
    return FALSE;
  gtk_popover_set_pointing_to (GTK_POPOVER (self->menu),
                               &(GdkRectangle) { gtk_widget_get_width (widget) / 2,
                                                 gtk_widget_get_height (widget) / 2, 1, 1 });
  gtk_popover_popup (GTK_POPOVER (self->menu));
  return TRUE;
}

static void
on_dark_changed (CleaveChartView *self)
{
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

static void
cleave_chart_view_dispose (GObject *object)
{
  CleaveChartView *self = CLEAVE_CHART_VIEW (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  g_clear_pointer (&self->menu, gtk_widget_unparent);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_CHART_VIEW);
  G_OBJECT_CLASS (cleave_chart_view_parent_class)->dispose (object);
}

static void
cleave_chart_view_finalize (GObject *object)
{
  CleaveChartView *self = CLEAVE_CHART_VIEW (object);

  if (self->chart)
    cleave_chart_free (self->kind, self->chart);
  G_OBJECT_CLASS (cleave_chart_view_parent_class)->finalize (object);
}

static void
cleave_chart_view_class_init (CleaveChartViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_chart_view_dispose;
  object_class->finalize = cleave_chart_view_finalize;

  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-chart-view.ui");
  gtk_widget_class_install_action (widget_class, "chart.save", "s", save_action);
  gtk_widget_class_set_css_name (widget_class, "chartview");
  /* The context menu is reachable from the keyboard too. */
  gtk_widget_class_add_binding (widget_class, GDK_KEY_F10, GDK_SHIFT_MASK, popup_menu_binding, NULL);
  gtk_widget_class_add_binding (widget_class, GDK_KEY_Menu, 0, popup_menu_binding, NULL);
}

static void
cleave_chart_view_init (CleaveChartView *self)
{
  g_autoptr(GMenu) menu = g_menu_new ();
  GtkGesture *click = gtk_gesture_click_new ();

  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (self), draw_func, NULL, NULL);

  g_menu_append (menu, _("Save as _PNG…"), "chart.save::png");
  g_menu_append (menu, _("Save as _SVG…"), "chart.save::svg");
  self->menu = gtk_popover_menu_new_from_model (G_MENU_MODEL (menu));
  gtk_popover_set_has_arrow (GTK_POPOVER (self->menu), FALSE);
  gtk_widget_set_halign (self->menu, GTK_ALIGN_START);
  gtk_widget_set_parent (self->menu, GTK_WIDGET (self));

  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_SECONDARY);
  g_signal_connect (click, "pressed", G_CALLBACK (on_secondary_click), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (click));

  g_signal_connect (self, "query-tooltip", G_CALLBACK (on_query_tooltip), NULL);
  g_signal_connect_object (adw_style_manager_get_default (), "notify::dark",
                           G_CALLBACK (on_dark_changed), self, G_CONNECT_SWAPPED);
  gtk_widget_action_set_enabled (GTK_WIDGET (self), "chart.save", FALSE);
}

GtkWidget *
cleave_chart_view_new (void)
{
  return g_object_new (CLEAVE_TYPE_CHART_VIEW, NULL);
}
