/* cleave-modules-page.h: one open module set at a time: its kernel masks per
 * conv layer, per-module KRR and accuracy, the Jaccard overlap matrix and a
 * table of modules; save and open module-set files. */
#pragma once

#include <adwaita.h>
#include "cleave-module.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_MODULES_PAGE (cleave_modules_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveModulesPage, cleave_modules_page, CLEAVE, MODULES_PAGE, AdwBin)

/* The page follows the open sets of its "workspace" property and shows a
 * newly opened set. The shown set (borrowed), NULL when none. */
CleaveModuleSet *cleave_modules_page_get_set      (CleaveModulesPage *self);
void             cleave_modules_page_show_layer   (CleaveModulesPage *self, int site);
GtkWidget       *cleave_modules_page_get_mask_view (CleaveModulesPage *self);
GtkWidget       *cleave_modules_page_get_overlap_view (CleaveModulesPage *self);

/* Saves the shown set (atomic write by the core). */
gboolean cleave_modules_page_save      (CleaveModulesPage *self, const char *path, GError **error);
/* Loads a module-set file on a worker thread and adds it to the workspace;
 * ::opened (gboolean ok) follows. */
void     cleave_modules_page_open_file (CleaveModulesPage *self, GFile *file);

G_END_DECLS
