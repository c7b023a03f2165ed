/* cleave-workspace.h: what the app has open: the model and the module sets.
 *
 * The window makes one workspace and hands it to its pages (their
 * "workspace" property); the pages read and change what is open through it
 * and follow its notifications, never reaching up to the window.
 *
 * Module sets are CleaveOpenSet items of a GListStore: a set stays alive as
 * long as someone holds its item (a composition recipe, a drag payload),
 * even after it was closed. */
#pragma once

#include <gio/gio.h>
#include "cleave-model.h"
#include "cleave-module.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_OPEN_SET (cleave_open_set_get_type ())
G_DECLARE_FINAL_TYPE (CleaveOpenSet, cleave_open_set, CLEAVE, OPEN_SET, GObject)

/* (transfer none) */
CleaveModuleSet    *cleave_open_set_get_set    (CleaveOpenSet *self);
/* The name shown for it (its "name" property). */
const char         *cleave_open_set_get_name   (CleaveOpenSet *self);
/* Module @index, NULL when out of range. (transfer none) (nullable) */
const CleaveModule *cleave_open_set_get_module (CleaveOpenSet *self, guint index);

#define CLEAVE_TYPE_WORKSPACE (cleave_workspace_get_type ())
G_DECLARE_FINAL_TYPE (CleaveWorkspace, cleave_workspace, CLEAVE, WORKSPACE, GObject)

CleaveWorkspace *cleave_workspace_new       (void);

/* The open model (the "model" property, a pointer; notify::model follows a
 * change, after which the old model is freed). (transfer none) (nullable) */
CleaveModel     *cleave_workspace_get_model (CleaveWorkspace *self);
/* @model: (transfer full) (nullable) */
void             cleave_workspace_set_model (CleaveWorkspace *self, CleaveModel *model);

/* The open module sets, CleaveOpenSet items in the order they were opened.
 * (transfer none) */
GListModel      *cleave_workspace_get_sets  (CleaveWorkspace *self);
guint            cleave_workspace_n_sets    (CleaveWorkspace *self);
/* (transfer none) (nullable) */
CleaveOpenSet   *cleave_workspace_get_set   (CleaveWorkspace *self, guint index);
/* Appends @set under @name (a default when NULL). @set: (transfer full).
 * Returns: (transfer none) its item. */
CleaveOpenSet   *cleave_workspace_add_set   (CleaveWorkspace *self, CleaveModuleSet *set, const char *name);
/* Removes @item from the open sets; FALSE when it was not open. */
gboolean         cleave_workspace_close_set (CleaveWorkspace *self, CleaveOpenSet *item);
gboolean         cleave_workspace_is_open   (CleaveWorkspace *self, CleaveOpenSet *item);

/* A reference to one module of an open set: the drag-and-drop payload and
 * the unit of a composition recipe. It holds a reference on the set's item,
 * so a closed set's modules stay valid while referenced. A boxed type, so
 * drop targets only accept modules, never arbitrary text. */
typedef struct {
  CleaveOpenSet *set;
  guint module_index;
} CleaveModuleRef;

#define CLEAVE_TYPE_MODULE_REF (cleave_module_ref_get_type ())
GType            cleave_module_ref_get_type (void) G_GNUC_CONST;
CleaveModuleRef *cleave_module_ref_new      (CleaveOpenSet *set, guint module_index);
CleaveModuleRef *cleave_module_ref_copy     (const CleaveModuleRef *ref);
void             cleave_module_ref_free     (CleaveModuleRef *ref);
/* (transfer none) (nullable) */
const CleaveModule *cleave_module_ref_get_module (const CleaveModuleRef *ref);
gboolean         cleave_module_ref_equal    (const CleaveModuleRef *a, const CleaveModuleRef *b);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveModuleRef, cleave_module_ref_free)

G_END_DECLS
