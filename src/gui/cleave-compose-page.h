/* cleave-compose-page.h: a palette of the modules of every open module set,
 * and a canvas: drop modules on it to compose a new model, or drop a weak
 * model and drop modules on its weak classes to patch it. Evaluate before
 * and after side by side; export as a Cleave file or ONNX.
 *
 * Drag-and-drop carries a CleaveModuleRef (cleave-gui-util.h). The drop
 * handlers call cleave_compose_page_drop_module(); keyboard actions and
 * tests call the same function. */
#pragma once

#include <adwaita.h>
#include "cleave-model.h"
#include "cleave-gui-util.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_COMPOSE_PAGE (cleave_compose_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, CLEAVE, COMPOSE_PAGE, AdwBin)

/* The window's module sets changed: rebuild the palette. */
void cleave_compose_page_sets_changed  (CleaveComposePage *self);
/* The window's open model (borrowed), offered as the weak model. */
void cleave_compose_page_set_model     (CleaveComposePage *self, CleaveModel *model);
void cleave_compose_page_set_settings  (CleaveComposePage *self, GSettings *settings);
void cleave_compose_page_set_dataset   (CleaveComposePage *self, const char *spec);
/* "compose" or "patch" */
void        cleave_compose_page_set_mode (CleaveComposePage *self, const char *mode);
const char *cleave_compose_page_get_mode (CleaveComposePage *self);

/* The drag payload a palette row offers for module @ref. */
GdkContentProvider *cleave_compose_page_module_content (const CleaveModuleRef *ref);

/* What a drop does: @value holds a CleaveModuleRef; @target_class < 0 adds
 * the module to the composition, else patches that class of the weak model
 * (replacing an earlier patch of it). FALSE with @error when the core
 * refuses (shapes differ, no score range, module already used…). */
gboolean cleave_compose_page_drop_module (CleaveComposePage *self, const GValue *value, int target_class,
                                          GError **error);
guint    cleave_compose_page_n_composed  (CleaveComposePage *self);
guint    cleave_compose_page_n_patched   (CleaveComposePage *self);
void     cleave_compose_page_remove_composed (CleaveComposePage *self, guint index);
void     cleave_compose_page_unpatch     (CleaveComposePage *self, int target_class);

/* The weak model to patch (taken); NULL clears it and its patches. */
void     cleave_compose_page_set_weak_model (CleaveComposePage *self, CleaveModel *model);
/* Loads a model file on a worker thread; ::weak-loaded (gboolean ok) follows. */
void     cleave_compose_page_open_weak_model (CleaveComposePage *self, GFile *file);

/* Evaluates the current mode's result and its "before" on the dataset's test
 * split on a worker thread; ::evaluated (gboolean ok) follows. */
gboolean cleave_compose_page_evaluate (CleaveComposePage *self);
/* Writes the current mode's result: ONNX when @path ends in ".onnx", else
 * a Cleave file (composition or patched model). */
gboolean cleave_compose_page_export   (CleaveComposePage *self, const char *path, GError **error);

G_END_DECLS
