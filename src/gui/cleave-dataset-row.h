/* cleave-dataset-row.h: a combo row choosing a dataset: Fashion-MNIST,
 * MNIST, CIFAR-10 or an ImageFolder chosen with a folder chooser. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define CLEAVE_TYPE_DATASET_ROW (cleave_dataset_row_get_type ())
G_DECLARE_FINAL_TYPE (CleaveDatasetRow, cleave_dataset_row, CLEAVE, DATASET_ROW, AdwComboRow)

/* The dataset spec for cleave_dataset_load(): a name or a folder path. */
const char *cleave_dataset_row_get_spec (CleaveDatasetRow *self);
void        cleave_dataset_row_set_spec (CleaveDatasetRow *self, const char *spec);

G_END_DECLS
