/* cleave-window.h: the main window: a view stack of Start, Model, Split,
 * Modules and Compose pages, owning the open model. */
#pragma once

#include <adwaita.h>

#include "cleave-application.h"
#include "cleave-model.h"
#include "cleave-module.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_WINDOW (cleave_window_get_type ())
G_DECLARE_FINAL_TYPE (CleaveWindow, cleave_window, CLEAVE, WINDOW, AdwApplicationWindow)

CleaveWindow *cleave_window_new (CleaveApplication *app);

/* Loads a model file off the main thread; emits ::load-finished when done
 * (a failure shows a toast and keeps the previous model). */
void          cleave_window_open_file   (CleaveWindow *self, GFile *file);
gboolean      cleave_window_open_demo   (CleaveWindow *self);
gboolean      cleave_window_is_loading  (CleaveWindow *self);
CleaveModel  *cleave_window_get_model   (CleaveWindow *self);

/* Module sets open in this window (from splits and files): the window owns
 * them until it closes, so indices stay valid; ::module-sets-changed
 * follows each addition. */
guint            cleave_window_add_module_set      (CleaveWindow *self, CleaveModuleSet *set /* taken */,
                                                    const char *name);
guint            cleave_window_n_module_sets       (CleaveWindow *self);
CleaveModuleSet *cleave_window_get_module_set      (CleaveWindow *self, guint index);
const char      *cleave_window_get_module_set_name (CleaveWindow *self, guint index);

/* "start", "model", "split", "modules", "compose" */
void          cleave_window_show_page   (CleaveWindow *self, const char *name);
GtkWidget    *cleave_window_get_page    (CleaveWindow *self, const char *name);

void          cleave_window_toast       (CleaveWindow *self, const char *message);

G_END_DECLS
