/* fuzz-cifar.c: CIFAR-10 binary batches through
 * cleave_dataset_load_cifar_bin. An input whose first byte is odd is
 * instead the class-name file (batches.meta.txt) next to a valid
 * one-record batch; otherwise the input is the batch file. */
#include "fuzz-common.h"
#include "cleave-dataset.h"

#define RECORD (1 + 3 * 32 * 32)

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *batch = NULL;
  g_autofree char *meta = NULL;
  GError *error = NULL;
  CleaveDataset *ds;

  if (size > 0 && (data[0] & 1))
    {
      static guint8 record[RECORD];

      record[0] = 3;
      batch = fuzz_write ("cifar-meta/data_batch_1.bin", record, sizeof record);
      meta = fuzz_write ("cifar-meta/batches.meta.txt", data + 1, size - 1);
    }
  else
    batch = fuzz_write ("cifar/data_batch_1.bin", data, size);
  {
    const char *files[] = { batch, NULL };
    ds = cleave_dataset_load_cifar_bin (files, &error);
  }
  fuzz_check_result (ds != NULL, error);
  cleave_dataset_free (ds);
  return 0;
}
