/* test-chart.c: the Cairo charts render real pictures to PNG and SVG, and the
 * mask matrix hit-test agrees with what is drawn. Needs no display. */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "cleave-chart.h"

static const char *const classes[] = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot", NULL
};

static char *
out_path (const char *name)
{
  const char *dir = g_getenv ("G_TEST_BUILDDIR");

  return g_build_filename (dir ? dir : g_get_tmp_dir (), name, NULL);
}

/* Counts pixels that differ clearly from the background and the distinct
 * saturated colours among them (bars and lines are coloured, text is not). */
static void
analyse_png (const char *path, int want_w, int want_h, int *n_ink, int *n_hues)
{
  cairo_surface_t *s = cairo_image_surface_create_from_png (path);
  GHashTable *hues = g_hash_table_new (NULL, NULL);
  int w, h, stride;
  const guint8 *data;

  g_assert_cmpint (cairo_surface_status (s), ==, CAIRO_STATUS_SUCCESS);
  w = cairo_image_surface_get_width (s);
  h = cairo_image_surface_get_height (s);
  g_assert_cmpint (w, ==, want_w);
  g_assert_cmpint (h, ==, want_h);
  stride = cairo_image_surface_get_stride (s);
  data = cairo_image_surface_get_data (s);

  *n_ink = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guint32 px = *(const guint32 *) (data + y * stride + x * 4);
        int r = (px >> 16) & 0xff, g = (px >> 8) & 0xff, b = px & 0xff;
        int mx = MAX (r, MAX (g, b)), mn = MIN (r, MIN (g, b));

        if (mx < 235)
          (*n_ink)++;
        if (mx - mn > 80)
          g_hash_table_add (hues, GUINT_TO_POINTER ((r >> 5) << 6 | (g >> 5) << 3 | (b >> 5)));
      }
  *n_hues = g_hash_table_size (hues);
  g_hash_table_unref (hues);
  cairo_surface_destroy (s);
}

static void
save_both (CleaveChartKind kind, gconstpointer chart, const char *stem, int *n_ink, int *n_hues)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *png_name = g_strconcat (stem, ".png", NULL);
  g_autofree char *svg_name = g_strconcat (stem, ".svg", NULL);
  g_autofree char *png = out_path (png_name);
  g_autofree char *svg = out_path (svg_name);
  g_autofree char *svg_text = NULL;

  g_assert_true (cleave_chart_save (kind, chart, NULL, 640, 400,
                                    cleave_chart_format_for_path (png), png, &error));
  g_assert_no_error (error);
  analyse_png (png, 640, 400, n_ink, n_hues);

  g_assert_true (cleave_chart_save (kind, chart, NULL, 640, 400,
                                    cleave_chart_format_for_path (svg), svg, &error));
  g_assert_no_error (error);
  g_assert_true (g_file_get_contents (svg, &svg_text, NULL, &error));
  g_assert_no_error (error);
  g_assert_nonnull (strstr (svg_text, "<svg"));
  g_assert_cmpuint (strlen (svg_text), >, 1000);
}

static void
test_line (void)
{
  double loss[12], acc[12], krr[12];
  CleaveChartSeries series[3] = {
    { "loss", loss, 12 }, { "accuracy", acc, 12 }, { "mean KRR", krr, 10 },
  };
  CleaveLineChart chart = { "GradSplitter", "epoch", NULL, 0, 0, series, 3 };
  int ink, hues;

  for (int i = 0; i < 12; i++)
    {
      loss[i] = 2.0 * exp (-i / 4.0);
      acc[i] = 0.5 + 0.4 * (1 - exp (-i / 3.0));
      krr[i] = 1.0 - 0.05 * i;
    }
  krr[4] = NAN;   /* a gap must not break drawing */
  save_both (CLEAVE_CHART_LINE, &chart, "chart-line", &ink, &hues);
  g_assert_cmpint (ink, >, 2000);
  g_assert_cmpint (hues, >=, 3);
}

static void
test_line_empty (void)
{
  CleaveLineChart chart = { "Nothing yet", "epoch", "loss", 0, 0, NULL, 0 };
  int ink, hues;

  /* The empty chart a live view shows before its first epoch: axes only. */
  save_both (CLEAVE_CHART_LINE, &chart, "chart-line-empty", &ink, &hues);
  g_assert_cmpint (ink, >, 500);
}

static void
test_bars (void)
{
  const char *const names[] = { "precision", "recall", "F1", NULL };
  double values[30];
  CleaveBarChart chart = { "Per-class metrics", NULL, classes, 10, names, 3, values, 1.0 };
  int ink, hues;

  for (int i = 0; i < 30; i++)
    values[i] = 0.6 + 0.04 * (i % 10);
  save_both (CLEAVE_CHART_BARS, &chart, "chart-bars", &ink, &hues);
  g_assert_cmpint (ink, >, 20000);
  g_assert_cmpint (hues, >=, 3);
}

static void
test_heat_map (void)
{
  double conf[100];
  CleaveHeatMap chart = { "Confusion matrix", "true", "predicted", classes, 10, classes, 10,
                          conf, TRUE, 0, "%.0f" };
  cairo_surface_t *s;
  g_autofree char *path = out_path ("chart-heat.png");
  int ink, hues;

  for (int r = 0; r < 10; r++)
    for (int c = 0; c < 10; c++)
      conf[r * 10 + c] = r == c ? 900 : (r + c) % 7;
  save_both (CLEAVE_CHART_HEAT_MAP, &chart, "chart-heat", &ink, &hues);
  g_assert_cmpint (ink, >, 8000);

  /* The diagonal is the hottest colour: find many strongly blue pixels. */
  s = cairo_image_surface_create_from_png (path);
  {
    const guint8 *data = cairo_image_surface_get_data (s);
    int stride = cairo_image_surface_get_stride (s), blue = 0;

    for (int y = 0; y < 400; y++)
      for (int x = 0; x < 640; x++)
        {
          guint32 px = *(const guint32 *) (data + y * stride + x * 4);

          if ((px & 0xff) > 180 && ((px >> 16) & 0xff) < 80)
            blue++;
        }
    g_assert_cmpint (blue, >, 10 * 200);
  }
  cairo_surface_destroy (s);
}

static void
test_mask_matrix (void)
{
  enum { M = 10, K = 64 };
  guint8 kept[M * K];
  int cls[M];
  CleaveMaskMatrix chart = { "features.3", M, K, kept, cls, classes };
  int ink, hues, m = -1, k = -1;

  for (int i = 0; i < M; i++)
    {
      cls[i] = i;
      for (int j = 0; j < K; j++)
        kept[i * K + j] = (i * 7 + j * 3) % 5 != 0;
    }
  save_both (CLEAVE_CHART_MASK_MATRIX, &chart, "chart-mask", &ink, &hues);
  g_assert_cmpint (ink, >, 20000);
  g_assert_cmpint (hues, >=, 8);   /* one colour per class */

  /* Far right, bottom row of the grid → last kernel of some module. */
  g_assert_true (cleave_chart_mask_matrix_hit (&chart, NULL, 640, 400, 630, 100, &m, &k));
  g_assert_cmpint (k, ==, K - 1);
  g_assert_cmpint (m, >=, 0);
  g_assert_cmpint (m, <, M);
  /* The label column and the title are not cells. */
  g_assert_false (cleave_chart_mask_matrix_hit (&chart, NULL, 640, 400, 2, 100, &m, &k));
  g_assert_false (cleave_chart_mask_matrix_hit (&chart, NULL, 640, 400, 320, 2, &m, &k));
}

static void
test_mask_hit_matches_pixels (void)
{
  enum { M = 3, K = 8 };
  /* Module 1 keeps only kernel 5: the pixel the hit-test maps to (1, 5)
   * must be coloured, its neighbour (1, 4) grey. */
  guint8 kept[M * K] = { 0 };
  CleaveMaskMatrix chart = { NULL, M, K, kept, NULL, NULL };
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, 400, 200);
  cairo_t *cr = cairo_create (s);
  const guint8 *data;
  int stride, found_kept = 0, found_removed = 0;

  kept[1 * K + 5] = 1;
  cleave_chart_draw_mask_matrix (cr, 400, 200, &chart, NULL);
  cairo_destroy (cr);
  cairo_surface_flush (s);
  data = cairo_image_surface_get_data (s);
  stride = cairo_image_surface_get_stride (s);

  for (int y = 0; y < 200; y += 2)
    for (int x = 0; x < 400; x += 2)
      {
        int m, k;
        guint32 px = *(const guint32 *) (data + y * stride + x * 4);
        int r = (px >> 16) & 0xff, g = (px >> 8) & 0xff, b = px & 0xff;
        gboolean coloured = MAX (r, MAX (g, b)) - MIN (r, MIN (g, b)) > 80;

        if (!cleave_chart_mask_matrix_hit (&chart, NULL, 400, 200, x, y, &m, &k))
          continue;
        if (m == 1 && k == 5 && coloured)
          found_kept++;
        if (m == 1 && k == 4)
          {
            g_assert_false (coloured);
            found_removed++;
          }
      }
  cairo_surface_destroy (s);
  g_assert_cmpint (found_kept, >, 20);
  g_assert_cmpint (found_removed, >, 20);
}

static void
test_dup_free (void)
{
  double v[3] = { 1, 2, 3 };
  CleaveChartSeries series[1] = { { "loss", v, 3 } };
  CleaveLineChart chart = { "t", "x", "y", 0, 0, series, 1 };
  CleaveLineChart *copy = cleave_chart_dup (CLEAVE_CHART_LINE, &chart);

  v[0] = 99;
  g_assert_cmpfloat (copy->series[0].values[0], ==, 1.0);
  g_assert_cmpstr (copy->series[0].name, ==, "loss");
  g_assert_true (copy->title != chart.title);
  cleave_chart_free (CLEAVE_CHART_LINE, copy);
}

static void
test_save_error (void)
{
  double v[1] = { 1 };
  CleaveChartSeries series[1] = { { "loss", v, 1 } };
  CleaveLineChart chart = { "t", NULL, NULL, 0, 0, series, 1 };
  g_autoptr(GError) error = NULL;

  g_assert_false (cleave_chart_save (CLEAVE_CHART_LINE, &chart, NULL, 100, 100, CLEAVE_CHART_FORMAT_PNG,
                                     "/nonexistent-dir/chart.png", &error));
  g_assert_nonnull (error);
  g_assert_false (g_file_test ("/nonexistent-dir/chart.png", G_FILE_TEST_EXISTS));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/chart/line/renders", test_line);
  g_test_add_func ("/chart/line/empty", test_line_empty);
  g_test_add_func ("/chart/bars/renders", test_bars);
  g_test_add_func ("/chart/heat-map/renders", test_heat_map);
  g_test_add_func ("/chart/mask-matrix/renders", test_mask_matrix);
  g_test_add_func ("/chart/mask-matrix/hit-matches-pixels", test_mask_hit_matches_pixels);
  g_test_add_func ("/chart/dup-free", test_dup_free);
  g_test_add_func ("/chart/save/error", test_save_error);
  return g_test_run ();
}
