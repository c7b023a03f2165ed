/* cleave-module-palette.h: the modules of every open module set, grouped
 * by set, each a drag source of a CleaveModuleRef. A single click only
 * selects a module; double-click or Enter activates it
 * (::module-activated), and dragging carries it to a drop target. */
#pragma once

#include <adwaita.h>
#include "cleave-workspace.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_MODULE_PALETTE (cleave_module_palette_get_type ())
G_DECLARE_FINAL_TYPE (CleaveModulePalette, cleave_module_palette, CLEAVE, MODULE_PALETTE, AdwBin)

void                   cleave_module_palette_set_workspace (CleaveModulePalette *self, CleaveWorkspace *workspace);
/* The selected module, NULL when none. (transfer none) (nullable) */
const CleaveModuleRef *cleave_module_palette_get_selected  (CleaveModulePalette *self);
/* Selects the row of @ref (NULL: none), as a click would. */
gboolean               cleave_module_palette_select        (CleaveModulePalette *self, const CleaveModuleRef *ref);
/* Activates the selected row, as a double-click or Enter would. */
void                   cleave_module_palette_activate_selected (CleaveModulePalette *self);
GtkListBox            *cleave_module_palette_get_list      (CleaveModulePalette *self);

/* The drag payload a palette row offers for module @ref. (transfer full) */
GdkContentProvider    *cleave_module_palette_content       (const CleaveModuleRef *ref);

G_END_DECLS
