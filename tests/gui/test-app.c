/* test-app.c: the real application under a display (Xvfb in CI): open a
 * model (the shipped demo, else a freshly built untrained SimCNN), evaluate
 * it when Fashion-MNIST is present, visit every page, and save a screenshot
 * of each into the build folder. */
#include <glib/gstdio.h>
#include <gtk/gtk.h>

#include "cleave-application.h"
#include "cleave-arch.h"
#include "cleave-model-page.h"
#include "cleave-window.h"

static const char *const pages[] = { "start", "model", "split", "modules", "compose" };

typedef struct {
  gboolean done;
  gboolean ok;
} Wait;

static void
on_finished (GObject *obj, gboolean ok, Wait *w)
{
  w->done = TRUE;
  w->ok = ok;
}

static gboolean
on_timeout (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Spins the main loop until @flag is set or @seconds pass. */
static void
spin_until (gboolean *flag, double seconds)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add ((guint) (seconds * 1000), on_timeout, &timed_out);

  while (!*flag && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
}

static void
spin (double seconds)
{
  gboolean never = FALSE;

  spin_until (&never, seconds);
}

static char *
save_screenshot (GtkWidget *window, const char *name)
{
  const char *dir = g_getenv ("G_TEST_BUILDDIR");
  g_autofree char *file = g_strdup_printf ("screenshot-%s.png", name);
  char *path = g_build_filename (dir ? dir : ".", file, NULL);
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (window);
  int w = gtk_widget_get_width (window), h = gtk_widget_get_height (window);
  g_autoptr(GskRenderNode) node = NULL;
  g_autoptr(GdkTexture) texture = NULL;

  /* A widget that has not been laid out since a change snapshots to
   * nothing: give the frame clock a few more frames. */
  for (int tries = 0; !node && tries < 50; tries++)
    {
      GtkSnapshot *snapshot = gtk_snapshot_new ();

      gdk_paintable_snapshot (paintable, snapshot, w, h);
      node = gtk_snapshot_free_to_node (snapshot);
      if (!node)
        spin (0.1);
    }
  g_assert_nonnull (node);
  texture = gsk_renderer_render_texture (gtk_native_get_renderer (GTK_NATIVE (window)), node,
                                         &GRAPHENE_RECT_INIT (0, 0, w, h));
  g_assert_true (gdk_texture_save_to_png (texture, path));
  g_assert_cmpint (gdk_texture_get_width (texture), ==, w);
  return path;
}

/* A model file the test can always open: an untrained SimCNN for 28×28
 * grey images with Fashion-MNIST's class names. */
static char *
write_fallback_model (void)
{
  const char *const names[] = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot", NULL };
  g_autoptr(GError) error = NULL;
  CleaveGraph *graph = cleave_arch_build ("simcnn", 1, 28, 28, 10, &error);
  g_autoptr(CleaveModel) model = NULL;
  const char *dir = g_getenv ("G_TEST_BUILDDIR");
  char *path = g_build_filename (dir ? dir : g_get_tmp_dir (), "test-app-model.safetensors", NULL);

  g_assert_no_error (error);
  cleave_graph_init_params (graph, 7);
  model = cleave_model_new (graph, 10, names);
  model->n_channels = 1;
  model->mean[0] = 0.286f;
  model->std[0] = 0.353f;
  g_assert_true (cleave_model_save (model, path, &error));
  g_assert_no_error (error);
  return path;
}

/* Evaluating the full Fashion-MNIST test split takes minutes on a busy CI
 * machine; a tiny ImageFolder (two classes, four images each) runs the same
 * thread, dataset, device and metrics code in a moment. */
static char *
write_tiny_image_folder (void)
{
  const char *dir = g_getenv ("G_TEST_BUILDDIR");
  char *root = g_build_filename (dir ? dir : g_get_tmp_dir (), "test-app-images", NULL);

  for (int c = 0; c < 2; c++)
    {
      g_autofree char *cls = g_strdup_printf ("class%d", c);
      g_autofree char *class_dir = g_build_filename (root, cls, NULL);

      g_assert_cmpint (g_mkdir_with_parents (class_dir, 0755), ==, 0);
      for (int i = 0; i < 4; i++)
        {
          g_autoptr(GdkPixbuf) pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 28, 28);
          g_autofree char *name = g_strdup_printf ("%d.png", i);
          g_autofree char *path = g_build_filename (class_dir, name, NULL);
          g_autoptr(GError) error = NULL;

          gdk_pixbuf_fill (pixbuf, c ? 0xe0e0e0ff : 0x202020ff);
          g_assert_true (gdk_pixbuf_save (pixbuf, path, "png", &error, NULL));
          g_assert_no_error (error);
        }
    }
  return root;
}

static void
test_pages (void)
{
  g_autoptr(CleaveApplication) app = cleave_application_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *demo = cleave_application_find_demo_model ();
  g_autofree char *model_path = NULL;
  g_autoptr(GFile) file = NULL;
  CleaveWindow *window;
  Wait loaded = { 0 }, evaluated = { 0 };
  gulong handler;

  g_application_set_flags (G_APPLICATION (app),
                           g_application_get_flags (G_APPLICATION (app)) | G_APPLICATION_NON_UNIQUE);
  g_assert_true (g_application_register (G_APPLICATION (app), NULL, &error));
  g_assert_no_error (error);
  g_application_activate (G_APPLICATION (app));
  window = CLEAVE_WINDOW (gtk_application_get_active_window (GTK_APPLICATION (app)));
  g_assert_nonnull (window);
  gtk_window_set_default_size (GTK_WINDOW (window), 1100, 760);
  spin (1.0);
  g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (window)));
  g_free (save_screenshot (GTK_WIDGET (window), "start-empty"));

  if (demo)
    model_path = g_strdup (demo);
  else
    {
      g_test_message ("data/models/demo.safetensors is not there yet: opening an untrained SimCNN instead");
      model_path = write_fallback_model ();
    }
  file = g_file_new_for_path (model_path);
  handler = g_signal_connect (window, "load-finished", G_CALLBACK (on_finished), &loaded);
  cleave_window_open_file (window, file);
  spin_until (&loaded.done, 60);
  g_signal_handler_disconnect (window, handler);
  g_assert_true (loaded.done);
  g_assert_true (loaded.ok);
  g_assert_nonnull (cleave_window_get_model (window));

  {
    CleaveModelPage *model_page = CLEAVE_MODEL_PAGE (cleave_window_get_page (window, "model"));
    g_autofree char *images = write_tiny_image_folder ();
    GSettings *settings = cleave_application_get_settings (app);

    g_assert_nonnull (settings);
    g_settings_set_string (settings, "device", "cpu");
    cleave_model_page_set_dataset (model_page, images);
    handler = g_signal_connect (model_page, "evaluated", G_CALLBACK (on_finished), &evaluated);
    g_assert_true (cleave_model_page_evaluate (model_page));
    /* The window must keep drawing while the worker runs. */
    spin (0.2);
    g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (window)));
    spin_until (&evaluated.done, 240);
    g_signal_handler_disconnect (model_page, handler);
    g_assert_true (evaluated.done);
    g_assert_true (evaluated.ok);
  }

  for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
    {
      g_autofree char *path = NULL;
      GStatBuf st;

      cleave_window_show_page (window, pages[i]);
      spin (0.5);
      path = save_screenshot (GTK_WIDGET (window), pages[i]);
      g_assert_cmpint (g_stat (path, &st), ==, 0);
      g_assert_cmpint (st.st_size, >, 5000);
      g_test_message ("screenshot: %s", path);
    }

  gtk_window_destroy (GTK_WINDOW (window));
  spin (0.2);
}

static void
test_no_display (void)
{
  g_test_skip ("no display (run the suite under xvfb-run -a)");
}

int
main (int argc, char **argv)
{
  gboolean have_display = g_getenv ("DISPLAY") || g_getenv ("WAYLAND_DISPLAY");

  g_test_init (&argc, &argv, NULL);
  if (have_display)
    {
      /* A headless test machine has no session bus and GTK warns about
       * it (through the structured log writer, which a test fatal handler
       * cannot filter); criticals stay fatal. */
      g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
      gtk_init ();
      g_test_add_func ("/gui/app/pages-and-screenshots", test_pages);
    }
  else
    g_test_add_func ("/gui/app/pages-and-screenshots", test_no_display);
  return g_test_run ();
}
