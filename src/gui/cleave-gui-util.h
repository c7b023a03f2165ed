/* cleave-gui-util.h: small helpers shared by the pages (no arithmetic on
 * tensors: only copies, formatting and the drag-and-drop payload). */
#pragma once

#include <gtk/gtk.h>
#include "cleave-chart-view.h"
#include "cleave-model.h"
#include "cleave-backend.h"
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

/* Per-class precision, recall and F1 bars: @prf holds n × 3 values, class
 * by class. */
void cleave_gui_show_prf_chart (CleaveChartView *view, const char *title,
                                const char *const *names, int n, const double *prf);

/* One label of a table grid; column 0 takes the spare width. */
void cleave_gui_grid_add_cell (GtkGrid *grid, const char *text, int col, int row,
                               gboolean numeric, gboolean header);

/* The first file of a GdkFileList drop, or NULL for anything else. */
GFile *cleave_gui_dropped_file (const GValue *value);

/* The drag-and-drop payload for a module: which open module set and which
 * module in it. A boxed type so drop targets only accept modules, never
 * arbitrary text. */
typedef struct {
  guint set_index;
  guint module_index;
} CleaveModuleRef;

#define CLEAVE_TYPE_MODULE_REF (cleave_module_ref_get_type ())
GType            cleave_module_ref_get_type (void) G_GNUC_CONST;
CleaveModuleRef *cleave_module_ref_new      (guint set_index, guint module_index);
CleaveModuleRef *cleave_module_ref_copy     (const CleaveModuleRef *ref);
void             cleave_module_ref_free     (CleaveModuleRef *ref);

G_END_DECLS
