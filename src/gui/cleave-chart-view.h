/* cleave-chart-view.h: a GtkDrawingArea showing one cleave-chart drawing,
 * following the light/dark style, with Save as PNG/SVG in its context menu. */
#pragma once

#include <gtk/gtk.h>
#include "cleave-chart.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_CHART_VIEW (cleave_chart_view_get_type ())
G_DECLARE_FINAL_TYPE (CleaveChartView, cleave_chart_view, CLEAVE, CHART_VIEW, GtkDrawingArea)

GtkWidget *cleave_chart_view_new (void);

/* Shows a deep copy of @chart (NULL clears). */
void cleave_chart_view_set_chart (CleaveChartView *self, CleaveChartKind kind, gconstpointer chart);
gboolean cleave_chart_view_has_chart (CleaveChartView *self);

/* Writes what the view shows at its current size (or 800×500 when not yet
 * allocated); the format comes from the file name. */
gboolean cleave_chart_view_save (CleaveChartView *self, const char *path, GError **error);

/* Tooltip text for a point, as the widget shows it (mask matrices only). */
char *cleave_chart_view_tooltip_at (CleaveChartView *self, double x, double y);

G_END_DECLS
