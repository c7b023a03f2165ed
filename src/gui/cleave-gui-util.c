/* cleave-gui-util.c: helpers shared by the pages. */
#include <adwaita.h>
#include <glib/gi18n.h>
#include <string.h>

#include "cleave-gui-util.h"
#include "cleave-job.h"
#include "cleave-dataset.h"
#include "cleave-error.h"

static CleaveGuiConfig gui_config;

void
cleave_gui_config_init (void)
{
  g_auto(GStrv) env = g_get_environ ();
  g_autoptr(GString) taken = g_string_new (NULL);
  g_autoptr(GError) error = NULL;
  const char *data_dir = g_environ_getenv (env, "CLEAVE_DATA_DIR");
  const char *const *defaults = cleave_dataset_default_dirs ();
  GPtrArray *dirs = g_ptr_array_new ();

  cleave_backend_config_init (&gui_config.backend);
  if (!cleave_backend_config_from_environ (&gui_config.backend, env, taken, &error))
    {
      /* A bad value is reported and the defaults are kept. */
      g_warning ("%s; using the default backend settings", error->message);
      cleave_backend_config_init (&gui_config.backend);
      g_string_truncate (taken, 0);
    }
  if (data_dir && *data_dir)
    {
      g_ptr_array_add (dirs, g_strdup (data_dir));
      g_string_append_printf (taken, "%sCLEAVE_DATA_DIR=%s (data directory)", taken->len ? ", " : "", data_dir);
    }
  for (int i = 0; defaults[i]; i++)
    g_ptr_array_add (dirs, g_strdup (defaults[i]));
  g_ptr_array_add (dirs, NULL);
  gui_config.data_dirs = (char **) g_ptr_array_free (dirs, FALSE);
  if (taken->len)
    {
      gui_config.from_environment = g_strdup (taken->str);
      g_message ("from the environment: %s", taken->str);
    }
}

const CleaveGuiConfig *
cleave_gui_config (void)
{
  static gsize done;

  /* main() reads it first; a program that does not (a test) gets the same here */
  if (g_once_init_enter (&done))
    {
      if (gui_config.data_dirs == NULL)
        cleave_gui_config_init ();
      g_once_init_leave (&done, 1);
    }
  return &gui_config;
}

typedef struct {
  GObject *target;
  guint run;
  CleaveProgress progress;
  CleaveGuiProgressApply apply;
} PostedProgress;

static gboolean
apply_posted (gpointer data)
{
  PostedProgress *p = data;

  p->apply (p->target, &p->progress, p->run);
  return G_SOURCE_REMOVE;
}

static void
posted_free (gpointer data)
{
  PostedProgress *p = data;

  g_object_unref (p->target);
  g_free (p);
}

void
cleave_gui_post_progress (gpointer target, guint run, const CleaveProgress *progress, CleaveGuiProgressApply apply)
{
  PostedProgress *p = g_new (PostedProgress, 1);

  p->target = g_object_ref (target);
  p->run = run;
  p->progress = *progress;
  p->apply = apply;
  g_main_context_invoke_full (NULL, G_PRIORITY_DEFAULT, apply_posted, p, posted_free);
}

char *
cleave_gui_format_count (guint64 v)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, v);
  GString *out = g_string_new (NULL);
  gsize n = strlen (digits);

  for (gsize i = 0; i < n; i++)
    {
      if (i > 0 && (n - i) % 3 == 0)
        g_string_append (out, "\u2009");
      g_string_append_c (out, digits[i]);
    }
  return g_string_free (out, FALSE);
}

char *
cleave_gui_format_duration (double seconds)
{
  guint64 s = seconds > 0 ? (guint64) (seconds + 0.5) : 0;

  if (s >= 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u:%02u", s / 3600, (guint) (s / 60 % 60), (guint) (s % 60));
  if (s >= 60)
    return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u", s / 60, (guint) (s % 60));
  /* Translators: a duration in seconds */
  return g_strdup_printf (_("%u s"), (guint) s);
}

void
cleave_gui_show_error_details (GtkWidget *widget, const char *title, const char *plain, const char *detail)
{
  GtkRoot *root = gtk_widget_get_root (widget);
  GtkWidget *msg, *expander, *label;

  if (!GTK_IS_WINDOW (root))
    return;
  msg = adw_message_dialog_new (GTK_WINDOW (root), title, plain);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (msg), "close", _("_Close"));
  expander = gtk_expander_new_with_mnemonic (_("_Details"));
  label = gtk_label_new (detail);
  gtk_label_set_wrap (GTK_LABEL (label), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (label), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_selectable (GTK_LABEL (label), TRUE);
  gtk_label_set_xalign (GTK_LABEL (label), 0);
  gtk_widget_add_css_class (label, "monospace");
  gtk_expander_set_child (GTK_EXPANDER (expander), label);
  adw_message_dialog_set_extra_child (ADW_MESSAGE_DIALOG (msg), expander);
  gtk_window_present (GTK_WINDOW (msg));
}

const char *
cleave_gui_file_error_text (const GError *error)
{
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
      g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    return _("The file does not exist any more.");
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED) ||
      g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_ACCES))
    return _("You are not allowed to read this file.");
  if (g_error_matches (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE))
    return _("The file is damaged, or it is not a model, module set or composition that Cleave can read.");
  return _("The file could not be read.");
}

void
cleave_gui_show_error (GtkWidget *widget, const char *title, const char *message)
{
  GtkRoot *root = gtk_widget_get_root (widget);
  GtkWidget *msg;

  if (!GTK_IS_WINDOW (root))
    return;
  msg = adw_message_dialog_new (GTK_WINDOW (root), title, message);
  adw_message_dialog_add_response (ADW_MESSAGE_DIALOG (msg), "close", _("_Close"));
  gtk_window_present (GTK_WINDOW (msg));
}

void
cleave_gui_show_prf_chart (CleaveChartView *view, const char *title,
                           const char *const *names, int n, const double *prf)
{
  const char *const series[] = { _("precision"), _("recall"), _("F1"), NULL };
  CleaveBarChart chart = {
    .title = title,
    .categories = names,
    .n_categories = n,
    .series_names = series,
    .n_series = 3,
    .values = prf,
    .y_max = 1.0,
  };

  cleave_chart_view_set_chart (view, CLEAVE_CHART_BARS, &chart);
}

void
cleave_gui_grid_add_cell (GtkGrid *grid, const char *text, int col, int row,
                          gboolean numeric, gboolean header)
{
  GtkWidget *label = gtk_label_new (text);

  gtk_label_set_xalign (GTK_LABEL (label), numeric ? 1.0 : 0.0);
  gtk_widget_set_hexpand (label, col == 0);
  if (numeric)
    gtk_widget_add_css_class (label, "numeric");
  if (header)
    gtk_widget_add_css_class (label, "header");
  gtk_grid_attach (grid, label, col, row, 1, 1);
}

GFile *
cleave_gui_dropped_file (const GValue *value)
{
  GSList *files;
  GFile *file;

  if (!G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    return NULL;
  files = gdk_file_list_get_files (g_value_get_boxed (value));
  if (!files)
    return NULL;
  file = g_object_ref (files->data);
  g_slist_free (files);
  return file;
}

void
cleave_gui_leaflet_forward (AdwLeaflet *leaflet)
{
  adw_leaflet_navigate (leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
}

void
cleave_gui_leaflet_back (AdwLeaflet *leaflet)
{
  adw_leaflet_navigate (leaflet, ADW_NAVIGATION_DIRECTION_BACK);
}

void
cleave_gui_bind_leaflet_callbacks (GtkWidgetClass *widget_class)
{
  gtk_widget_class_bind_template_callback_full (widget_class, "cleave_gui_leaflet_forward",
                                                G_CALLBACK (cleave_gui_leaflet_forward));
  gtk_widget_class_bind_template_callback_full (widget_class, "cleave_gui_leaflet_back",
                                                G_CALLBACK (cleave_gui_leaflet_back));
}

void
cleave_gui_hand_focus (GtkWidget *from, GtkWidget *to)
{
  GtkRoot *root = gtk_widget_get_root (from);
  GtkWidget *focus = root ? gtk_root_get_focus (root) : NULL;

  if (focus && (focus == from || gtk_widget_is_ancestor (focus, from)))
    gtk_widget_grab_focus (to);
}

gboolean
cleave_gui_open_test_data (const char *dataset, const char *device, GCancellable *cancellable,
                           CleaveDataset **ds, CleaveBackend **backend, GError **error)
{
  CleaveDeviceSpec spec = { device, &cleave_gui_config ()->backend };

  *ds = cleave_dataset_load_from (dataset, (const char *const *) cleave_gui_config ()->data_dirs, CLEAVE_SPLIT_TEST,
                                  cancellable, error);
  *backend = *ds ? cleave_job_open_device (&spec, error) : NULL;
  return *backend != NULL;
}
