/* cleave-split-page.c: the split page. The splitters are not in the core
 * yet, so Start stays insensitive; options, device choice and the (empty)
 * live chart are real so the page's layout is final. */
#include <glib/gi18n.h>

#include "cleave-split-page.h"
#include "cleave-chart-view.h"
#include "cleave-device.h"

struct _CleaveSplitPage
{
  AdwBin parent_instance;

  GtkLabel *model_label;
  AdwComboRow *device_row;
  GtkButton *start_button;
  GtkButton *cancel_button;
  CleaveChartView *progress_chart;

  GSettings *settings;
  GPtrArray *device_ids;       /* char*, parallel to the device row's items */
};

G_DEFINE_FINAL_TYPE (CleaveSplitPage, cleave_split_page, ADW_TYPE_BIN)

static void
show_empty_chart (CleaveSplitPage *self)
{
  CleaveLineChart chart = {
    .title = _("Training progress"),
    .x_label = _("epoch"),
    .y_min = 0, .y_max = 1,
  };

  cleave_chart_view_set_chart (self->progress_chart, CLEAVE_CHART_LINE, &chart);
}

void
cleave_split_page_set_model (CleaveSplitPage *self, CleaveModel *model)
{
  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));

  if (model && model->path)
    {
      g_autofree char *base = g_path_get_basename (model->path);
      /* Translators: %s is a model file name */
      g_autofree char *text = g_strdup_printf (_("Model: %s"), base);

      gtk_label_set_label (self->model_label, text);
    }
  else
    gtk_label_set_label (self->model_label, _("No model open"));
  show_empty_chart (self);
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
  adw_combo_row_set_model (self->device_row, G_LIST_MODEL (names));
  g_object_unref (names);
}

void
cleave_split_page_set_settings (CleaveSplitPage *self, GSettings *settings)
{
  g_autofree char *device = NULL;

  g_return_if_fail (CLEAVE_IS_SPLIT_PAGE (self));
  g_set_object (&self->settings, settings);
  if (!settings)
    return;
  device = g_settings_get_string (settings, "device");
  for (guint i = 0; i < self->device_ids->len; i++)
    if (g_strcmp0 (device, g_ptr_array_index (self->device_ids, i)) == 0)
      {
        g_signal_handlers_block_by_func (self->device_row, on_device_selected, self);
        adw_combo_row_set_selected (self->device_row, i);
        g_signal_handlers_unblock_by_func (self->device_row, on_device_selected, self);
      }
}

static void
cleave_split_page_dispose (GObject *object)
{
  CleaveSplitPage *self = CLEAVE_SPLIT_PAGE (object);

  g_clear_object (&self->settings);
  /* AdwBin unparents its child itself: drop it first so the template
   * cleanup and AdwBin do not both unparent it. */
  adw_bin_set_child (ADW_BIN (object), NULL);
  gtk_widget_dispose_template (GTK_WIDGET (object), CLEAVE_TYPE_SPLIT_PAGE);
  G_OBJECT_CLASS (cleave_split_page_parent_class)->dispose (object);
}

static void
cleave_split_page_finalize (GObject *object)
{
  g_ptr_array_unref (CLEAVE_SPLIT_PAGE (object)->device_ids);
  G_OBJECT_CLASS (cleave_split_page_parent_class)->finalize (object);
}

static void
cleave_split_page_class_init (CleaveSplitPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->dispose = cleave_split_page_dispose;
  object_class->finalize = cleave_split_page_finalize;

  g_type_ensure (CLEAVE_TYPE_CHART_VIEW);
  gtk_widget_class_set_template_from_resource (widget_class, "/org/cleave/Cleave/ui/cleave-split-page.ui");
  gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, model_label);
  gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, device_row);
  gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, start_button);
  gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, cancel_button);
  gtk_widget_class_bind_template_child (widget_class, CleaveSplitPage, progress_chart);
  gtk_widget_class_bind_template_callback (widget_class, on_device_selected);
}

static void
cleave_split_page_init (CleaveSplitPage *self)
{
  self->device_ids = g_ptr_array_new_with_free_func (g_free);
  gtk_widget_init_template (GTK_WIDGET (self));
  fill_devices (self);
  show_empty_chart (self);
  gtk_widget_set_sensitive (GTK_WIDGET (self->start_button), FALSE);
  gtk_widget_set_sensitive (GTK_WIDGET (self->cancel_button), FALSE);
}
