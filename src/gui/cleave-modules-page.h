/* cleave-modules-page.h: the Modules page (filled in once module sets exist in the core). */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define CLEAVE_TYPE_MODULES_PAGE (cleave_modules_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveModulesPage, cleave_modules_page, CLEAVE, MODULES_PAGE, AdwBin)

G_END_DECLS
