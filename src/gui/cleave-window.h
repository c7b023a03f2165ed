/* cleave-window.h: the main window: a view stack of Start, Model, Split,
 * Modules and Compose pages, owning the workspace (open model and module
 * sets) the pages share. */
#pragma once

#include <adwaita.h>

#include "cleave-application.h"
#include "cleave-model.h"
#include "cleave-module.h"
#include "cleave-workspace.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_WINDOW (cleave_window_get_type ())
G_DECLARE_FINAL_TYPE (CleaveWindow, cleave_window, CLEAVE, WINDOW, AdwApplicationWindow)

CleaveWindow *cleave_window_new (CleaveApplication *app);

/* Loads a model file off the main thread; emits ::load-finished when done
 * (a failure shows a toast and keeps the previous model). */
void          cleave_window_open_file   (CleaveWindow *self, GFile *file);
gboolean      cleave_window_open_demo   (CleaveWindow *self);
gboolean      cleave_window_is_loading  (CleaveWindow *self);
/* What is open in this window: the model and the module sets, handed to
 * the pages. (transfer none) */
CleaveWorkspace *cleave_window_get_workspace (CleaveWindow *self);

/* "start", "model", "split", "modules", "compose" */
void          cleave_window_show_page   (CleaveWindow *self, const char *name);
GtkWidget    *cleave_window_get_page    (CleaveWindow *self, const char *name);

void          cleave_window_toast       (CleaveWindow *self, const char *message);

G_END_DECLS
