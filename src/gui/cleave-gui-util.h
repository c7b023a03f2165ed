/* cleave-gui-util.h: small helpers shared by the pages (no arithmetic on
 * tensors: only copies, formatting and the drag-and-drop payload). */
#pragma once

#include <adwaita.h>
#include "cleave-chart-view.h"
#include "cleave-model.h"

G_BEGIN_DECLS

/* A private copy of a model for a worker thread: the window may replace or
 * free its model while the worker runs. */
CleaveModel *cleave_gui_copy_model (const CleaveModel *src);

/* 1234567 → "1 234 567" (thin spaces). */
char *cleave_gui_format_count (guint64 v);

/* "1:05:03", "4:12" or "12 s". */
char *cleave_gui_format_duration (double seconds);

/* A modal "Close"-only message over the window holding @widget; nothing
 * when @widget is not in a window. */
void cleave_gui_show_error (GtkWidget *widget, const char *title, const char *message);

/* A modal message that says in plain words what is wrong (@plain), with
 * the technical @detail (a parser's message…) behind an expander. */
void cleave_gui_show_error_details (GtkWidget *widget, const char *title, const char *plain, const char *detail);

/* Plain words for what went wrong reading a file, from @error's code. */
const char *cleave_gui_file_error_text (const GError *error);

/* Per-class precision, recall and F1 bars: @prf holds n × 3 values, class
 * by class. */
void cleave_gui_show_prf_chart (CleaveChartView *view, const char *title,
                                const char *const *names, int n, const double *prf);

/* One label of a table grid; column 0 takes the spare width. */
void cleave_gui_grid_add_cell (GtkGrid *grid, const char *text, int col, int row,
                               gboolean numeric, gboolean header);

/* Keeps the keyboard focus in place while a button is locked: @from,
 * about to become insensitive, hands its focus to @to (sensitive); the
 * reverse call hands it back when @to still has it. */
void cleave_gui_hand_focus (GtkWidget *from, GtkWidget *to);

/* Template callbacks of the "‹ Back" and "Next ›" buttons a folded
 * leaflet shows (connected with object="leaflet" swapped="yes"). */
void cleave_gui_leaflet_forward (AdwLeaflet *leaflet);
void cleave_gui_leaflet_back    (AdwLeaflet *leaflet);
/* Registers both as template callbacks of @widget_class. */
void cleave_gui_bind_leaflet_callbacks (GtkWidgetClass *widget_class);

/* The first file of a GdkFileList drop, or NULL for anything else. */
GFile *cleave_gui_dropped_file (const GValue *value);

G_END_DECLS
