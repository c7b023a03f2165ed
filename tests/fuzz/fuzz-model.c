/* fuzz-model.c: a model file (.safetensors with Cleave metadata) through
 * cleave_model_load. A model that loads must have a graph that writes out
 * as JSON and parses back. */
#include "fuzz-common.h"
#include "cleave-model.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *path = fuzz_write ("model.safetensors", data, size);
  GError *error = NULL;
  CleaveModel *m = cleave_model_load (path, &error);

  fuzz_check_result (m != NULL, error);
  if (m != NULL)
    {
      g_autofree char *json = cleave_graph_to_json (m->graph);
      CleaveGraph *again = cleave_graph_from_json (json, &error);
      fuzz_check_result (again != NULL, error);
      if (again == NULL)
        g_error ("a loaded model's graph does not parse back");
      cleave_graph_free (again);
      cleave_model_free (m);
    }
  return 0;
}
