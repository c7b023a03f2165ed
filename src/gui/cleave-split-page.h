/* cleave-split-page.h: splitter method, options, device; progress and live charts. */
#pragma once

#include <adwaita.h>
#include "cleave-model.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_SPLIT_PAGE (cleave_split_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveSplitPage, cleave_split_page, CLEAVE, SPLIT_PAGE, AdwBin)

void cleave_split_page_set_model    (CleaveSplitPage *self, CleaveModel *model);
void cleave_split_page_set_settings (CleaveSplitPage *self, GSettings *settings);

/* The chosen device spec: "auto", "cpu" or an "opencl:P:D" id. */
const char *cleave_split_page_get_device (CleaveSplitPage *self);

G_END_DECLS
