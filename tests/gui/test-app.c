/* test-app.c: the real application under a display (Xvfb in CI), with GTK
 * criticals fatal: open the demo model (else a freshly trained SimCNN) and
 * evaluate it on a small folder of real Fashion-MNIST test images (the focus
 * stays put); start splits and cancel them (at once: nothing kept, and the
 * status says why; after two epochs: the best modules so far are kept and
 * named so), run a tiny split to the end, look at the modules and their
 * tooltips, save, reopen and close a module set; open files by their content
 * (a renamed model, an ONNX export without its extension, a module set,
 * weights without a graph, garbage); compose by selecting (a click changes
 * nothing), activating, dropping and undoing, with results that go out of
 * date and come back by themselves; patch the shipped weak model with the
 * suggested modules, try an image, export both results and reopen them to
 * the same numbers; check that every page fits 360 px and take screenshots
 * at 360, 800 and 1280 px, light and dark, into the build folder; quit while
 * the Compose page is busy. */
#include <glib/gstdio.h>
#include <string.h>
#include <gtk/gtk.h>

#include "cleave-application.h"
#include "cleave-arch.h"
#include "cleave-chart-view.h"
#include "cleave-compose.h"
#include "cleave-compose-page.h"
#include "cleave-device.h"
#include "cleave-train.h"
#include "cleave-model-page.h"
#include "cleave-modules-page.h"
#include "cleave-split-page.h"
#include "cleave-options.h"
#include "cleave-window.h"
#include "cleave-onnx.h"
#include "cleave-safetensors.h"
#include "cleave-module-palette.h"

static const char *const pages[] = { "start", "model", "split", "modules" };

typedef struct {
  gboolean done;
  gboolean ok;
  gboolean cancelled;
  gint64 when;               /* monotonic µs of the signal */
} Wait;

static void
on_finished (GObject *obj, gboolean ok, Wait *w)
{
  w->done = TRUE;
  w->ok = ok;
  w->when = g_get_monotonic_time ();
}

static void
on_split_finished (GObject *obj, gboolean ok, gboolean cancelled, Wait *w)
{
  w->done = TRUE;
  w->ok = ok;
  w->cancelled = cancelled;
  w->when = g_get_monotonic_time ();
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

/* A model file the test can always open: a SimCNN (width 1/8, the demo's
 * size) for 28×28 grey images with Fashion-MNIST's class names, trained for
 * a few seconds on @images so that its modules score their classes (an
 * untrained network's heads give every image the same score, and a module
 * without a score range cannot patch). */
static char *
write_fallback_model (const char *images)
{
  const char *const names[] = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot", NULL };
  g_autoptr(GError) error = NULL;
  CleaveGraph *graph = cleave_arch_build ("simcnn:w=0.125", 1, 28, 28, 10, &error);
  g_autoptr(CleaveModel) model = NULL;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  g_autofree int *train_idx = NULL, *val_idx = NULL;
  int n_train, n_val;
  CleaveTrainOptions opt;
  CleaveTrainResult result = { 0 };
  const char *dir = g_getenv ("G_TEST_BUILDDIR");
  char *path = g_build_filename (dir ? dir : g_get_tmp_dir (), "test-app-model.safetensors", NULL);

  g_assert_no_error (error);
  cleave_graph_init_params (graph, 7);
  model = cleave_model_new (graph, 10, names);
  model->n_channels = 1;
  model->mean[0] = 0.286f;
  model->std[0] = 0.353f;

  ds = cleave_dataset_load (images, CLEAVE_SPLIT_TRAIN, NULL, &error);
  g_assert_no_error (error);
  backend = cleave_device_open ("cpu", NULL, &error);
  g_assert_no_error (error);
  cleave_dataset_split (ds, 0.2, 0, &train_idx, &n_train, &val_idx, &n_val);
  cleave_train_options_init (&opt);
  opt.epochs = 12;
  opt.batch = 16;
  opt.lr = 0.02f;
  opt.use_augment = FALSE;
  g_assert_true (cleave_train (model, backend, ds, train_idx, n_train, val_idx, n_val, &opt, NULL, NULL, NULL,
                               &result, &error));
  g_assert_no_error (error);
  g_test_message ("fallback model: validation accuracy %.1f %% after %.1f s",
                  100 * result.best_val_accuracy, result.seconds);
  cleave_train_result_clear (&result);
  g_assert_true (cleave_model_save (model, path, &error));
  g_assert_no_error (error);
  return path;
}

/* Evaluating or splitting on the full Fashion-MNIST takes minutes on a
 * busy CI machine; a small ImageFolder (10 classes, a dozen images each)
 * runs the same threads, dataset, device, splitter and metrics code in
 * seconds. Real Fashion-MNIST test images when the dataset is installed
 * (so the demo model's numbers mean something), else synthetic patterns.
 * Folder names ("3 Dress", or "class3" for the synthetic ones) sort in
 * class order, so class k of the folder is class k of the model. */
#define TINY_PER_CLASS 20

static char *
write_tiny_image_folder (void)
{
  const char *dir = g_getenv ("G_TEST_BUILDDIR");
  char *root = g_build_filename (dir ? dir : g_get_tmp_dir (), "test-app-fashion", NULL);
  char names[10][40];
  g_autoptr(CleaveDataset) fashion = cleave_dataset_load ("fashion-mnist", CLEAVE_SPLIT_TEST, NULL, NULL);
  int taken[10] = { 0 };

  if (!fashion || fashion->c != 1 || fashion->h != 28 || fashion->w != 28 || fashion->n_classes != 10)
    g_clear_pointer (&fashion, cleave_dataset_free);
  for (int c = 0; c < 10; c++)
    {
      g_autofree char *class_dir = NULL;

      if (fashion && fashion->class_names && fashion->class_names[c])
        {
          g_snprintf (names[c], sizeof names[c], "%d %s", c, fashion->class_names[c]);
          g_strdelimit (names[c], "/", '-');
        }
      else
        g_snprintf (names[c], sizeof names[c], "class%d", c);
      class_dir = g_build_filename (root, names[c], NULL);

      g_assert_cmpint (g_mkdir_with_parents (class_dir, 0755), ==, 0);
    }
  for (int i = 0, written = 0; written < 10 * TINY_PER_CLASS && i < (fashion ? fashion->n : 10 * TINY_PER_CLASS); i++)
    {
      int c = fashion ? fashion->labels[i] : i % 10;
      g_autoptr(GdkPixbuf) pixbuf = NULL;
      g_autofree char *path = NULL;
      g_autoptr(GError) error = NULL;
      guint8 *px;
      int stride;

      if (taken[c] >= TINY_PER_CLASS)
        continue;
      pixbuf = gdk_pixbuf_new (GDK_COLORSPACE_RGB, FALSE, 8, 28, 28);
      px = gdk_pixbuf_get_pixels (pixbuf);
      stride = gdk_pixbuf_get_rowstride (pixbuf);
      for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
          {
            guint8 v = fashion ? fashion->pixels[(gsize) i * 784 + y * 28 + x]
                               : (guint8) (((x / (c + 2) + y / (taken[c] % 3 + 2)) % 2) ? 200 + c * 5 : 20 * c);

            px[y * stride + x * 3 + 0] = px[y * stride + x * 3 + 1] = px[y * stride + x * 3 + 2] = v;
          }
      {
        g_autofree char *name = g_strdup_printf ("%s/%d.png", names[c], taken[c]);

        path = g_build_filename (root, name, NULL);
      }
      g_assert_true (gdk_pixbuf_save (pixbuf, path, "png", &error, NULL));
      g_assert_no_error (error);
      taken[c]++;
      written++;
    }
  return root;
}

static GValue *
module_value (CleaveWorkspace *workspace, guint set_index, guint module_index)
{
  g_autoptr(GdkContentProvider) provider = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModuleRef) ref = cleave_module_ref_new (cleave_workspace_get_set (workspace, set_index), module_index);
  GValue *value = g_new0 (GValue, 1);

  /* The very payload a palette row's drag source offers. */
  provider = cleave_module_palette_content (ref);
  g_value_init (value, CLEAVE_TYPE_MODULE_REF);
  g_assert_true (gdk_content_provider_get_value (provider, value, &error));
  g_assert_no_error (error);
  return value;
}

static void
free_value (GValue *value)
{
  g_value_unset (value);
  g_free (value);
}

static void
shoot (CleaveWindow *window, const char *page, const char *name)
{
  g_autofree char *path = NULL;
  GStatBuf st;

  cleave_window_show_page (window, page);
  spin (0.5);
  path = save_screenshot (GTK_WIDGET (window), name);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_size, >, 5000);
  g_test_message ("screenshot: %s", path);
}

static char *
build_path (const char *name)
{
  const char *dir = g_getenv ("G_TEST_BUILDDIR");

  return g_build_filename (dir ? dir : g_get_tmp_dir (), name, NULL);
}

/* The first descendant of @root of type @type, with action @action when
 * given. */
static GtkWidget *
find_widget (GtkWidget *root, GType type, const char *action)
{
  for (GtkWidget *c = gtk_widget_get_first_child (root); c; c = gtk_widget_get_next_sibling (c))
    {
      GtkWidget *found;

      if (G_TYPE_CHECK_INSTANCE_TYPE (c, type) &&
          (!action || (GTK_IS_ACTIONABLE (c) && g_strcmp0 (gtk_actionable_get_action_name (GTK_ACTIONABLE (c)), action) == 0)))
        return c;
      if ((found = find_widget (c, type, action)))
        return found;
    }
  return NULL;
}

static GtkWidget *
focus_of (CleaveWindow *window)
{
  return gtk_root_get_focus (GTK_ROOT (window));
}

/* Split: cancel one that would run for long, then run a tiny one to the end. */
static void
run_splits (CleaveWindow *window, const char *images)
{
  CleaveSplitPage *page = CLEAVE_SPLIT_PAGE (cleave_window_get_page (window, "split"));
  CleaveGradSplitOptions opt;
  Wait done = { 0 };
  gulong handler;
  gint64 t_cancel;
  GtkWidget *start_button;
  CleaveWorkspace *workspace = cleave_window_get_workspace (window);
  guint sets_before = cleave_workspace_n_sets (workspace);

  cleave_split_page_set_method (page, "grad");
  cleave_split_page_set_dataset (page, images);
  cleave_grad_split_options_init (&opt);
  opt.head_epochs = 1;
  opt.rounds = 50;
  opt.mask_epochs = 1;
  opt.head_only_epochs = 1;
  opt.batch = 8;
  opt.train_images = 0;
  opt.val_images = 0;
  cleave_split_page_set_grad_options (page, &opt);
  cleave_window_show_page (window, "split");

  /* Cancelled before any epoch was validated: nothing is kept, and the
   * status says why. */
  handler = g_signal_connect (page, "finished", G_CALLBACK (on_split_finished), &done);
  g_assert_true (cleave_split_page_start (page));
  cleave_split_page_cancel (page);
  spin_until (&done.done, 30);
  g_assert_true (done.done);
  g_assert_true (done.cancelled);
  g_assert_false (done.ok);
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, sets_before);
  g_test_message ("split cancelled at once: %s", cleave_split_page_get_status (page));
  g_assert_true (g_str_has_prefix (cleave_split_page_get_status (page), "Cancelled at epoch 0: "));
  done = (Wait) { 0 };

  start_button = find_widget (GTK_WIDGET (page), GTK_TYPE_BUTTON, "split.start");
  spin (0.2);
  g_assert_true (gtk_widget_grab_focus (start_button));
  g_assert_true (cleave_split_page_start (page));
  g_assert_true (cleave_split_page_is_running (page));
  g_assert_false (cleave_split_page_start (page));
  /* Options are locked while it runs; the focus moved to Cancel, nearby. */
  g_assert_false (gtk_widget_is_sensitive (find_widget (GTK_WIDGET (page), GTK_TYPE_SPIN_BUTTON, NULL)));
  g_assert_true (focus_of (window) == find_widget (GTK_WIDGET (page), GTK_TYPE_BUTTON, "split.cancel"));
  /* Let it get going (a chart point or two), keeping the window drawn. */
  {
    gint64 until = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;

    while (!done.done && cleave_split_page_n_points (page) < 2 && g_get_monotonic_time () < until)
      g_main_context_iteration (NULL, TRUE);
  }
  g_assert_false (done.done);
  g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (window)));
  g_test_message ("split: %u chart points before cancel", cleave_split_page_n_points (page));
  t_cancel = g_get_monotonic_time ();
  cleave_split_page_cancel (page);
  spin_until (&done.done, 10);
  g_assert_true (done.done);
  g_test_message ("split: control back %.2f s after cancel", (done.when - t_cancel) / 1e6);
  g_assert_cmpint (done.when - t_cancel, <, 2 * G_USEC_PER_SEC);
  g_assert_true (done.cancelled);
  g_assert_false (cleave_split_page_is_running (page));
  g_assert_true (gtk_widget_is_sensitive (find_widget (GTK_WIDGET (page), GTK_TYPE_SPIN_BUTTON, NULL)));
  g_assert_true (focus_of (window) == start_button);
  /* Validated epochs were done before the cancel: the best modules so far
   * are kept, named and announced as cancelled at that epoch. */
  g_test_message ("split: %s", cleave_split_page_get_status (page));
  g_assert_true (done.ok);
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, sets_before + 1);
  {
    CleaveOpenSet *kept = cleave_workspace_get_set (workspace, sets_before);
    g_autofree char *epoch = g_strdup_printf ("cancelled at epoch %u", cleave_split_page_n_points (page));

    g_test_message ("split: kept set “%s”", cleave_open_set_get_name (kept));
    g_assert_nonnull (strstr (cleave_open_set_get_name (kept), epoch));
    g_assert_cmpuint (cleave_open_set_get_set (kept)->modules->len, ==, 10);
    g_assert_true (g_str_has_prefix (cleave_split_page_get_status (page), "Cancelled at epoch"));
  }
  g_signal_handler_disconnect (page, handler);

  /* A tiny split to the end. */
  opt.rounds = 1;
  opt.batch = 16;
  cleave_split_page_set_grad_options (page, &opt);
  done = (Wait) { 0 };
  sets_before = cleave_workspace_n_sets (workspace);
  handler = g_signal_connect (page, "finished", G_CALLBACK (on_split_finished), &done);
  g_assert_true (cleave_split_page_start (page));
  spin_until (&done.done, 150);
  g_signal_handler_disconnect (page, handler);
  g_assert_true (done.done);
  g_assert_true (done.ok);
  g_assert_false (done.cancelled);
  g_assert_cmpuint (cleave_split_page_n_points (page), ==, 3);
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, sets_before + 1);

  /* The options of the last run are remembered, every one of them. */
  {
    GtkApplication *app = gtk_window_get_application (GTK_WINDOW (window));
    GSettings *settings = cleave_application_get_settings (CLEAVE_APPLICATION (app));
    g_autoptr(GVariant) dict = g_settings_get_value (settings, "grad-split-options");
    double rounds = 0, batch = 0, max_loss = -1;
    const char *loss = NULL;
    guint n;

    cleave_grad_split_option_table (&n);
    g_assert_cmpuint (g_variant_n_children (dict), ==, n);
    g_assert_true (g_variant_lookup (dict, "rounds", "d", &rounds));
    g_assert_true (g_variant_lookup (dict, "batch", "d", &batch));
    g_assert_true (g_variant_lookup (dict, "max-loss", "d", &max_loss));
    g_assert_true (g_variant_lookup (dict, "loss", "&s", &loss));
    g_assert_cmpfloat (rounds, ==, 1);
    g_assert_cmpfloat (batch, ==, 16);
    g_assert_cmpfloat (max_loss, ==, opt.max_loss);
    g_assert_cmpstr (loss, ==, "logits");
  }
}

static void
check_modules_page (CleaveWindow *window)
{
  CleaveModulesPage *page = CLEAVE_MODULES_PAGE (cleave_window_get_page (window, "modules"));
  CleaveWorkspace *workspace = cleave_window_get_workspace (window);
  guint last = cleave_workspace_n_sets (workspace) - 1;
  CleaveModuleSet *set = cleave_open_set_get_set (cleave_workspace_get_set (workspace, last));
  CleaveChartView *mask = CLEAVE_CHART_VIEW (cleave_modules_page_get_mask_view (page));
  g_autofree char *path = build_path ("test-app-modules.safetensors");
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) file = NULL;
  Wait opened = { 0 };
  gulong handler;
  gboolean tooltip = FALSE;
  int w, h;

  g_assert_true (cleave_modules_page_get_set (page) == set);
  g_assert_cmpuint (set->modules->len, ==, 10);
  g_assert_true (cleave_chart_view_has_chart (mask));
  cleave_window_show_page (window, "modules");
  cleave_modules_page_show_layer (page, set->n_sites - 1);
  spin (0.5);
  /* Some cell of the mask view names its layer, kernel and keepers. */
  w = gtk_widget_get_width (GTK_WIDGET (mask));
  h = gtk_widget_get_height (GTK_WIDGET (mask));
  for (int y = 0; y < h && !tooltip; y += 4)
    for (int x = 0; x < w && !tooltip; x += 4)
      {
        g_autofree char *text = cleave_chart_view_tooltip_at (mask, x, y);

        if (text)
          {
            g_test_message ("mask tooltip: %s", text);
            g_assert_nonnull (strstr (text, set->site_names[set->n_sites - 1]));
            tooltip = TRUE;
          }
      }
  g_assert_true (tooltip);
  cleave_modules_page_show_layer (page, 0);
  /* The overlap map names both modules and the value in its tooltip. */
  {
    CleaveChartView *overlap = CLEAVE_CHART_VIEW (cleave_modules_page_get_overlap_view (page));
    int ow = gtk_widget_get_width (GTK_WIDGET (overlap)), oh = gtk_widget_get_height (GTK_WIDGET (overlap));
    g_autofree char *found = NULL;

    for (int y = 0; y < oh && !found; y += 3)
      for (int x = 0; x < ow && !found; x += 3)
        found = cleave_chart_view_tooltip_at (overlap, x, y);
    g_assert_nonnull (found);
    g_test_message ("overlap tooltip: %s", found);
    g_assert_nonnull (strstr (found, " × "));
  }

  g_assert_true (cleave_modules_page_save (page, path, &error));
  g_assert_no_error (error);
  file = g_file_new_for_path (path);
  handler = g_signal_connect (page, "opened", G_CALLBACK (on_finished), &opened);
  cleave_modules_page_open_file (page, file);
  spin_until (&opened.done, 30);
  g_signal_handler_disconnect (page, handler);
  g_assert_true (opened.ok);
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, last + 2);
  g_assert_cmpuint (cleave_open_set_get_set (cleave_workspace_get_set (workspace, last + 1))->modules->len, ==,
                    set->modules->len);
  /* The page shows the set just opened; closing it leaves the workspace
   * and the page shows the one before. */
  g_assert_true (cleave_modules_page_get_set (page) ==
                 cleave_open_set_get_set (cleave_workspace_get_set (workspace, last + 1)));
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "modules.close", NULL));
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, last + 1);
  g_assert_true (cleave_modules_page_get_set (page) == set);
}

static void
evaluate_compose (CleaveComposePage *page)
{
  Wait evaluated = { 0 };
  gulong handler = g_signal_connect (page, "evaluated", G_CALLBACK (on_finished), &evaluated);

  g_assert_true (cleave_compose_page_evaluate (page));
  spin_until (&evaluated.done, 120);
  g_signal_handler_disconnect (page, handler);
  g_assert_true (evaluated.done);
  g_assert_true (evaluated.ok);
}

static void
check_export (CleaveComposePage *page, const char *name, CleaveScorerKind kind)
{
  g_autofree char *file = g_strdup_printf ("%s.safetensors", name);
  g_autofree char *onnx_file = g_strdup_printf ("%s.onnx", name);
  g_autofree char *path = build_path (file);
  g_autofree char *onnx = build_path (onnx_file);
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveScorer) scorer = NULL;

  g_assert_true (cleave_compose_page_export (page, path, &error));
  g_assert_no_error (error);
  scorer = cleave_scorer_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (cleave_scorer_kind (scorer), ==, kind);
  g_assert_true (cleave_compose_page_export (page, onnx, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_test (onnx, G_FILE_TEST_IS_REGULAR));
}

static guint
count_rows (GtkListBox *list)
{
  guint n = 0;

  for (GtkWidget *row = gtk_widget_get_first_child (GTK_WIDGET (list)); row; row = gtk_widget_get_next_sibling (row))
    n += GTK_IS_LIST_BOX_ROW (row);
  return n;
}

static gboolean open_in_window (CleaveWindow *window, const char *path);

/* Waits for the automatic re-evaluation that follows a change. */
static void
wait_reevaluated (CleaveComposePage *page)
{
  Wait evaluated = { 0 };
  gulong handler = g_signal_connect (page, "evaluated", G_CALLBACK (on_finished), &evaluated);

  spin_until (&evaluated.done, 120);
  g_signal_handler_disconnect (page, handler);
  g_assert_true (evaluated.done);
  g_assert_true (evaluated.ok);
  g_assert_false (cleave_compose_page_is_stale (page));
}

/* Composition by pointing and clicking: a click selects, a double-click
 * (row activation) adds, Undo takes it back; results go out of date on a
 * change and come back by themselves. */
static void
compose_flow (CleaveWindow *window, const char *images)
{
  CleaveComposePage *page = CLEAVE_COMPOSE_PAGE (cleave_window_get_page (window, "compose"));
  CleaveWorkspace *workspace = cleave_window_get_workspace (window);
  CleaveModulePalette *palette = cleave_compose_page_get_palette (page);
  guint set = cleave_workspace_n_sets (workspace) - 1;
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModuleRef) first = cleave_module_ref_new (cleave_workspace_get_set (workspace, set), 0);
  GValue *a = module_value (workspace, set, 0), *b = module_value (workspace, set, 1);
  int height;

  cleave_compose_page_set_dataset (page, images);
  cleave_window_show_page (window, "compose");
  cleave_compose_page_set_mode (page, "compose");
  spin (0.3);
  shoot (window, "compose", "compose-empty");

  /* One click selects and changes nothing. */
  g_assert_false (gtk_list_box_get_activate_on_single_click (cleave_module_palette_get_list (palette)));
  g_assert_true (cleave_module_palette_select (palette, first));
  spin (0.2);
  g_assert_true (cleave_module_palette_get_selected (palette) != NULL);
  g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 0);
  /* Double-click (or Enter) adds it; Undo (Ctrl+Z's action) takes it back. */
  cleave_module_palette_activate_selected (palette);
  g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 1);
  g_assert_cmpuint (count_rows (cleave_module_palette_get_list (palette)), >=, 10);
  g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "compose.undo", NULL));
  g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 0);
  g_assert_false (cleave_compose_page_undo (page));

  /* Drops. */
  g_assert_true (cleave_compose_page_drop_module (page, a, -1, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_compose_page_drop_module (page, b, -1, &error));
  g_assert_no_error (error);
  /* The same module twice is refused with a message, not a crash. */
  g_assert_false (cleave_compose_page_drop_module (page, a, -1, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 2);
  height = gtk_widget_get_height (GTK_WIDGET (window));
  evaluate_compose (page);
  g_assert_false (cleave_compose_page_is_stale (page));
  /* Results appearing do not make the window grow. */
  spin (0.3);
  g_assert_cmpint (gtk_widget_get_height (GTK_WIDGET (window)), ==, height);
  g_test_message ("composition: %s", cleave_compose_page_get_headline (page));

  /* A change marks the results out of date at once; they come back. */
  cleave_compose_page_remove_composed (page, 1);
  g_assert_true (cleave_compose_page_is_stale (page));
  wait_reevaluated (page);
  g_assert_true (cleave_compose_page_undo (page));
  g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 2);
  g_assert_true (cleave_compose_page_is_stale (page));
  wait_reevaluated (page);
  check_export (page, "test-app-composition", CLEAVE_SCORER_COMPOSITION);
  shoot (window, "compose", "compose");

  /* The exported composition reopens on the Compose page and evaluates
   * to the same accuracy. */
  {
    g_autofree char *headline = g_strdup (cleave_compose_page_get_headline (page));
    g_autofree char *file = build_path ("test-app-composition.safetensors");

    g_assert_false (open_in_window (window, file));
    g_assert_cmpstr (cleave_compose_page_get_mode (page), ==, "compose");
    g_assert_cmpuint (cleave_compose_page_n_composed (page), ==, 2);
    evaluate_compose (page);
    g_test_message ("reopened composition: %s (exported: %s)", cleave_compose_page_get_headline (page), headline);
    g_assert_cmpstr (cleave_compose_page_get_headline (page), ==, headline);
  }

  free_value (a);
  free_value (b);
}

static void
on_weak_signal (GObject *obj, gboolean ok, Wait *w)
{
  on_finished (obj, ok, w);
}

/* The weak-vs-patched comparison: the weak model's classes get their F1,
 * weak ones are marked and get a suggestion, which applies in one action. */
static void
patch_flow (CleaveWindow *window, const char *weak_path)
{
  CleaveComposePage *page = CLEAVE_COMPOSE_PAGE (cleave_window_get_page (window, "compose"));
  Wait loaded = { 0 }, evaluated = { 0 };
  gulong h1 = g_signal_connect (page, "weak-loaded", G_CALLBACK (on_weak_signal), &loaded);
  gulong h2 = g_signal_connect (page, "weak-evaluated", G_CALLBACK (on_weak_signal), &evaluated);
  guint n_weak = 0, n_suggested = 0, applied;
  g_autofree char *patched_headline = NULL;

  if (weak_path)
    {
      g_autoptr(GFile) file = g_file_new_for_path (weak_path);

      cleave_compose_page_open_weak_model (page, file);
      spin_until (&loaded.done, 60);
      g_assert_true (loaded.ok);
    }
  else
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (page), "compose.use-model", NULL));
  g_assert_cmpstr (cleave_compose_page_get_mode (page), ==, "patch");
  spin_until (&evaluated.done, 120);
  g_signal_handler_disconnect (page, h1);
  g_signal_handler_disconnect (page, h2);
  g_assert_true (evaluated.ok);
  for (int c = 0; c < 10; c++)
    {
      double f1 = cleave_compose_page_weak_f1 (page, c);

      g_assert_true (f1 >= 0 && f1 <= 1);
      n_weak += cleave_compose_page_is_weak_class (page, c);
      n_suggested += cleave_compose_page_suggestion (page, c) != NULL;
      g_test_message ("weak model class %d: F1 %.3f%s%s", c, f1, cleave_compose_page_is_weak_class (page, c) ? " weak" : "",
                      cleave_compose_page_suggestion (page, c) ? " (suggestion)" : "");
    }
  g_assert_cmpuint (n_weak, >, 0);
  g_assert_cmpuint (n_suggested, >, 0);
  shoot (window, "compose", "compose-weak");

  applied = cleave_compose_page_apply_suggestions (page);
  g_assert_cmpuint (applied, ==, n_suggested);
  g_assert_cmpuint (cleave_compose_page_n_patched (page), ==, n_suggested);
  evaluate_compose (page);
  g_test_message ("patched: %s", cleave_compose_page_get_headline (page));
  patched_headline = g_strdup (cleave_compose_page_get_headline (page));
  g_assert_nonnull (strstr (cleave_compose_page_get_headline (page), "→"));
  /* Try an image: the weak and patched models' answers side by side. */
  {
    Wait tried = { 0 };
    gulong handler = g_signal_connect (page, "tried", G_CALLBACK (on_finished), &tried);

    g_assert_true (cleave_compose_page_try_image (page, 3));
    spin_until (&tried.done, 60);
    g_signal_handler_disconnect (page, handler);
    g_assert_true (tried.ok);
    g_test_message ("try an image: %s", cleave_compose_page_get_try_text (page));
    g_assert_nonnull (strstr (cleave_compose_page_get_try_text (page), "the patched model"));
    {
      GtkWidget *picture = find_widget (GTK_WIDGET (page), GTK_TYPE_PICTURE, NULL);
      GtkWidget *scroller = gtk_widget_get_ancestor (picture, GTK_TYPE_SCROLLED_WINDOW);
      GtkAdjustment *adj = gtk_scrolled_window_get_vadjustment (GTK_SCROLLED_WINDOW (scroller));

      g_assert_nonnull (gtk_picture_get_paintable (GTK_PICTURE (picture)));
      gtk_adjustment_set_value (adj, gtk_adjustment_get_upper (adj));
      shoot (window, "compose", "compose-try");
    }
  }
  check_export (page, "test-app-patched", CLEAVE_SCORER_PATCHED);
  shoot (window, "compose", "compose-patch");
  cleave_compose_page_show_results (page);
  shoot (window, "compose", "compose-patch-results");

  /* Undo takes the whole set of suggestions back in one step. */
  g_assert_true (cleave_compose_page_undo (page));
  g_assert_cmpuint (cleave_compose_page_n_patched (page), ==, 0);
  g_assert_true (cleave_compose_page_is_stale (page));
  g_assert_true (cleave_compose_page_undo (page) == FALSE);
  wait_reevaluated (page);

  /* The exported patched model reopens with its weak model and patches,
   * and evaluates to the same numbers. */
  {
    g_autofree char *file = build_path ("test-app-patched.safetensors");

    g_assert_false (open_in_window (window, file));
    g_assert_cmpstr (cleave_compose_page_get_mode (page), ==, "patch");
    g_assert_cmpuint (cleave_compose_page_n_patched (page), ==, applied);
    evaluate_compose (page);
    g_test_message ("reopened patched model: %s (exported: %s)", cleave_compose_page_get_headline (page), patched_headline);
    g_assert_cmpstr (cleave_compose_page_get_headline (page), ==, patched_headline);
  }
}

/* The window's minimum width with @page shown. */
static int
min_width (CleaveWindow *window, const char *page)
{
  int min = 0, nat = 0;

  cleave_window_show_page (window, page);
  spin (0.2);
  gtk_widget_measure (GTK_WIDGET (window), GTK_ORIENTATION_HORIZONTAL, -1, &min, &nat, NULL, NULL);
  g_test_message ("page %s: minimum width %d px (natural %d)", page, min, nat);
  return min;
}

/* The layout adapts from 360 px up: every page fits, and screenshots at
 * 360, 800 and 1280 px, light and dark. */
static void
check_layouts (CleaveWindow *window)
{
  const char *const all[] = { "start", "model", "split", "modules", "compose" };
  const int widths[] = { 360, 800, 1280 };
  AdwStyleManager *style = adw_style_manager_get_default ();

  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    g_assert_cmpint (min_width (window, all[i]), <=, 360);
  for (int dark = 0; dark < 2; dark++)
    {
      adw_style_manager_set_color_scheme (style, dark ? ADW_COLOR_SCHEME_FORCE_DARK : ADW_COLOR_SCHEME_FORCE_LIGHT);
      for (guint w = 0; w < G_N_ELEMENTS (widths); w++)
        {
          gtk_window_set_default_size (GTK_WINDOW (window), widths[w], widths[w] < 800 ? 640 : 800);
          spin (0.5);
          /* The window's own width leaves out the frame of client-side decorations. */
          g_test_message ("layout: default width %d px, window %d px", widths[w],
                          gtk_widget_get_width (GTK_WIDGET (window)));
          g_assert_cmpint (ABS (gtk_widget_get_width (GTK_WIDGET (window)) - widths[w]), <=, 16);
          for (guint i = 0; i < G_N_ELEMENTS (all); i++)
            {
              g_autofree char *name = g_strdup_printf ("%s-%d-%s", all[i], widths[w], dark ? "dark" : "light");

              shoot (window, all[i], name);
            }
        }
    }
  adw_style_manager_set_color_scheme (style, ADW_COLOR_SCHEME_DEFAULT);
}

static AdwMessageDialog *
find_message_dialog (void)
{
  GListModel *toplevels = gtk_window_get_toplevels ();

  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr(GObject) w = g_list_model_get_item (toplevels, i);

      if (ADW_IS_MESSAGE_DIALOG (w) && gtk_widget_get_visible (GTK_WIDGET (w)))
        return ADW_MESSAGE_DIALOG (w);
    }
  return NULL;
}

static gboolean
open_in_window (CleaveWindow *window, const char *path)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  Wait loaded = { 0 };
  gulong handler = g_signal_connect (window, "load-finished", G_CALLBACK (on_finished), &loaded);

  cleave_window_open_file (window, file);
  spin_until (&loaded.done, 60);
  g_signal_handler_disconnect (window, handler);
  g_assert_true (loaded.done);
  spin (0.2);
  return loaded.ok;
}

/* The window opens files by their content: a model under another name, an
 * ONNX model without its extension, a module set (offered for the Modules
 * page), and refuses anything else with a dialog whose details are behind
 * an expander. */
static void
open_by_content (CleaveWindow *window, const char *model_path, const char *module_set_path)
{
  CleaveWorkspace *workspace = cleave_window_get_workspace (window);
  g_autofree char *renamed = build_path ("test-app-model.bin");
  g_autofree char *onnx = build_path ("test-app-model.graph");
  g_autofree char *garbage = build_path ("test-app-garbage.safetensors");
  g_autofree char *contents = NULL;
  g_autoptr(GError) error = NULL;
  gsize length = 0;
  guint sets = cleave_workspace_n_sets (workspace);
  AdwMessageDialog *dialog;
  CleaveModel *model;

  g_assert_true (g_file_get_contents (model_path, &contents, &length, &error));
  g_assert_true (g_file_set_contents (renamed, contents, (gssize) length, &error));
  g_assert_true (open_in_window (window, renamed));
  model = cleave_workspace_get_model (workspace);
  g_assert_cmpint (model->n_classes, ==, 10);
  g_assert_true (cleave_onnx_export_graph (model->graph, model->mean, model->std, onnx, &error));
  g_assert_no_error (error);
  g_assert_true (open_in_window (window, onnx));
  g_assert_cmpint (cleave_workspace_get_model (workspace)->n_classes, ==, 10);

  g_assert_false (open_in_window (window, module_set_path));
  dialog = find_message_dialog ();
  g_assert_nonnull (dialog);
  g_test_message ("module set opened as a model: %s", adw_message_dialog_get_body (dialog));
  /* What a click on the button does: respond, then close. */
  adw_message_dialog_response (dialog, "open");
  gtk_window_destroy (GTK_WINDOW (dialog));
  spin (0.3);
  g_assert_null (find_message_dialog ());
  g_assert_cmpuint (cleave_workspace_n_sets (workspace), ==, sets + 1);
  g_assert_true (cleave_workspace_close_set (workspace, cleave_workspace_get_set (workspace, sets)));

  /* Weights only: a dialog asks for the architecture. */
  {
    g_autofree char *dir = g_path_get_dirname (model_path);
    g_autofree char *weak = g_build_filename (dir, "weak.safetensors", NULL);
    g_autofree char *weights = build_path ("test-app-weights.safetensors");
    g_autoptr(CleaveSafetensors) st = g_file_test (weak, G_FILE_TEST_IS_REGULAR) ? cleave_safetensors_load (weak, &error) : NULL;
    GtkDropDown *presets;
    Wait loaded = { 0 };
    gulong handler;
    guint weak_index = G_MAXUINT;

    if (st)
      {
        g_hash_table_remove_all (st->metadata);
        g_assert_true (cleave_safetensors_save (st, weights, &error));
        g_assert_false (open_in_window (window, weights));
        dialog = find_message_dialog ();
        g_assert_nonnull (dialog);
        presets = GTK_DROP_DOWN (find_widget (adw_message_dialog_get_extra_child (dialog), GTK_TYPE_DROP_DOWN, NULL));
        for (guint i = 0; cleave_arch_presets ()[i]; i++)
          if (g_strcmp0 (cleave_arch_presets ()[i], "weak") == 0)
            weak_index = i;
        g_assert_cmpuint (weak_index, !=, G_MAXUINT);
        gtk_drop_down_set_selected (presets, weak_index);
        handler = g_signal_connect (window, "load-finished", G_CALLBACK (on_finished), &loaded);
        adw_message_dialog_response (dialog, "open");
        gtk_window_destroy (GTK_WINDOW (dialog));
        spin_until (&loaded.done, 60);
        g_signal_handler_disconnect (window, handler);
        g_assert_true (loaded.ok);
        g_assert_cmpint (cleave_workspace_get_model (workspace)->n_classes, ==, 10);
      }
  }

  g_assert_true (g_file_set_contents (garbage, "not a model at all", -1, &error));
  g_assert_false (open_in_window (window, garbage));
  dialog = find_message_dialog ();
  g_assert_nonnull (dialog);
  g_assert_true (GTK_IS_EXPANDER (adw_message_dialog_get_extra_child (dialog)));
  g_test_message ("garbage: %s", adw_message_dialog_get_body (dialog));
  /* What a click on the button does: respond, then close. */
  adw_message_dialog_response (dialog, "close");
  gtk_window_destroy (GTK_WINDOW (dialog));
  spin (0.3);
  g_assert_null (find_message_dialog ());

  g_assert_true (open_in_window (window, model_path));
}

static void
test_pages (void)
{
  g_autoptr(CleaveApplication) app = cleave_application_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *demo = cleave_application_find_demo_model ();
  g_autofree char *model_path = NULL;
  g_autofree char *images = write_tiny_image_folder ();
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
      model_path = write_fallback_model (images);
    }
  file = g_file_new_for_path (model_path);
  handler = g_signal_connect (window, "load-finished", G_CALLBACK (on_finished), &loaded);
  cleave_window_open_file (window, file);
  spin_until (&loaded.done, 60);
  g_signal_handler_disconnect (window, handler);
  g_assert_true (loaded.done);
  g_assert_true (loaded.ok);
  g_assert_nonnull (cleave_workspace_get_model (cleave_window_get_workspace (window)));

  {
    CleaveModelPage *model_page = CLEAVE_MODEL_PAGE (cleave_window_get_page (window, "model"));
    GSettings *settings = cleave_application_get_settings (app);
    GtkWidget *evaluate_button;

    g_assert_nonnull (settings);
    g_settings_set_string (settings, "device", "cpu");
    cleave_model_page_set_dataset (model_page, images);
    handler = g_signal_connect (model_page, "evaluated", G_CALLBACK (on_finished), &evaluated);
    evaluate_button = find_widget (GTK_WIDGET (model_page), GTK_TYPE_BUTTON, "model.evaluate");
    spin (0.2);
    g_assert_true (gtk_widget_grab_focus (evaluate_button));
    g_assert_true (cleave_model_page_evaluate (model_page));
    /* The focus stays on the page while the button is locked. */
    g_assert_true (gtk_widget_is_ancestor (focus_of (window), GTK_WIDGET (model_page)));
    /* The window must keep drawing while the worker runs. */
    spin (0.2);
    g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (window)));
    spin_until (&evaluated.done, 240);
    g_signal_handler_disconnect (model_page, handler);
    g_assert_true (evaluated.done);
    g_assert_true (evaluated.ok);
    g_assert_true (focus_of (window) == evaluate_button);

    run_splits (window, images);
    check_modules_page (window);
    {
      g_autofree char *sets = build_path ("test-app-modules.safetensors");

      open_by_content (window, model_path, sets);
    }
    compose_flow (window, images);
    {
      g_autofree char *dir = demo ? g_path_get_dirname (demo) : NULL;
      g_autofree char *weak = dir ? g_build_filename (dir, "weak.safetensors", NULL) : NULL;

      patch_flow (window, weak && g_file_test (weak, G_FILE_TEST_IS_REGULAR) ? weak : NULL);
    }
  }

  for (guint i = 0; i < G_N_ELEMENTS (pages); i++)
    shoot (window, pages[i], pages[i]);
  check_layouts (window);

  /* Quit while the Compose page is busy (an evaluation and the weak
   * model's own running): nothing may touch the disposed page (criticals
   * are fatal here). */
  {
    CleaveComposePage *compose = CLEAVE_COMPOSE_PAGE (cleave_window_get_page (window, "compose"));

    cleave_window_show_page (window, "compose");
    g_assert_true (gtk_widget_activate_action (GTK_WIDGET (compose), "compose.use-model", NULL));
    g_assert_true (cleave_compose_page_evaluate (compose));
  }
  gtk_window_destroy (GTK_WINDOW (window));
  spin (2.0);
  g_application_quit (G_APPLICATION (app));
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
