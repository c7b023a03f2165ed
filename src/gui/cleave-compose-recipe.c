/* cleave-compose-recipe.c: composition and patch recipes, and building and
 * exporting the core objects they describe. */
#include <glib/gi18n.h>

#include "cleave-compose-recipe.h"
#include "cleave-error.h"
#include "cleave-gui-util.h"

static void
entry_clear (gpointer data)
{
  CleaveRecipeEntry *e = data;

  g_clear_object (&e->ref.set);
}

GArray *
cleave_recipe_new (void)
{
  GArray *recipe = g_array_new (FALSE, FALSE, sizeof (CleaveRecipeEntry));

  g_array_set_clear_func (recipe, entry_clear);
  return recipe;
}

void
cleave_recipe_append (GArray *recipe, const CleaveModuleRef *ref, int target)
{
  CleaveRecipeEntry e = { { g_object_ref (ref->set), ref->module_index }, target };

  g_array_append_val (recipe, e);
}

GArray *
cleave_recipe_copy (GArray *recipe)
{
  GArray *copy = cleave_recipe_new ();

  for (guint i = 0; i < recipe->len; i++)
    {
      const CleaveRecipeEntry *e = &g_array_index (recipe, CleaveRecipeEntry, i);

      cleave_recipe_append (copy, &e->ref, e->target);
    }
  return copy;
}

int
cleave_recipe_find_target (GArray *recipe, int target)
{
  for (guint i = 0; i < recipe->len; i++)
    if (g_array_index (recipe, CleaveRecipeEntry, i).target == target)
      return (int) i;
  return -1;
}

int
cleave_recipe_find_module (GArray *recipe, const CleaveModuleRef *ref)
{
  for (guint i = 0; i < recipe->len; i++)
    if (cleave_module_ref_equal (&g_array_index (recipe, CleaveRecipeEntry, i).ref, ref))
      return (int) i;
  return -1;
}

gboolean
cleave_recipe_drop_closed (GArray *recipe, CleaveWorkspace *workspace)
{
  gboolean dropped = FALSE;

  for (guint i = recipe->len; i-- > 0;)
    if (!cleave_workspace_is_open (workspace, g_array_index (recipe, CleaveRecipeEntry, i).ref.set))
      {
        g_array_remove_index (recipe, i);
        dropped = TRUE;
      }
  return dropped;
}

CleaveComposition *
cleave_recipe_build_composition (GArray *recipe, GError **error)
{
  g_autoptr(CleaveComposition) c = cleave_composition_new ();

  if (recipe->len == 0)
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, _("The composition is empty"));
      return NULL;
    }
  for (guint i = 0; i < recipe->len; i++)
    {
      const CleaveRecipeEntry *e = &g_array_index (recipe, CleaveRecipeEntry, i);

      if (!cleave_composition_add (c, cleave_open_set_get_set (e->ref.set), (int) e->ref.module_index, NULL, error))
        return NULL;
    }
  return g_steal_pointer (&c);
}

CleavePatched *
cleave_recipe_build_patched (const CleaveModel *weak, GArray *recipe, GError **error)
{
  g_autoptr(CleavePatched) p = NULL;

  if (!weak)
    {
      g_set_error_literal (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                           _("Open a weak model first: drop a model file on the canvas"));
      return NULL;
    }
  p = cleave_patched_new (cleave_model_copy (weak));
  for (guint i = 0; i < recipe->len; i++)
    {
      const CleaveRecipeEntry *e = &g_array_index (recipe, CleaveRecipeEntry, i);

      if (!cleave_patched_add (p, cleave_open_set_get_set (e->ref.set), (int) e->ref.module_index, e->target, error))
        return NULL;
    }
  return g_steal_pointer (&p);
}

gboolean
cleave_recipe_export (const CleaveModel *weak, GArray *recipe, const char *path, GError **error)
{
  gboolean onnx = g_str_has_suffix (path, ".onnx");

  if (weak)
    {
      g_autoptr(CleavePatched) p = cleave_recipe_build_patched (weak, recipe, error);

      if (!p)
        return FALSE;
      return onnx ? cleave_export_patched_onnx (p, path, error) : cleave_patched_save (p, path, error);
    }
  else
    {
      g_autoptr(CleaveComposition) c = cleave_recipe_build_composition (recipe, error);

      if (!c)
        return FALSE;
      return onnx ? cleave_export_composition_onnx (c, path, error) : cleave_composition_save (c, path, error);
    }
}
