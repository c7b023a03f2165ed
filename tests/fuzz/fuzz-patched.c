/* fuzz-patched.c: a patched model (a weak model plus modules) through
 * cleave_patched_load. */
#include "fuzz-common.h"
#include "cleave-compose.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("patched.safetensors", data, size);
  GError *error = NULL;
  CleavePatched *p = cleave_patched_load (path, &error);

  fuzz_check_result (p != NULL, error);
  cleave_patched_free (p);
  return 0;
}
