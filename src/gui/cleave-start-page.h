/* cleave-start-page.h: open a model, the demo, or a recent file. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define CLEAVE_TYPE_START_PAGE (cleave_start_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveStartPage, cleave_start_page, CLEAVE, START_PAGE, AdwBin)

/* The recent-files list follows @settings ("recent-files"). */
void cleave_start_page_set_settings (CleaveStartPage *self, GSettings *settings);

G_END_DECLS
