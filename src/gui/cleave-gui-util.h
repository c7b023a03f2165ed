/* cleave-gui-util.h: small helpers shared by the pages (no arithmetic on
 * tensors: only copies, formatting and the drag-and-drop payload). */
#pragma once

#include <adwaita.h>
#include "cleave-chart-view.h"
#include "cleave-model.h"
#include "cleave-backend.h"
#include "cleave-dataset.h"
#include "cleave-metrics.h"

G_BEGIN_DECLS

/* The app's configuration: read from the environment once, by main() before
 * anything starts, then constant (safe to read from worker threads).
 * CLEAVE_DEVICE is not read: the device is the user's choice in the app. */
typedef struct {
  CleaveBackendConfig backend;   /* OMP_NUM_THREADS, CLEAVE_CONV_ALGO, … */
  char **data_dirs;              /* CLEAVE_DATA_DIR, then the XDG ones */
  char *from_environment;        /* what was taken from there, for the log; NULL if nothing */
} CleaveGuiConfig;

/* Reads the environment (main() calls it first; cleave_gui_config() does
 * when nothing did). */
void                   cleave_gui_config_init (void);
const CleaveGuiConfig *cleave_gui_config      (void);
/* For a worker thread: a dataset's test split, found in the app's data
 * directories, and the device (NULL or "auto": the default rule), set up
 * with the app's backend settings. FALSE with @error when either fails. */
gboolean cleave_gui_open_test_data (const char *dataset, const char *device, GCancellable *cancellable,
                                    CleaveDataset **ds, CleaveBackend **backend, GError **error);

/* Progress from a worker thread, shown on the main loop: @apply runs there
 * with a copy of the report; @target (a GObject) is held until then. */
typedef void (*CleaveGuiProgressApply) (gpointer target, const CleaveProgress *progress, guint run);
void cleave_gui_post_progress (gpointer target, guint run, const CleaveProgress *progress,
                               CleaveGuiProgressApply apply);

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
