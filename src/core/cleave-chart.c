/* cleave-chart.c: Cairo drawings of line, bar, heat-map and mask charts.
 *
 * Text uses Cairo's toy font API on purpose: core must not pull in Pango,
 * and chart labels are short ASCII-ish strings where shaping does not matter. */
#include "cleave-chart.h"
#include "cleave-error.h"
#include "cleave-file.h"

#include <cairo-svg.h>
#include <math.h>
#include <string.h>

#define PAD 8.0

/* Distinct hues that stay readable on both light and dark backgrounds
 * (mostly GNOME HIG palette shades). */
static const guint32 palette[] = {
  0x1c71d8, 0xe66100, 0x26a269, 0xc01c28, 0x813d9c,
  0x865e3c, 0xd4338f, 0x77767b, 0xa8a200, 0x1a9fb5,
};

void
cleave_chart_palette_color (int index, double rgb[3])
{
  guint32 c = palette[(guint) ABS (index) % G_N_ELEMENTS (palette)];

  rgb[0] = ((c >> 16) & 0xff) / 255.0;
  rgb[1] = ((c >> 8) & 0xff) / 255.0;
  rgb[2] = (c & 0xff) / 255.0;
}

static void
set_rgba (double dst[4], double r, double g, double b, double a)
{
  dst[0] = r; dst[1] = g; dst[2] = b; dst[3] = a;
}

void
cleave_chart_style_init_light (CleaveChartStyle *style)
{
  memset (style, 0, sizeof *style);
  set_rgba (style->fg, 0.14, 0.14, 0.16, 1.0);
  set_rgba (style->bg, 1.0, 1.0, 1.0, 1.0);
  set_rgba (style->grid, 0.0, 0.0, 0.0, 0.10);
  style->font_size = 12.0;
  style->fill_background = TRUE;
}

void
cleave_chart_style_init_dark (CleaveChartStyle *style)
{
  memset (style, 0, sizeof *style);
  set_rgba (style->fg, 0.93, 0.93, 0.94, 1.0);
  set_rgba (style->bg, 0.14, 0.14, 0.15, 1.0);
  set_rgba (style->grid, 1.0, 1.0, 1.0, 0.14);
  style->font_size = 12.0;
  style->fill_background = TRUE;
}

static const CleaveChartStyle *
style_or_default (const CleaveChartStyle *style, CleaveChartStyle *storage)
{
  if (style)
    return style;
  cleave_chart_style_init_light (storage);
  return storage;
}

static double
font_size_of (const CleaveChartStyle *style)
{
  return style->font_size > 0 ? style->font_size : 12.0;
}

static void
source_rgba (cairo_t *cr, const double c[4])
{
  cairo_set_source_rgba (cr, c[0], c[1], c[2], c[3]);
}

static void
begin (cairo_t *cr, double width, double height, const CleaveChartStyle *style)
{
  cairo_save (cr);
  cairo_rectangle (cr, 0, 0, width, height);
  cairo_clip (cr);
  if (style->fill_background)
    {
      source_rgba (cr, style->bg);
      cairo_paint (cr);
    }
  cairo_select_font_face (cr, "Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (cr, font_size_of (style));
  cairo_set_line_width (cr, 1.0);
}

static double
text_width (cairo_t *cr, const char *s)
{
  cairo_text_extents_t ext;

  if (!s || !*s)
    return 0;
  cairo_text_extents (cr, s, &ext);
  return ext.x_advance;
}

/* Draws @s with its anchor at (x, y): xalign 0 = left, 0.5 = centre, 1 =
 * right; y is the vertical centre of the text line. */
static void
draw_text (cairo_t *cr, const char *s, double x, double y, double xalign)
{
  cairo_font_extents_t fe;

  if (!s || !*s)
    return;
  cairo_font_extents (cr, &fe);
  cairo_move_to (cr, x - xalign * text_width (cr, s), y + (fe.ascent - fe.descent) / 2.0);
  cairo_show_text (cr, s);
}

/* Same, but shortened with "…" to fit @max_width. */
static void
draw_text_fit (cairo_t *cr, const char *s, double x, double y, double xalign, double max_width)
{
  g_autofree char *buf = NULL;
  glong len;

  if (!s || !*s)
    return;
  if (text_width (cr, s) <= max_width)
    {
      draw_text (cr, s, x, y, xalign);
      return;
    }
  len = g_utf8_strlen (s, -1);
  while (len > 1)
    {
      g_autofree char *head = NULL;

      len--;
      head = g_utf8_substring (s, 0, len);
      g_free (buf);
      buf = g_strconcat (head, "…", NULL);
      if (text_width (cr, buf) <= max_width)
        break;
    }
  draw_text (cr, buf, x, y, xalign);
}

static double
draw_title (cairo_t *cr, const char *title, double width, const CleaveChartStyle *style)
{
  double fs = font_size_of (style);

  if (!title || !*title)
    return PAD;
  cairo_save (cr);
  cairo_select_font_face (cr, "Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
  cairo_set_font_size (cr, fs * 1.15);
  source_rgba (cr, style->fg);
  draw_text_fit (cr, title, width / 2.0, PAD + fs * 0.7, 0.5, width - 2 * PAD);
  cairo_restore (cr);
  return PAD + fs * 1.6;
}

/* A "nice" tick step (1, 2 or 5 × 10^k) giving about @target ticks. */
static double
nice_step (double range, int target)
{
  double raw, mag, f;

  if (!(range > 0))
    return 1.0;
  raw = range / MAX (target, 1);
  mag = pow (10.0, floor (log10 (raw)));
  f = raw / mag;
  if (f <= 1.0)
    return mag;
  if (f <= 2.0)
    return 2 * mag;
  if (f <= 5.0)
    return 5 * mag;
  return 10 * mag;
}

static void
format_tick (char *buf, gsize len, double v, double step)
{
  int decimals = step >= 1.0 ? 0 : (int) ceil (-log10 (step) - 1e-9);

  if (fabs (v) < step * 1e-6)
    v = 0.0;
  g_snprintf (buf, len, "%.*f", CLAMP (decimals, 0, 6), v);
}

typedef struct {
  double x0, y0, x1, y1;     /* plot rectangle */
  double vmin, vmax, step;
} YAxis;

/* Horizontal grid lines and y tick labels, shrinking the plot's left edge to
 * fit the labels. */
static void
draw_y_axis (cairo_t *cr, YAxis *ax, const char *y_label, const CleaveChartStyle *style)
{
  double fs = font_size_of (style);
  double label_w = 0;
  char buf[64];

  ax->step = nice_step (ax->vmax - ax->vmin, 5);
  for (double v = ceil (ax->vmin / ax->step - 1e-9) * ax->step; v <= ax->vmax + ax->step * 1e-6; v += ax->step)
    {
      format_tick (buf, sizeof buf, v, ax->step);
      label_w = MAX (label_w, text_width (cr, buf));
    }
  if (y_label && *y_label)
    ax->x0 += fs * 1.4;
  ax->x0 += label_w + 6;

  if (y_label && *y_label)
    {
      cairo_save (cr);
      source_rgba (cr, style->fg);
      cairo_translate (cr, PAD + fs * 0.5, (ax->y0 + ax->y1) / 2.0);
      cairo_rotate (cr, -G_PI / 2);
      draw_text_fit (cr, y_label, 0, 0, 0.5, ax->y1 - ax->y0);
      cairo_restore (cr);
    }

  for (double v = ceil (ax->vmin / ax->step - 1e-9) * ax->step; v <= ax->vmax + ax->step * 1e-6; v += ax->step)
    {
      double y = ax->y1 - (v - ax->vmin) / (ax->vmax - ax->vmin) * (ax->y1 - ax->y0);

      source_rgba (cr, style->grid);
      cairo_move_to (cr, ax->x0, round (y) + 0.5);
      cairo_line_to (cr, ax->x1, round (y) + 0.5);
      cairo_stroke (cr);
      format_tick (buf, sizeof buf, v, ax->step);
      source_rgba (cr, style->fg);
      draw_text (cr, buf, ax->x0 - 4, y, 1.0);
    }

  source_rgba (cr, style->fg);
  cairo_move_to (cr, round (ax->x0) + 0.5, ax->y0);
  cairo_line_to (cr, round (ax->x0) + 0.5, ax->y1);
  cairo_line_to (cr, ax->x1, ax->y1);
  cairo_stroke (cr);
}

static double
y_to_px (const YAxis *ax, double v)
{
  return ax->y1 - (v - ax->vmin) / (ax->vmax - ax->vmin) * (ax->y1 - ax->y0);
}

/* Legend as a row of swatches under the title; returns its height. */
static double
draw_legend_row (cairo_t *cr, double x, double y, double width, const char *const *names, int n,
                 const CleaveChartStyle *style)
{
  double fs = font_size_of (style);
  double cx = x, cy = y;

  if (n <= 1)
    return 0;
  for (int i = 0; i < n; i++)
    {
      const char *name = names[i] ? names[i] : "";
      double item_w = fs + 4 + text_width (cr, name) + 14;
      double rgb[3];

      if (cx > x && cx + item_w > x + width)
        {
          cx = x;
          cy += fs * 1.5;
        }
      cleave_chart_palette_color (i, rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle (cr, cx, cy + fs * 0.15, fs * 0.9, fs * 0.9);
      cairo_fill (cr);
      source_rgba (cr, style->fg);
      draw_text (cr, name, cx + fs + 4, cy + fs * 0.6, 0.0);
      cx += item_w;
    }
  return cy - y + fs * 1.6;
}

/* ---- line chart ------------------------------------------------------- */

void
cleave_chart_draw_line (cairo_t *cr, double width, double height, const CleaveLineChart *chart,
                        const CleaveChartStyle *style_in)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  double fs = font_size_of (style);
  double vmin = INFINITY, vmax = -INFINITY;
  int n_x = 0;
  g_autofree const char **names = NULL;
  double top;
  YAxis ax;
  double x_step;
  char buf[32];

  g_return_if_fail (chart != NULL);
  begin (cr, width, height, style);
  top = draw_title (cr, chart->title, width, style);

  names = g_new0 (const char *, MAX (chart->n_series, 1));
  for (int s = 0; s < chart->n_series; s++)
    {
      const CleaveChartSeries *se = &chart->series[s];

      names[s] = se->name;
      n_x = MAX (n_x, se->n);
      for (int i = 0; i < se->n; i++)
        if (isfinite (se->values[i]))
          {
            vmin = MIN (vmin, se->values[i]);
            vmax = MAX (vmax, se->values[i]);
          }
    }
  top += draw_legend_row (cr, PAD, top, width - 2 * PAD, names, chart->n_series, style);

  if (chart->y_min != chart->y_max)
    {
      vmin = chart->y_min;
      vmax = chart->y_max;
    }
  else if (!isfinite (vmin))
    {
      vmin = 0;
      vmax = 1;
    }
  else
    {
      double margin = (vmax - vmin) * 0.05;

      if (margin == 0)
        margin = fabs (vmax) > 0 ? fabs (vmax) * 0.1 : 1.0;
      /* Metrics that are never negative read better from a zero baseline. */
      vmin = vmin >= 0 && vmin - margin < 0 ? 0 : vmin - margin;
      vmax += margin;
    }

  ax.x0 = PAD;
  ax.x1 = width - PAD - fs;
  ax.y0 = top + fs * 0.5;
  ax.y1 = height - PAD - fs * 1.5 - (chart->x_label ? fs * 1.5 : 0);
  ax.vmin = vmin;
  ax.vmax = vmax;
  if (ax.y1 - ax.y0 < fs || ax.x1 - ax.x0 < fs * 4)
    goto out;
  draw_y_axis (cr, &ax, chart->y_label, style);

  /* x ticks at integer positions 1..n_x (at least 1..2 so an empty or
   * single-point chart still has a scale). */
  n_x = MAX (n_x, 2);
  x_step = (ax.x1 - ax.x0) / (n_x - 1);
  {
    int every = (int) ceil (nice_step (n_x - 1, MAX (1, (int) ((ax.x1 - ax.x0) / (fs * 4)))));

    source_rgba (cr, style->fg);
    for (int i = 1; i <= n_x; i += MAX (every, 1))
      {
        double x = ax.x0 + (i - 1) * x_step;

        g_snprintf (buf, sizeof buf, "%d", i);
        draw_text (cr, buf, x, ax.y1 + fs * 0.9, 0.5);
      }
  }
  if (chart->x_label)
    draw_text (cr, chart->x_label, (ax.x0 + ax.x1) / 2, height - PAD - fs * 0.6, 0.5);

  cairo_save (cr);
  cairo_rectangle (cr, ax.x0, ax.y0 - 2, ax.x1 - ax.x0 + 2, ax.y1 - ax.y0 + 4);
  cairo_clip (cr);
  cairo_set_line_width (cr, 2.0);
  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  for (int s = 0; s < chart->n_series; s++)
    {
      const CleaveChartSeries *se = &chart->series[s];
      gboolean pen_down = FALSE;
      double rgb[3];

      cleave_chart_palette_color (s, rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      for (int i = 0; i < se->n; i++)
        {
          double x = ax.x0 + i * x_step, y;

          if (!isfinite (se->values[i]))
            {
              pen_down = FALSE;
              continue;
            }
          y = y_to_px (&ax, se->values[i]);
          if (pen_down)
            cairo_line_to (cr, x, y);
          else
            cairo_move_to (cr, x, y);
          pen_down = TRUE;
        }
      cairo_stroke (cr);
      /* Dots keep single points and short series visible. */
      for (int i = 0; i < se->n; i++)
        if (isfinite (se->values[i]) && (se->n <= 40 || i == se->n - 1))
          {
            cairo_arc (cr, ax.x0 + i * x_step, y_to_px (&ax, se->values[i]), 3.0, 0, 2 * G_PI);
            cairo_fill (cr);
          }
    }
  cairo_restore (cr);

out:
  cairo_restore (cr);
}

/* ---- bar chart -------------------------------------------------------- */

void
cleave_chart_draw_bars (cairo_t *cr, double width, double height, const CleaveBarChart *chart,
                        const CleaveChartStyle *style_in)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  double fs = font_size_of (style);
  double vmax = 0, vmin = 0, top, label_w = 0, group_w, bottom;
  gboolean rotate;
  YAxis ax;

  g_return_if_fail (chart != NULL);
  begin (cr, width, height, style);
  top = draw_title (cr, chart->title, width, style);
  top += draw_legend_row (cr, PAD, top, width - 2 * PAD, chart->series_names, chart->n_series, style);

  for (int i = 0; i < chart->n_categories * chart->n_series; i++)
    if (isfinite (chart->values[i]))
      {
        vmax = MAX (vmax, chart->values[i]);
        vmin = MIN (vmin, chart->values[i]);
      }
  if (chart->y_max > 0)
    vmax = chart->y_max;
  if (vmax <= vmin)
    vmax = vmin + 1;

  for (int c = 0; c < chart->n_categories; c++)
    label_w = MAX (label_w, text_width (cr, chart->categories[c]));
  group_w = (width - 2 * PAD - 50) / MAX (chart->n_categories, 1);
  rotate = label_w > group_w - 4;
  /* Rotated labels take the space their 45° diagonal needs, capped so long
   * class names cannot squeeze the plot away. */
  bottom = rotate ? MIN (label_w * 0.72 + fs, height * 0.35) : fs * 1.8;

  ax.x0 = PAD;
  ax.x1 = width - PAD;
  ax.y0 = top + fs * 0.5;
  ax.y1 = height - PAD - bottom;
  ax.vmin = vmin;
  ax.vmax = vmax;
  if (ax.y1 - ax.y0 < fs || chart->n_categories <= 0)
    goto out;
  draw_y_axis (cr, &ax, chart->y_label, style);

  group_w = (ax.x1 - ax.x0) / chart->n_categories;
  for (int c = 0; c < chart->n_categories; c++)
    {
      double gx = ax.x0 + c * group_w;
      double inner = group_w * 0.8;
      double bar_w = inner / MAX (chart->n_series, 1);

      for (int s = 0; s < chart->n_series; s++)
        {
          double v = chart->values[c * chart->n_series + s];
          double rgb[3], y, y_base = y_to_px (&ax, 0);

          if (!isfinite (v))
            continue;
          v = CLAMP (v, vmin, vmax);
          y = y_to_px (&ax, v);
          cleave_chart_palette_color (s, rgb);
          cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
          cairo_rectangle (cr, gx + group_w * 0.1 + s * bar_w + 0.5, MIN (y, y_base),
                           MAX (bar_w - 1.0, 1.0), fabs (y_base - y));
          cairo_fill (cr);
        }

      source_rgba (cr, style->fg);
      if (rotate)
        {
          cairo_save (cr);
          cairo_translate (cr, gx + group_w / 2, ax.y1 + 4);
          cairo_rotate (cr, -G_PI / 4);
          cairo_translate (cr, 0, 0);
          {
            cairo_font_extents_t fe;

            cairo_font_extents (cr, &fe);
            /* Right-aligned so the label ends under its group. */
            draw_text_fit (cr, chart->categories[c], 0, fe.ascent / 2, 1.0, bottom * 1.3);
          }
          cairo_restore (cr);
        }
      else
        draw_text_fit (cr, chart->categories[c], gx + group_w / 2, ax.y1 + fs * 0.9, 0.5, group_w - 2);
    }

out:
  cairo_restore (cr);
}

/* ---- heat map --------------------------------------------------------- */

static void
heat_color (double t, const CleaveChartStyle *style, double rgb[3])
{
  /* From the background towards GNOME blue; readable in light and dark. */
  static const double hot[3] = { 0.11, 0.44, 0.85 };

  t = CLAMP (t, 0.0, 1.0);
  for (int i = 0; i < 3; i++)
    rgb[i] = style->bg[i] + (hot[i] - style->bg[i]) * sqrt (t);
}

typedef struct {
  double x0, y0, cell;          /* the square grid */
  double top, row_w, col_h;
  double scale_x;               /* left edge of the colour scale */
  double vmax;
  gboolean rotate, ok;
} HeatLayout;

#define SCALE_BAR 0.8           /* colour-scale bar width, in font sizes */

/* Shared by drawing and hit-testing so tooltips always match the pixels.
 * Draws the title (a scratch surface when hit-testing). */
static void
heat_layout (cairo_t *cr, const CleaveHeatMap *chart, double width, double height, const CleaveChartStyle *style,
             HeatLayout *l)
{
  double fs = font_size_of (style);
  double avail_w, avail_h, col_label_w = 0, scale_w;

  memset (l, 0, sizeof *l);
  l->top = draw_title (cr, chart->title, width, style);
  if (chart->n_rows <= 0 || chart->n_cols <= 0)
    return;
  for (int r = 0; r < chart->n_rows; r++)
    l->row_w = MAX (l->row_w, text_width (cr, chart->row_labels ? chart->row_labels[r] : ""));
  l->row_w = MIN (l->row_w, width * 0.3);
  for (int c = 0; c < chart->n_cols; c++)
    col_label_w = MAX (col_label_w, text_width (cr, chart->col_labels ? chart->col_labels[c] : ""));
  /* The colour scale on the right: a bar and its end labels. */
  scale_w = fs * SCALE_BAR + 4 + text_width (cr, "100%");
  avail_w = width - 2 * PAD - l->row_w - 6 - (chart->row_title ? fs * 1.5 : 0) - scale_w - 8;
  l->rotate = col_label_w > avail_w / chart->n_cols - 2;
  /* Rotated column labels stand upright: at any cell size they never
   * overlap, as slanted ones do once cells are narrower than a line. */
  l->col_h = l->rotate ? MIN (col_label_w + fs * 0.5, height * 0.3) : fs * 1.5;
  avail_h = height - l->top - PAD - l->col_h - (chart->col_title ? fs * 1.5 : 0);
  l->cell = MIN (avail_w / chart->n_cols, avail_h / chart->n_rows);
  if (l->cell < 2)
    return;
  l->x0 = PAD + (chart->row_title ? fs * 1.5 : 0) + l->row_w + 6;
  l->x0 += (avail_w - l->cell * chart->n_cols) / 2;  /* centre the square grid */
  l->y0 = l->top + (chart->col_title ? fs * 1.5 : 0) + l->col_h;
  l->scale_x = l->x0 + l->cell * chart->n_cols + 8;
  l->vmax = chart->v_max;
  if (l->vmax <= 0)
    for (int i = 0; i < chart->n_rows * chart->n_cols; i++)
      l->vmax = MAX (l->vmax, chart->values[i]);
  l->ok = TRUE;
}

/* A bar from the empty colour (bottom) to the full one (top), with the
 * values they stand for. */
static void
draw_heat_scale (cairo_t *cr, const CleaveHeatMap *chart, const HeatLayout *l, const CleaveChartStyle *style)
{
  double fs = font_size_of (style), h = l->cell * chart->n_rows, bar = fs * SCALE_BAR;
  const int steps = 32;
  char top[32];

  for (int i = 0; i < steps; i++)
    {
      double rgb[3];

      heat_color ((i + 0.5) / steps, style, rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle (cr, l->scale_x, l->y0 + h * (1 - (i + 1.0) / steps), bar, h / steps + 0.5);
      cairo_fill (cr);
    }
  source_rgba (cr, style->grid);
  cairo_set_line_width (cr, 1);
  cairo_rectangle (cr, l->scale_x + 0.5, l->y0 + 0.5, bar - 1, h - 1);
  cairo_stroke (cr);
  if (chart->row_normalize)
    g_strlcpy (top, "100%", sizeof top);
  else
    g_snprintf (top, sizeof top, "%.3g", l->vmax);
  source_rgba (cr, style->fg);
  draw_text (cr, top, l->scale_x + bar + 4, l->y0 + fs * 0.4, 0.0);
  draw_text (cr, chart->row_normalize ? "0%" : "0", l->scale_x + bar + 4, l->y0 + h - fs * 0.1, 0.0);
}

static double
heat_scale_of_row (const CleaveHeatMap *chart, const HeatLayout *l, int r)
{
  double row_sum = 0;

  if (!chart->row_normalize)
    return l->vmax > 0 ? 1.0 / l->vmax : 0;
  for (int c = 0; c < chart->n_cols; c++)
    row_sum += chart->values[r * chart->n_cols + c];
  return row_sum > 0 ? 1.0 / row_sum : 0;
}

static void
draw_heat_labels (cairo_t *cr, const CleaveHeatMap *chart, const HeatLayout *l, const CleaveChartStyle *style)
{
  double fs = font_size_of (style), cell = l->cell;

  source_rgba (cr, style->fg);
  if (chart->col_title)
    draw_text (cr, chart->col_title, l->x0 + cell * chart->n_cols / 2, l->top + fs * 0.6, 0.5);
  if (chart->row_title)
    {
      cairo_save (cr);
      cairo_translate (cr, l->x0 - l->row_w - 6 - fs * 0.8, l->y0 + cell * chart->n_rows / 2);
      cairo_rotate (cr, -G_PI / 2);
      draw_text (cr, chart->row_title, 0, 0, 0.5);
      cairo_restore (cr);
    }
  for (int r = 0; r < chart->n_rows && chart->row_labels; r++)
    draw_text_fit (cr, chart->row_labels[r], l->x0 - 6, l->y0 + (r + 0.5) * cell, 1.0, l->row_w);
  for (int c = 0; c < chart->n_cols && chart->col_labels; c++)
    {
      double x = l->x0 + (c + 0.5) * cell;

      if (l->rotate)
        {
          cairo_save (cr);
          cairo_translate (cr, x, l->y0 - 4);
          cairo_rotate (cr, -G_PI / 2);
          draw_text_fit (cr, chart->col_labels[c], 0, 0, 0.0, l->col_h - fs * 0.5);
          cairo_restore (cr);
        }
      else
        draw_text_fit (cr, chart->col_labels[c], x, l->y0 - fs * 0.7, 0.5, cell - 2);
    }
}

void
cleave_chart_draw_heat_map (cairo_t *cr, double width, double height, const CleaveHeatMap *chart,
                            const CleaveChartStyle *style_in)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  double fs = font_size_of (style);
  HeatLayout l;
  char buf[64];

  g_return_if_fail (chart != NULL);
  begin (cr, width, height, style);
  heat_layout (cr, chart, width, height, style, &l);
  if (!l.ok)
    goto out;
  draw_heat_labels (cr, chart, &l, style);
  for (int r = 0; r < chart->n_rows; r++)
    {
      double scale = heat_scale_of_row (chart, &l, r);

      for (int c = 0; c < chart->n_cols; c++)
        {
          double v = chart->values[r * chart->n_cols + c];
          double t = v * scale, rgb[3];
          double gap = l.cell > 8 ? 1.0 : 0.0;

          heat_color (t, style, rgb);
          cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
          cairo_rectangle (cr, l.x0 + c * l.cell, l.y0 + r * l.cell, l.cell - gap, l.cell - gap);
          cairo_fill (cr);
          if (chart->value_format && l.cell >= fs * 1.6)
            {
              g_snprintf (buf, sizeof buf, chart->value_format, v);
              if (t > 0.45)
                cairo_set_source_rgb (cr, 1, 1, 1);
              else
                source_rgba (cr, style->fg);
              cairo_save (cr);
              cairo_set_font_size (cr, MIN (fs, l.cell * 0.4));
              draw_text_fit (cr, buf, l.x0 + (c + 0.5) * l.cell, l.y0 + (r + 0.5) * l.cell, 0.5, l.cell - 2);
              cairo_restore (cr);
            }
        }
    }
  draw_heat_scale (cr, chart, &l, style);

out:
  cairo_restore (cr);
}

/* ---- mask matrix ------------------------------------------------------ */

typedef struct {
  double x0, y0, cell_w, cell_h;
  double label_w;
  gboolean ok;
} MaskLayout;

/* Shared by drawing and hit-testing so tooltips always match the pixels.
 * Needs a cairo_t only to measure labels. */
static void
mask_layout (cairo_t *cr, const CleaveMaskMatrix *chart, double width, double height,
             const CleaveChartStyle *style, MaskLayout *l)
{
  double fs = font_size_of (style);
  double top = (chart->title && *chart->title) ? PAD + fs * 1.6 : PAD;
  double avail_w, avail_h;

  l->label_w = 0;
  for (int m = 0; m < chart->n_modules; m++)
    {
      char fallback[32];
      const char *label = chart->module_labels ? chart->module_labels[m] : NULL;

      if (!label)
        {
          g_snprintf (fallback, sizeof fallback, "%d", m);
          label = fallback;
        }
      l->label_w = MAX (l->label_w, text_width (cr, label));
    }
  l->label_w = MIN (l->label_w + 6, width * 0.3);
  l->x0 = PAD + l->label_w;
  l->y0 = top + fs * 1.4;                 /* room for kernel index ticks */
  avail_w = width - l->x0 - PAD;
  avail_h = height - l->y0 - PAD;
  l->ok = chart->n_modules > 0 && chart->n_kernels > 0 && avail_w > 0 && avail_h > 0;
  if (!l->ok)
    return;
  l->cell_w = avail_w / chart->n_kernels;
  /* Rows no taller than three times their width, and never above 28 px:
   * a 2-module matrix should not turn into two huge bands. */
  l->cell_h = MIN (avail_h / chart->n_modules, MAX (MIN (l->cell_w * 3, 28.0), 4.0));
}

static void
measure_context (const CleaveChartStyle *style, cairo_surface_t **surface, cairo_t **cr)
{
  *surface = cairo_image_surface_create (CAIRO_FORMAT_A8, 1, 1);
  *cr = cairo_create (*surface);
  cairo_select_font_face (*cr, "Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size (*cr, font_size_of (style));
}

gboolean
cleave_chart_mask_matrix_hit (const CleaveMaskMatrix *chart, const CleaveChartStyle *style_in,
                              double width, double height, double x, double y, int *module, int *kernel)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  cairo_surface_t *surface;
  cairo_t *cr;
  MaskLayout l;
  int m, k;

  g_return_val_if_fail (chart != NULL, FALSE);
  measure_context (style, &surface, &cr);
  mask_layout (cr, chart, width, height, style, &l);
  cairo_destroy (cr);
  cairo_surface_destroy (surface);

  if (!l.ok || x < l.x0 || y < l.y0)
    return FALSE;
  k = (int) floor ((x - l.x0) / l.cell_w);
  m = (int) floor ((y - l.y0) / l.cell_h);
  if (k < 0 || k >= chart->n_kernels || m < 0 || m >= chart->n_modules)
    return FALSE;
  if (module)
    *module = m;
  if (kernel)
    *kernel = k;
  return TRUE;
}

gboolean
cleave_chart_heat_map_hit (const CleaveHeatMap *chart, const CleaveChartStyle *style_in, double width, double height,
                           double x, double y, int *row, int *col)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  cairo_surface_t *surface;
  cairo_t *cr;
  HeatLayout l;
  int r, c;

  g_return_val_if_fail (chart != NULL, FALSE);
  measure_context (style, &surface, &cr);
  heat_layout (cr, chart, width, height, style, &l);
  cairo_destroy (cr);
  cairo_surface_destroy (surface);
  if (!l.ok || x < l.x0 || y < l.y0)
    return FALSE;
  c = (int) floor ((x - l.x0) / l.cell);
  r = (int) floor ((y - l.y0) / l.cell);
  if (c < 0 || c >= chart->n_cols || r < 0 || r >= chart->n_rows)
    return FALSE;
  if (row)
    *row = r;
  if (col)
    *col = c;
  return TRUE;
}

void
cleave_chart_draw_mask_matrix (cairo_t *cr, double width, double height, const CleaveMaskMatrix *chart,
                               const CleaveChartStyle *style_in)
{
  CleaveChartStyle storage;
  const CleaveChartStyle *style = style_or_default (style_in, &storage);
  double fs = font_size_of (style);
  MaskLayout l;
  double gap;
  char buf[32];
  int every;

  g_return_if_fail (chart != NULL);
  begin (cr, width, height, style);
  draw_title (cr, chart->title, width, style);
  mask_layout (cr, chart, width, height, style, &l);
  if (!l.ok)
    goto out;
  gap = l.cell_w >= 5 && l.cell_h >= 5 ? 1.0 : 0.0;

  for (int m = 0; m < chart->n_modules; m++)
    {
      double rgb[3];
      int cls = chart->module_class ? chart->module_class[m] : m;
      const char *label = chart->module_labels ? chart->module_labels[m] : NULL;

      cleave_chart_palette_color (cls, rgb);
      if (!label)
        {
          g_snprintf (buf, sizeof buf, "%d", m);
          label = buf;
        }
      source_rgba (cr, style->fg);
      draw_text_fit (cr, label, l.x0 - 6, l.y0 + (m + 0.5) * l.cell_h, 1.0, l.label_w - 6);

      for (int k = 0; k < chart->n_kernels; k++)
        {
          if (chart->kept[(gsize) m * chart->n_kernels + k])
            cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
          else
            source_rgba (cr, style->grid);
          cairo_rectangle (cr, l.x0 + k * l.cell_w, l.y0 + m * l.cell_h,
                           MAX (l.cell_w - gap, 0.5), MAX (l.cell_h - gap, 0.5));
          cairo_fill (cr);
        }
    }

  /* Kernel indices above the grid, as sparse as legibility needs. */
  source_rgba (cr, style->fg);
  cairo_save (cr);
  cairo_set_font_size (cr, fs * 0.85);
  every = (int) ceil (nice_step (chart->n_kernels, MAX (1, (int) ((width - l.x0) / (fs * 3.5)))));
  every = MAX (every, 1);
  for (int k = 0; k < chart->n_kernels; k += every)
    {
      g_snprintf (buf, sizeof buf, "%d", k);
      draw_text (cr, buf, l.x0 + (k + 0.5) * l.cell_w, l.y0 - fs * 0.7, 0.5);
    }
  cairo_restore (cr);

out:
  cairo_restore (cr);
}

/* ---- dispatch, files, copies ------------------------------------------ */

void
cleave_chart_draw (CleaveChartKind kind, gconstpointer chart, cairo_t *cr,
                   double width, double height, const CleaveChartStyle *style)
{
  switch (kind)
    {
    case CLEAVE_CHART_LINE:
      cleave_chart_draw_line (cr, width, height, chart, style);
      break;
    case CLEAVE_CHART_BARS:
      cleave_chart_draw_bars (cr, width, height, chart, style);
      break;
    case CLEAVE_CHART_HEAT_MAP:
      cleave_chart_draw_heat_map (cr, width, height, chart, style);
      break;
    case CLEAVE_CHART_MASK_MATRIX:
      cleave_chart_draw_mask_matrix (cr, width, height, chart, style);
      break;
    default:
      g_return_if_reached ();
    }
}

CleaveChartFormat
cleave_chart_format_for_path (const char *path)
{
  g_autofree char *lower = g_ascii_strdown (path, -1);

  return g_str_has_suffix (lower, ".svg") ? CLEAVE_CHART_FORMAT_SVG : CLEAVE_CHART_FORMAT_PNG;
}

static cairo_status_t
append_bytes (void *closure, const unsigned char *data, unsigned int length)
{
  g_byte_array_append (closure, data, length);
  return CAIRO_STATUS_SUCCESS;
}

gboolean
cleave_chart_save (CleaveChartKind kind, gconstpointer chart, const CleaveChartStyle *style,
                   int width, int height, CleaveChartFormat format, const char *path,
                   GError **error)
{
  CleaveChartStyle storage;
  g_autoptr(GByteArray) bytes = NULL;
  cairo_surface_t *surface;
  cairo_t *cr;
  cairo_status_t status;

  g_return_val_if_fail (chart != NULL, FALSE);
  g_return_val_if_fail (path != NULL, FALSE);

  if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "Chart size %d×%d is out of range (1 to 16384)", width, height);
      return FALSE;
    }
  style = style_or_default (style, &storage);

  /* Render to memory, then replace the file atomically with the usual file
   * mode (a bare mkstemp file would be private to the user). */
  bytes = g_byte_array_new ();
  if (format == CLEAVE_CHART_FORMAT_SVG)
    surface = cairo_svg_surface_create_for_stream (append_bytes, bytes, width, height);
  else
    surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  cr = cairo_create (surface);
  cleave_chart_draw (kind, chart, cr, width, height, style);
  status = cairo_status (cr);
  cairo_destroy (cr);

  if (status == CAIRO_STATUS_SUCCESS && format == CLEAVE_CHART_FORMAT_PNG)
    status = cairo_surface_write_to_png_stream (surface, append_bytes, bytes);
  cairo_surface_finish (surface);
  if (status == CAIRO_STATUS_SUCCESS)
    status = cairo_surface_status (surface);
  cairo_surface_destroy (surface);
  if (status != CAIRO_STATUS_SUCCESS)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_FAILED, "Could not render chart “%s”: %s",
                   path, cairo_status_to_string (status));
      return FALSE;
    }

  return cleave_file_replace (path, bytes->data, bytes->len, 0666, error);
}

static char **
dup_labels (const char *const *labels, int n)
{
  char **out;

  if (!labels)
    return NULL;
  out = g_new0 (char *, n + 1);
  for (int i = 0; i < n; i++)
    out[i] = g_strdup (labels[i]);
  return out;
}

static gpointer
dup_doubles (const double *v, gsize n)
{
  return v && n ? g_memdup2 (v, n * sizeof *v) : NULL;
}

gpointer
cleave_chart_dup (CleaveChartKind kind, gconstpointer chart)
{
  g_return_val_if_fail (chart != NULL, NULL);

  switch (kind)
    {
    case CLEAVE_CHART_LINE:
      {
        const CleaveLineChart *src = chart;
        CleaveLineChart *dst = g_new0 (CleaveLineChart, 1);
        CleaveChartSeries *series = g_new0 (CleaveChartSeries, MAX (src->n_series, 1));

        *dst = *src;
        dst->title = g_strdup (src->title);
        dst->x_label = g_strdup (src->x_label);
        dst->y_label = g_strdup (src->y_label);
        for (int s = 0; s < src->n_series; s++)
          {
            series[s].name = g_strdup (src->series[s].name);
            series[s].n = src->series[s].n;
            series[s].values = dup_doubles (src->series[s].values, src->series[s].n);
          }
        dst->series = series;
        return dst;
      }
    case CLEAVE_CHART_BARS:
      {
        const CleaveBarChart *src = chart;
        CleaveBarChart *dst = g_new0 (CleaveBarChart, 1);

        *dst = *src;
        dst->title = g_strdup (src->title);
        dst->y_label = g_strdup (src->y_label);
        dst->categories = (const char *const *) dup_labels (src->categories, src->n_categories);
        dst->series_names = (const char *const *) dup_labels (src->series_names, src->n_series);
        dst->values = dup_doubles (src->values, (gsize) src->n_categories * src->n_series);
        return dst;
      }
    case CLEAVE_CHART_HEAT_MAP:
      {
        const CleaveHeatMap *src = chart;
        CleaveHeatMap *dst = g_new0 (CleaveHeatMap, 1);

        *dst = *src;
        dst->title = g_strdup (src->title);
        dst->row_title = g_strdup (src->row_title);
        dst->col_title = g_strdup (src->col_title);
        dst->value_format = g_strdup (src->value_format);
        dst->row_labels = (const char *const *) dup_labels (src->row_labels, src->n_rows);
        dst->col_labels = (const char *const *) dup_labels (src->col_labels, src->n_cols);
        dst->values = dup_doubles (src->values, (gsize) src->n_rows * src->n_cols);
        return dst;
      }
    case CLEAVE_CHART_MASK_MATRIX:
      {
        const CleaveMaskMatrix *src = chart;
        CleaveMaskMatrix *dst = g_new0 (CleaveMaskMatrix, 1);
        gsize cells = (gsize) src->n_modules * src->n_kernels;

        *dst = *src;
        dst->title = g_strdup (src->title);
        dst->kept = cells ? g_memdup2 (src->kept, cells) : NULL;
        dst->module_class = src->module_class && src->n_modules
          ? g_memdup2 (src->module_class, src->n_modules * sizeof (int)) : NULL;
        dst->module_labels = (const char *const *) dup_labels (src->module_labels, src->n_modules);
        return dst;
      }
    default:
      g_return_val_if_reached (NULL);
    }
}

void
cleave_chart_free (CleaveChartKind kind, gpointer chart)
{
  if (!chart)
    return;

  switch (kind)
    {
    case CLEAVE_CHART_LINE:
      {
        CleaveLineChart *c = chart;

        for (int s = 0; s < c->n_series; s++)
          {
            g_free ((char *) c->series[s].name);
            g_free ((double *) c->series[s].values);
          }
        g_free ((CleaveChartSeries *) c->series);
        g_free ((char *) c->title);
        g_free ((char *) c->x_label);
        g_free ((char *) c->y_label);
        break;
      }
    case CLEAVE_CHART_BARS:
      {
        CleaveBarChart *c = chart;

        g_free ((char *) c->title);
        g_free ((char *) c->y_label);
        g_strfreev ((char **) c->categories);
        g_strfreev ((char **) c->series_names);
        g_free ((double *) c->values);
        break;
      }
    case CLEAVE_CHART_HEAT_MAP:
      {
        CleaveHeatMap *c = chart;

        g_free ((char *) c->title);
        g_free ((char *) c->row_title);
        g_free ((char *) c->col_title);
        g_free ((char *) c->value_format);
        g_strfreev ((char **) c->row_labels);
        g_strfreev ((char **) c->col_labels);
        g_free ((double *) c->values);
        break;
      }
    case CLEAVE_CHART_MASK_MATRIX:
      {
        CleaveMaskMatrix *c = chart;

        g_free ((char *) c->title);
        g_free ((guint8 *) c->kept);
        g_free ((int *) c->module_class);
        g_strfreev ((char **) c->module_labels);
        break;
      }
    default:
      g_return_if_reached ();
    }
  g_free (chart);
}
