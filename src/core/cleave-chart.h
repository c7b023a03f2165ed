/* cleave-chart.h: Cairo drawings of Cleave's charts, shared by the GUI's
 * chart widgets and the CLI's --report. No GTK here.
 *
 * Each chart is described by a plain struct whose pointers are borrowed
 * (fill one on the stack, draw it, done). Holders that keep a chart around
 * (a widget) take a deep copy with cleave_chart_dup() and release it with
 * cleave_chart_free(). Every draw function paints into a w × h box whose
 * top-left is the cairo_t's current origin. */
#pragma once

#include <glib.h>
#include <cairo.h>

G_BEGIN_DECLS

typedef enum {
  CLEAVE_CHART_LINE,         /* CleaveLineChart */
  CLEAVE_CHART_BARS,         /* CleaveBarChart */
  CLEAVE_CHART_HEAT_MAP,     /* CleaveHeatMap */
  CLEAVE_CHART_MASK_MATRIX,  /* CleaveMaskMatrix */
} CleaveChartKind;

typedef enum {
  CLEAVE_CHART_FORMAT_PNG,
  CLEAVE_CHART_FORMAT_SVG,
} CleaveChartFormat;

/* Colours are RGBA in 0..1. */
typedef struct {
  double fg[4];          /* text and axes */
  double bg[4];          /* background, painted only when fill_background */
  double grid[4];        /* grid lines, empty cells */
  double font_size;      /* px; 0 → 12 */
  gboolean fill_background;
} CleaveChartStyle;

/* One line. @values[i] is the value at x = i + 1 (epoch/generation numbers
 * start at 1); NAN leaves a gap. */
typedef struct {
  const char *name;
  const double *values;
  int n;
} CleaveChartSeries;

typedef struct {
  const char *title;             /* may be NULL */
  const char *x_label;           /* may be NULL */
  const char *y_label;           /* may be NULL */
  double y_min, y_max;           /* y_min == y_max → fitted to the data */
  const CleaveChartSeries *series;
  int n_series;
} CleaveLineChart;

/* Grouped bars: one group per category along x, one bar per series inside a
 * group. values[category * n_series + series]. */
typedef struct {
  const char *title;
  const char *y_label;
  const char *const *categories;
  int n_categories;
  const char *const *series_names;
  int n_series;
  const double *values;
  double y_max;                  /* ≤ 0 → fitted to the data */
} CleaveBarChart;

/* A labelled matrix coloured by value, values[row * n_cols + col].
 * Confusion matrices use row_normalize (colour = share of the true class);
 * overlap matrices pass values already in 0..1 with v_max = 1. */
typedef struct {
  const char *title;
  const char *row_title;         /* e.g. "true", may be NULL */
  const char *col_title;         /* e.g. "predicted", may be NULL */
  const char *const *row_labels;
  int n_rows;
  const char *const *col_labels;
  int n_cols;
  const double *values;
  gboolean row_normalize;
  double v_max;                  /* ≤ 0 → the largest value */
  const char *value_format;      /* printf format for one double, NULL → no numbers */
} CleaveHeatMap;

/* One conv layer's kernel masks: rows = modules, columns = kernels.
 * kept[module * n_kernels + kernel] != 0 when the module keeps that kernel. */
typedef struct {
  const char *title;             /* layer name */
  int n_modules;
  int n_kernels;
  const guint8 *kept;
  const int *module_class;       /* class index per module (colour), NULL → row index */
  const char *const *module_labels; /* may be NULL */
} CleaveMaskMatrix;

/* The default light style, and a dark one for a dark GTK theme. */
void cleave_chart_style_init_light (CleaveChartStyle *style);
void cleave_chart_style_init_dark  (CleaveChartStyle *style);

/* The colour of class/series @index (a fixed palette, cycled). */
void cleave_chart_palette_color (int index, double rgb[3]);

void cleave_chart_draw_line        (cairo_t *cr, double width, double height, const CleaveLineChart *chart, const CleaveChartStyle *style);
void cleave_chart_draw_bars        (cairo_t *cr, double width, double height, const CleaveBarChart *chart, const CleaveChartStyle *style);
void cleave_chart_draw_heat_map    (cairo_t *cr, double width, double height, const CleaveHeatMap *chart, const CleaveChartStyle *style);
void cleave_chart_draw_mask_matrix (cairo_t *cr, double width, double height, const CleaveMaskMatrix *chart, const CleaveChartStyle *style);

/* Dispatches on @kind; @style NULL → light. */
void cleave_chart_draw (CleaveChartKind kind, gconstpointer chart, cairo_t *cr,
                        double width, double height, const CleaveChartStyle *style);

/* Maps a point of a mask matrix drawn at width × height with @style (NULL →
 * light) to the cell under it. Returns FALSE outside the cells. */
gboolean cleave_chart_mask_matrix_hit (const CleaveMaskMatrix *chart, const CleaveChartStyle *style,
                                       double width, double height, double x, double y,
                                       int *module, int *kernel);

/* The cell of a heat map drawn at width × height under (x, y). */
gboolean cleave_chart_heat_map_hit (const CleaveHeatMap *chart, const CleaveChartStyle *style,
                                    double width, double height, double x, double y, int *row, int *col);

/* Renders to a PNG or SVG file, atomically (temp file in the same folder +
 * rename). @style NULL → light with a filled background. Errors are in
 * CLEAVE_ERROR. */
gboolean cleave_chart_save (CleaveChartKind kind, gconstpointer chart, const CleaveChartStyle *style,
                            int width, int height, CleaveChartFormat format, const char *path,
                            GError **error);
/* Format from the file name: ".svg" → SVG, anything else PNG. */
CleaveChartFormat cleave_chart_format_for_path (const char *path);

/* Deep copies for holders; free with cleave_chart_free (same kind). */
gpointer cleave_chart_dup  (CleaveChartKind kind, gconstpointer chart);
void     cleave_chart_free (CleaveChartKind kind, gpointer chart);

G_END_DECLS
