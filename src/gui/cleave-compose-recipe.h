/* cleave-compose-recipe.h: what the Compose page keeps instead of core
 * objects: which module serves each composed class, and which module
 * patches each weak class. The core composition or patched model is built
 * from the recipe whenever it is needed (validating a drop, evaluating,
 * exporting), which leaves every check to the core and makes removing an
 * entry, or undoing a change, a matter of copying a small array. */
#pragma once

#include "cleave-compose.h"
#include "cleave-workspace.h"

G_BEGIN_DECLS

typedef struct {
  CleaveModuleRef ref;         /* holds a reference on ref.set */
  int target;                  /* patches: the weak class; compositions: -1 */
} CleaveRecipeEntry;

/* A GArray of CleaveRecipeEntry that releases its references. */
GArray *cleave_recipe_new    (void);
/* A copy holding its own references. */
GArray *cleave_recipe_copy   (GArray *recipe);
void    cleave_recipe_append (GArray *recipe, const CleaveModuleRef *ref, int target);
/* The entry patching @target, or -1. */
int     cleave_recipe_find_target (GArray *recipe, int target);
/* The entry using module @ref, or -1. */
int     cleave_recipe_find_module (GArray *recipe, const CleaveModuleRef *ref);
/* Drops the entries whose set is no longer open; TRUE when any was. */
gboolean cleave_recipe_drop_closed (GArray *recipe, CleaveWorkspace *workspace);

CleaveComposition *cleave_recipe_build_composition (GArray *recipe, GError **error);
/* @weak is copied. */
CleavePatched     *cleave_recipe_build_patched     (const CleaveModel *weak, GArray *recipe, GError **error);

/* Writes the composition (@weak NULL) or the patched model: ONNX when
 * @path ends in ".onnx", else a Cleave file. */
gboolean cleave_recipe_export (const CleaveModel *weak, GArray *recipe, const char *path, GError **error);

G_END_DECLS
