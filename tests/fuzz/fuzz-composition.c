/* fuzz-composition.c: a composition file (modules from one or more module
 * sets) through cleave_composition_load. */
#include "fuzz-common.h"
#include "cleave-compose.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("composition.safetensors", data, size);
  GError *error = NULL;
  CleaveComposition *c = cleave_composition_load (path, &error);

  fuzz_check_result (c != NULL, error);
  cleave_composition_free (c);
  return 0;
}
