/* cleave-application.c: application-wide actions, accelerators and settings. */
#include <glib/gi18n.h>

#include "config.h"
#include "cleave-application.h"
#include "cleave-paths.h"
#include "cleave-window.h"
#include "cleave-gui-util.h"

struct _CleaveApplication
{
  AdwApplication parent_instance;

  GSettings *settings;
};

G_DEFINE_FINAL_TYPE (CleaveApplication, cleave_application, ADW_TYPE_APPLICATION)

CleaveApplication *
cleave_application_new (void)
{
  return g_object_new (CLEAVE_TYPE_APPLICATION,
                       "application-id", CLEAVE_APPLICATION_ID,
                       "flags", G_APPLICATION_HANDLES_OPEN,
                       "resource-base-path", "/org/cleave/Cleave",
                       NULL);
}

GSettings *
cleave_application_get_settings (CleaveApplication *self)
{
  g_return_val_if_fail (CLEAVE_IS_APPLICATION (self), NULL);
  return self->settings;
}

char *
cleave_application_find_demo_model (void)
{
  const char *env = g_getenv ("CLEAVE_DEMO_MODEL");

  if (env && g_file_test (env, G_FILE_TEST_IS_REGULAR))
    return g_strdup (env);
  return cleave_find_data_file ("models/demo.safetensors");
}

static CleaveWindow *
ensure_window (CleaveApplication *self)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (self));

  if (!window)
    window = GTK_WINDOW (cleave_window_new (self));
  return CLEAVE_WINDOW (window);
}

static void
cleave_application_activate (GApplication *app)
{
  gtk_window_present (GTK_WINDOW (ensure_window (CLEAVE_APPLICATION (app))));
}

static void
cleave_application_open (GApplication *app, GFile **files, int n_files, const char *hint)
{
  CleaveWindow *window = ensure_window (CLEAVE_APPLICATION (app));

  /* One model at a time: the last file named wins. */
  if (n_files > 0)
    cleave_window_open_file (window, files[n_files - 1]);
  gtk_window_present (GTK_WINDOW (window));
}

static void
about_action (GSimpleAction *action, GVariant *param, gpointer user_data)
{
  GtkApplication *app = GTK_APPLICATION (user_data);
  const char *developers[] = { "The Cleave authors", NULL };
  const CleaveGuiConfig *config = cleave_gui_config ();
  g_autofree char *backend = cleave_backend_config_describe (&config->backend);
  g_autofree char *dirs = g_strjoinv ("\n  ", config->data_dirs);
  g_autofree char *debug = g_strdup_printf ("Backend settings: %s\nFrom the environment: %s\nData directories:\n  %s\n",
                                            backend, config->from_environment ? config->from_environment : "nothing",
                                            dirs);
  GtkWidget *about;

  about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
                        "transient-for", gtk_application_get_active_window (app),
                        "application-icon", CLEAVE_APPLICATION_ID,
                        "application-name", _("Cleave"),
                        "developer-name", _("The Cleave authors"),
                        "version", PACKAGE_VERSION,
                        "comments", _("Split a trained image classifier into one module per class, "
                                      "then reuse the modules to build new models or patch weak ones."),
                        "website", "https://github.com/cleave-app/cleave",
                        "issue-url", "https://github.com/cleave-app/cleave/issues",
                        "license-type", GTK_LICENSE_GPL_3_0,
                        "developers", developers,
                        /* Translators: put your names here, one per line */
                        "translator-credits", _("translator-credits"),
                        "debug-info", debug,
                        NULL);
  gtk_window_present (GTK_WINDOW (about));
}

static void
quit_action (GSimpleAction *action, GVariant *param, gpointer user_data)
{
  GApplication *app = G_APPLICATION (user_data);
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (app));

  /* Closing windows lets them save their size and cancel running work. */
  for (GList *l = windows; l; )
    {
      GList *next = l->next;

      gtk_window_close (GTK_WINDOW (l->data));
      l = next;
    }
}

static void
cleave_application_startup (GApplication *app)
{
  CleaveApplication *self = CLEAVE_APPLICATION (app);
  static const GActionEntry entries[] = {
    { "about", about_action },
    { "quit", quit_action },
  };
  static const struct { const char *action; const char *accels[3]; } accels[] = {
    { "app.quit", { "<Control>q", NULL } },
    { "win.open", { "<Control>o", NULL } },
    { "win.open-demo", { "<Control>d", NULL } },
    { "win.show-page('start')", { "<Alt>1", NULL } },
    { "win.show-page('model')", { "<Alt>2", NULL } },
    { "win.show-page('split')", { "<Alt>3", NULL } },
    { "win.show-page('modules')", { "<Alt>4", NULL } },
    { "win.show-page('compose')", { "<Alt>5", NULL } },
    { "window.close", { "<Control>w", NULL } },
  };
  GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
  g_autoptr(GSettingsSchema) schema = NULL;

  G_APPLICATION_CLASS (cleave_application_parent_class)->startup (app);

  if (source)
    schema = g_settings_schema_source_lookup (source, CLEAVE_APPLICATION_ID, TRUE);
  if (schema)
    self->settings = g_settings_new (CLEAVE_APPLICATION_ID);
  else
    g_message ("GSettings schema %s is not installed; preferences and recent files will not be kept",
               CLEAVE_APPLICATION_ID);

  /* ADW_COLOR_SCHEME_DEFAULT follows the desktop's dark-style preference. */
  adw_style_manager_set_color_scheme (adw_style_manager_get_default (), ADW_COLOR_SCHEME_DEFAULT);

  g_action_map_add_action_entries (G_ACTION_MAP (app), entries, G_N_ELEMENTS (entries), app);
  for (guint i = 0; i < G_N_ELEMENTS (accels); i++)
    gtk_application_set_accels_for_action (GTK_APPLICATION (app), accels[i].action, accels[i].accels);
}

static void
cleave_application_finalize (GObject *object)
{
  CleaveApplication *self = CLEAVE_APPLICATION (object);

  g_clear_object (&self->settings);
  G_OBJECT_CLASS (cleave_application_parent_class)->finalize (object);
}

static void
cleave_application_class_init (CleaveApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);

  G_OBJECT_CLASS (klass)->finalize = cleave_application_finalize;
  app_class->startup = cleave_application_startup;
  app_class->activate = cleave_application_activate;
  app_class->open = cleave_application_open;
}

static void
cleave_application_init (CleaveApplication *self)
{
}
