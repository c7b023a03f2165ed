/* cleave-compose-page.h: a palette of the modules of every open module set
 * (cleave-module-palette.h), and a canvas: drop modules on it to compose a
 * new model, or open a weak model and drop modules on its weak classes to
 * patch it. The weak model is evaluated as soon as it is open: its class
 * rows show per-class F1, weak classes are marked, and the best open module
 * for each is suggested. Every change can be undone; results go out of
 * date the moment their inputs change and are re-evaluated by themselves.
 * Export as a Cleave file or ONNX.
 *
 * The recipes live in cleave-compose-recipe.h, the evaluations in
 * cleave-compose-eval.h. The drop handlers call
 * cleave_compose_page_drop_module(); keyboard actions and tests call the
 * same function. */
#pragma once

#include <adwaita.h>
#include "cleave-model.h"
#include "cleave-module-palette.h"
#include "cleave-workspace.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_COMPOSE_PAGE (cleave_compose_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, CLEAVE, COMPOSE_PAGE, AdwBin)

void cleave_compose_page_set_settings  (CleaveComposePage *self, GSettings *settings);
void cleave_compose_page_set_dataset   (CleaveComposePage *self, const char *spec);
/* "compose" or "patch" */
void        cleave_compose_page_set_mode (CleaveComposePage *self, const char *mode);
const char *cleave_compose_page_get_mode (CleaveComposePage *self);
CleaveModulePalette *cleave_compose_page_get_palette (CleaveComposePage *self);

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
/* Replaces what the page shows with a reopened file's recipe (taken, a
 * cleave_recipe_new() array): a composition (@weak NULL), or the patches
 * of @weak (taken). Not a change that Undo takes back. */
void     cleave_compose_page_set_recipe  (CleaveComposePage *self, CleaveModel *weak, GArray *recipe);
/* Undoes the last change of a recipe; FALSE when there is none. */
gboolean cleave_compose_page_undo        (CleaveComposePage *self);

/* The weak model to patch (taken); NULL clears it and its patches. It is
 * evaluated at once; ::weak-evaluated (gboolean ok) follows. */
void     cleave_compose_page_set_weak_model (CleaveComposePage *self, CleaveModel *model);
/* Loads a model file on a worker thread; ::weak-loaded (gboolean ok) follows. */
void     cleave_compose_page_open_weak_model (CleaveComposePage *self, GFile *file);
/* The weak model's test F1 of class @c (NAN until evaluated), whether it
 * counts as weak, and the module suggested for it (NULL when none). */
double   cleave_compose_page_weak_f1     (CleaveComposePage *self, int c);
gboolean cleave_compose_page_is_weak_class (CleaveComposePage *self, int c);
const CleaveModuleRef *cleave_compose_page_suggestion (CleaveComposePage *self, int c);
/* Patches every weak class with its suggestion, as one change; returns
 * how many were patched. */
guint    cleave_compose_page_apply_suggestions (CleaveComposePage *self);

/* Evaluates the current mode's result and its "before" on the dataset's test
 * split on a worker thread, replacing a running evaluation; ::evaluated
 * (gboolean ok) follows. */
gboolean cleave_compose_page_evaluate (CleaveComposePage *self);
/* Scrolls the results into view. */
void     cleave_compose_page_show_results (CleaveComposePage *self);
/* TRUE while the shown results no longer match the inputs. */
gboolean cleave_compose_page_is_stale (CleaveComposePage *self);
/* The results' headline, e.g. "61.9 % → 75.8 % (+13.9)". */
const char *cleave_compose_page_get_headline (CleaveComposePage *self);
/* Scores test image @index (wrapping around the test split) with the
 * current mode's result, on a worker thread; ::tried (gboolean ok)
 * follows, and the page shows the image, the answers and a chart. */
gboolean    cleave_compose_page_try_image    (CleaveComposePage *self, int index);
const char *cleave_compose_page_get_try_text (CleaveComposePage *self);
/* Writes the current mode's result: ONNX when @path ends in ".onnx", else
 * a Cleave file (composition or patched model). */
gboolean cleave_compose_page_export   (CleaveComposePage *self, const char *path, GError **error);

G_END_DECLS
