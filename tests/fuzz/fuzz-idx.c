/* fuzz-idx.c: IDX files (MNIST's format, raw or gzip) through
 * cleave_dataset_load_idx, once as the images file (with a valid two-label
 * file) and once as the labels file (with a valid two-image file). */
#include "fuzz-common.h"
#include "cleave-dataset.h"

static const guint8 two_labels[] = { 0, 0, 8, 1, 0, 0, 0, 2, 3, 7 };
static const guint8 two_images[] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 10, 20, 30, 40 };

static void
load (const char *images, const char *labels)
{
  GError *error = NULL;
  CleaveDataset *ds = cleave_dataset_load_idx (images, labels, &error);

  fuzz_check_result (ds != NULL, error);
  cleave_dataset_free (ds);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static char *good_images, *good_labels;
  g_autofree char *path = fuzz_write ("idx/input-idx-ubyte", data, size);

  if (good_images == NULL)
    {
      good_images = fuzz_write ("idx/good-images-idx3-ubyte", two_images, sizeof two_images);
      good_labels = fuzz_write ("idx/good-labels-idx1-ubyte", two_labels, sizeof two_labels);
    }
  load (path, good_labels);
  load (good_images, path);
  return 0;
}
