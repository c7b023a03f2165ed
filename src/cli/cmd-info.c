/* cmd-info.c: `cleave-cli info MODEL` — layers, shapes, kernels, parameters, FLOPs. */
#include "cli-common.h"
#include "cleave-compose.h"
#include "cleave-safetensors.h"

#include <json-glib/json-glib.h>

static char *
shape_str (const CleaveNode *n)
{
  if (n->out_ndim == 3)
    return g_strdup_printf ("%d×%d×%d", n->out_shape[0], n->out_shape[1], n->out_shape[2]);
  return g_strdup_printf ("%d", n->out_shape[0]);
}

static guint64
node_params (const CleaveGraph *g, const CleaveNode *n)
{
  guint64 total = 0;
  for (int s = 0; s < CLEAVE_N_PARAM_SLOTS; s++)
    if (n->param[s] >= 0 && !cleave_graph_param (g, n->param[s])->is_buffer)
      total += cleave_param_numel (cleave_graph_param (g, n->param[s]));
  return total;
}

int
cleave_cmd_info (int argc, char **argv)
{
  g_autofree char *arch = NULL, *input = NULL;
  int n_classes = 0;
  gboolean json = FALSE;
  GOptionEntry entries[] = {
    { "arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Architecture of a weights-only state_dict (.pth/.pt or .safetensors): a preset or a JSON file", "SPEC" },
    { "input", 0, 0, G_OPTION_ARG_STRING, &input, "Input shape with --arch (default 1x28x28)", "CxHxW" },
    { "classes", 0, 0, G_OPTION_ARG_INT, &n_classes, "Number of classes with --arch (default 10)", "N" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "Print the architecture as JSON", NULL },
    { NULL }
  };
  g_autoptr(GOptionContext) ctx = cleave_cli_option_context_new ("MODEL — show a model's layers, shapes, kernels, parameters and FLOPs");
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveModel) model = NULL;
  CleaveGraph *g;
  int c, h, w;

  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    return cleave_cli_fail (g_steal_pointer (&error));
  if (argc != 2)
    {
      fprintf (stderr, "Usage: cleave-cli info MODEL\n");
      return 2;
    }
  if (arch == NULL && g_str_has_suffix (argv[1], ".safetensors"))
    {
      /* Compositions and patched models: a short summary (cleave-compose.h). */
      g_autoptr(CleaveSafetensors) st = cleave_safetensors_load (argv[1], NULL);
      const char *fmt = st ? cleave_safetensors_get_metadata (st, "cleave.format") : NULL;
      if (fmt && (g_str_equal (fmt, CLEAVE_COMPOSITION_FORMAT) || g_str_equal (fmt, CLEAVE_PATCHED_FORMAT)))
        {
          g_autoptr(CleaveScorer) s = cleave_scorer_load (argv[1], &error);
          int sc, sh, sw;
          if (s == NULL)
            return cleave_cli_fail (g_steal_pointer (&error));
          cleave_scorer_input_shape (s, &sc, &sh, &sw);
          printf ("%s %s\ninput    %d×%d×%d\nclasses  %d:", cleave_scorer_kind_name (s), argv[1], sc, sh, sw,
                  cleave_scorer_n_classes (s));
          for (int i = 0; i < cleave_scorer_n_classes (s); i++)
            printf (" %s%s", cleave_scorer_class_names (s)[i], i + 1 < cleave_scorer_n_classes (s) ? "," : "");
          printf ("\nFLOPs per image %.3f M\n", cleave_scorer_flops (s) / 1e6);
          return 0;
        }
    }
  model = cleave_cli_load_model (argv[1], arch, input, n_classes, &error);
  if (model == NULL)
    return cleave_cli_fail (g_steal_pointer (&error));
  g = model->graph;
  if (json)
    {
      g_autofree char *s = cleave_graph_to_json (g);
      printf ("%s\n", s);
      return 0;
    }
  cleave_graph_input_shape (g, &c, &h, &w);
  printf ("model    %s\n", argv[1]);
  if (model->sha256)
    printf ("sha256   %s\n", model->sha256);
  printf ("input    %d×%d×%d\n", c, h, w);
  printf ("classes  %d:", model->n_classes);
  for (int i = 0; i < model->n_classes; i++)
    printf (" %s%s", model->class_names[i], i + 1 < model->n_classes ? "," : "");
  printf ("\n");
  if (model->dataset)
    printf ("dataset  %s\n", model->dataset);
  printf ("\n%-4s %-16s %-14s %-14s %8s %10s %12s\n", "#", "layer", "type", "output", "kernels", "params", "FLOPs");
  for (int i = 1; i < cleave_graph_n_nodes (g); i++)
    {
      CleaveNode *n = cleave_graph_node (g, i);
      g_autofree char *shape = shape_str (n);
      char kernels[32] = "";
      if (n->op == CLEAVE_OP_CONV2D)
        g_snprintf (kernels, sizeof kernels, "%d", n->out_channels);
      printf ("%-4d %-16.16s %-14s %-14s %8s %10" G_GUINT64_FORMAT " %12" G_GUINT64_FORMAT "\n", i, n->name,
              cleave_op_kind_to_string (n->op), shape, kernels, node_params (g, n), cleave_graph_node_flops (g, i));
    }
  printf ("\nconv layers %d, kernels %d, parameters %" G_GUINT64_FORMAT ", FLOPs per image %.2f M\n",
          cleave_graph_n_mask_sites (g), cleave_graph_total_kernels (g), cleave_graph_count_params (g),
          cleave_graph_count_flops (g) / 1e6);
  for (int s = 0; s < cleave_graph_n_mask_sites (g); s++)
    {
      const CleaveMaskSite *site = cleave_graph_mask_site (g, s);
      if (site->tie != s)
        printf ("mask tie: %s shares its kernels with %s (residual add)\n",
                cleave_graph_node (g, site->conv)->name,
                cleave_graph_node (g, cleave_graph_mask_site (g, site->tie)->conv)->name);
    }
  if (model->provenance_json)
    printf ("provenance %s\n", model->provenance_json);
  return 0;
}
