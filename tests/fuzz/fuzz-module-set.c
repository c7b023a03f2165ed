/* fuzz-module-set.c: a module set (cleave-modules/1) through
 * cleave_module_set_load. */
#include "fuzz-common.h"
#include "cleave-module.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("set.modules", data, size);
  GError *error = NULL;
  CleaveModuleSet *set = cleave_module_set_load (path, &error);

  fuzz_check_result (set != NULL, error);
  cleave_module_set_free (set);
  return 0;
}
