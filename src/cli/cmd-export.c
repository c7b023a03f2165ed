/* cmd-export.c: `cleave-cli export --onnx IN -o FILE` for models, module
 * sets, compositions and patched models (opset 13). */
#include "cli-common.h"
#include "cleave-compose.h"
#include "cleave-onnx.h"
#include "cleave-safetensors.h"
#include "cleave-error.h"

int
cleave_cmd_export (int argc, char **argv)
{
  g_autofree char *output = NULL, *arch = NULL;
  gboolean onnx = FALSE;
  GOptionEntry entries[] = {
    { "onnx", 0, 0, G_OPTION_ARG_NONE, &onnx, "Write ONNX (opset 13; the only format for now)", NULL },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "File to write (required)", "FILE" },
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture of a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL|MODULES|COMPOSED|PATCHED — export as ONNX");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveCliOutput) claim = NULL;
  g_autoptr(CleaveSafetensors) st = NULL;
  const char *fmt = NULL;
  const char *what;
  gboolean ok;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc != 2 || output == NULL || !onnx)
    {
      fprintf (stderr, "Usage: cleave-cli export --onnx MODEL|MODULES|COMPOSED|PATCHED -o FILE\n");
      return 2;
    }
  if ((claim = cleave_cli_output_claim (output, (const char *const *) argv + 1, 1, &error)) == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  if (arch == NULL && !g_str_has_suffix (argv[1], ".onnx"))
    {
      if ((st = cleave_safetensors_load (argv[1], &error)) == NULL)
        return cleave_cli_fail (g_steal_pointer (&error));
      fmt = cleave_safetensors_get_metadata (st, "cleave.format");
    }
  if (fmt && g_str_equal (fmt, "cleave-modules/1"))
    {
      g_autoptr(CleaveModuleSet) set = cleave_module_set_load (argv[1], &error);
      what = "module set (one score output per module)";
      ok = set && cleave_export_module_set_onnx (set, output, &error);
    }
  else if (fmt && g_str_equal (fmt, CLEAVE_COMPOSITION_FORMAT))
    {
      g_autoptr(CleaveComposition) c = cleave_composition_load (argv[1], &error);
      what = "composition (branches, Concat, ArgMax)";
      ok = c && cleave_export_composition_onnx (c, output, &error);
    }
  else if (fmt && g_str_equal (fmt, CLEAVE_PATCHED_FORMAT))
    {
      g_autoptr(CleavePatched) p = cleave_patched_load (argv[1], &error);
      what = "patched model (softmax, min–max Sub/Div, ArgMax)";
      ok = p && cleave_export_patched_onnx (p, output, &error);
    }
  else
    {
      g_autoptr(CleaveModel) m = cleave_cli_load_model (argv[1], arch, NULL, 0, &error);
      what = "model";
      ok = m && cleave_onnx_export_graph (m->graph, m->mean, m->std, output, &error);
    }
  if (!ok)
    return cleave_cli_fail (g_steal_pointer (&error));
  printf ("wrote %s: %s, ONNX opset 13, input raw [0,1] pixels\n", output, what);
  return 0;
}
