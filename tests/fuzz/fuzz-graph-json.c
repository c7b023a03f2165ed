/* fuzz-graph-json.c: architecture JSON (the "cleave.graph" metadata of
 * models and modules) through cleave_graph_from_json. A graph that parses
 * must write out as JSON that parses to the same JSON again. */
#include "fuzz-common.h"
#include "cleave-graph.h"

#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *text = fuzz_strndup (data, size);
  GError *error = NULL;
  CleaveGraph *g;

  fuzz_dir ();
  g = cleave_graph_from_json (text, &error);
  fuzz_check_result (g != NULL, error);
  if (g != NULL)
    {
      g_autofree char *json = cleave_graph_to_json (g);
      g_autofree char *json2 = NULL;
      CleaveGraph *again = cleave_graph_from_json (json, &error);

      fuzz_check_result (again != NULL, error);
      if (again == NULL)
        g_error ("a parsed graph does not parse back");
      json2 = cleave_graph_to_json (again);
      if (strcmp (json, json2) != 0)
        g_error ("graph JSON changes on a second round trip");
      cleave_graph_free (again);
      cleave_graph_free (g);
    }
  return 0;
}
