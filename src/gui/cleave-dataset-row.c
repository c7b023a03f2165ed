/* cleave-dataset-row.c: dataset combo row with an "Image Folder…" entry. */
#include <glib/gi18n.h>

#include "cleave-dataset.h"

#include "cleave-dataset-row.h"

/* The named datasets (cleave_dataset_names), then "Image Folder…". */
#define FOLDER_ROW CLEAVE_N_DATASET_NAMES

struct _CleaveDatasetRow
{
  AdwComboRow parent_instance;

  char *spec;
  GtkFileChooserNative *chooser;
  gboolean updating;
};

enum {
  PROP_0,
  PROP_SPEC,
  N_PROPS
};

static GParamSpec *props[N_PROPS];

G_DEFINE_FINAL_TYPE (CleaveDatasetRow, cleave_dataset_row, ADW_TYPE_COMBO_ROW)

const char *
cleave_dataset_row_get_spec (CleaveDatasetRow *self)
{
  g_return_val_if_fail (CLEAVE_IS_DATASET_ROW (self), NULL);
  return self->spec;
}

static void
store_spec (CleaveDatasetRow *self, const char *spec)
{
  if (g_strcmp0 (self->spec, spec) == 0)
    return;
  g_free (self->spec);
  self->spec = g_strdup (spec);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SPEC]);
}

static void
update_subtitle (CleaveDatasetRow *self)
{
  gboolean folder = adw_combo_row_get_selected (ADW_COMBO_ROW (self)) == FOLDER_ROW;

  adw_action_row_set_subtitle (ADW_ACTION_ROW (self), folder && self->spec ? self->spec : "");
}

void
cleave_dataset_row_set_spec (CleaveDatasetRow *self, const char *spec)
{
  guint row = FOLDER_ROW;

  g_return_if_fail (CLEAVE_IS_DATASET_ROW (self));
  g_return_if_fail (spec != NULL);
  for (guint i = 0; i < CLEAVE_N_DATASET_NAMES; i++)
    if (g_strcmp0 (spec, cleave_dataset_names ()[i]) == 0)
      row = i;
  self->updating = TRUE;
  adw_combo_row_set_selected (ADW_COMBO_ROW (self), row);
  self->updating = FALSE;
  store_spec (self, spec);
  update_subtitle (self);
}

static void
on_folder_chosen (GtkNativeDialog *dialog, int response, CleaveDatasetRow *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;

      if (path)
        store_spec (self, path);
    }
  g_clear_object (&self->chooser);
  /* A cancelled chooser leaves the previous dataset: show it again. */
  cleave_dataset_row_set_spec (self, self->spec);
}

static void
on_selected (CleaveDatasetRow *self)
{
  guint i = adw_combo_row_get_selected (ADW_COMBO_ROW (self));
  GtkRoot *root;

  if (self->updating)
    return;
  if (i < FOLDER_ROW)
    {
      store_spec (self, cleave_dataset_names ()[i]);
      update_subtitle (self);
      return;
    }
  root = gtk_widget_get_root (GTK_WIDGET (self));
  if (i != FOLDER_ROW || self->chooser || !GTK_IS_WINDOW (root))
    return;
  self->chooser = gtk_file_chooser_native_new (_("Choose an Image Folder"), GTK_WINDOW (root),
                                               GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER,
                                               _("_Select"), _("_Cancel"));
  gtk_native_dialog_set_modal (GTK_NATIVE_DIALOG (self->chooser), TRUE);
  g_signal_connect (self->chooser, "response", G_CALLBACK (on_folder_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (self->chooser));
}

static void
cleave_dataset_row_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  CleaveDatasetRow *self = CLEAVE_DATASET_ROW (object);

  switch (prop_id)
    {
    case PROP_SPEC:
      g_value_set_string (value, self->spec);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
cleave_dataset_row_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  CleaveDatasetRow *self = CLEAVE_DATASET_ROW (object);

  switch (prop_id)
    {
    case PROP_SPEC:
      if (g_value_get_string (value))
        cleave_dataset_row_set_spec (self, g_value_get_string (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
cleave_dataset_row_dispose (GObject *object)
{
  CleaveDatasetRow *self = CLEAVE_DATASET_ROW (object);

  if (self->chooser)
    {
      gtk_native_dialog_destroy (GTK_NATIVE_DIALOG (self->chooser));
      g_clear_object (&self->chooser);
    }
  G_OBJECT_CLASS (cleave_dataset_row_parent_class)->dispose (object);
}

static void
cleave_dataset_row_finalize (GObject *object)
{
  g_free (CLEAVE_DATASET_ROW (object)->spec);
  G_OBJECT_CLASS (cleave_dataset_row_parent_class)->finalize (object);
}

static void
cleave_dataset_row_class_init (CleaveDatasetRowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->get_property = cleave_dataset_row_get_property;
  object_class->set_property = cleave_dataset_row_set_property;
  object_class->dispose = cleave_dataset_row_dispose;
  object_class->finalize = cleave_dataset_row_finalize;

  props[PROP_SPEC] = g_param_spec_string ("spec", NULL, NULL, cleave_dataset_names ()[0],
                                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
cleave_dataset_row_init (CleaveDatasetRow *self)
{
  const char *const labels[] = { _("Fashion-MNIST"), _("MNIST"), _("CIFAR-10"), _("Image Folder…"), NULL };
  g_autoptr(GtkStringList) list = gtk_string_list_new (labels);

  self->spec = g_strdup (cleave_dataset_names ()[0]);
  adw_combo_row_set_model (ADW_COMBO_ROW (self), G_LIST_MODEL (list));
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (self), _("_Dataset"));
  adw_preferences_row_set_use_underline (ADW_PREFERENCES_ROW (self), TRUE);
  g_signal_connect (self, "notify::selected", G_CALLBACK (on_selected), NULL);
}
