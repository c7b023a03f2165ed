/* cleave-compose-page.h: the Compose page (filled in once module sets exist in the core). */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define CLEAVE_TYPE_COMPOSE_PAGE (cleave_compose_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveComposePage, cleave_compose_page, CLEAVE, COMPOSE_PAGE, AdwBin)

G_END_DECLS
