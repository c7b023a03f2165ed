/* cleave-model-page.h: the open model's layers, and its evaluation. */
#pragma once

#include <adwaita.h>
#include "cleave-model.h"

G_BEGIN_DECLS

#define CLEAVE_TYPE_MODEL_PAGE (cleave_model_page_get_type ())
G_DECLARE_FINAL_TYPE (CleaveModelPage, cleave_model_page, CLEAVE, MODEL_PAGE, AdwBin)

/* @model is borrowed: the window keeps it alive while the page shows it. */
void cleave_model_page_set_model    (CleaveModelPage *self, CleaveModel *model);
void cleave_model_page_set_settings (CleaveModelPage *self, GSettings *settings);

/* The dataset spec chosen in the picker ("fashion-mnist", "mnist",
 * "cifar10" or a folder path). */
const char *cleave_model_page_get_dataset (CleaveModelPage *self);
void        cleave_model_page_set_dataset (CleaveModelPage *self, const char *spec);

/* Evaluates the model on the test split of the chosen dataset in a worker
 * thread; emits ::evaluated (gboolean success) when done. FALSE when there
 * is no model or an evaluation is already running. */
gboolean cleave_model_page_evaluate (CleaveModelPage *self);

G_END_DECLS
