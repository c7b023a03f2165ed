/* cleave-cli.c: the command-line front end; one file per subcommand. */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <glib/gi18n.h>
#include "cli-common.h"
#include "cleave-blas.h"

typedef struct {
  const char *name;
  CleaveCliCommand run;
  const char *summary;
} Command;

static const Command commands[] = {
  { "devices", cleave_cmd_devices, "list compute devices" },
  { "info",    cleave_cmd_info,    "show a model's layers, shapes, kernels, parameters and FLOPs" },
  { "train",   cleave_cmd_train,   "train a CNN on a dataset" },
  { "eval",    cleave_cmd_eval,    "evaluate a model, composition or patched model" },
  { "split",   cleave_cmd_split,   "decompose a model into per-class modules (GradSplitter or CNNSplitter)" },
  { "modules", cleave_cmd_modules, "show a module set" },
  { "compose", cleave_cmd_compose, "compose modules into a new model" },
  { "patch",   cleave_cmd_patch,   "patch a weak model's classes with modules" },
  { "export",  cleave_cmd_export,  "export a model, module set or composition (ONNX)" },
  { "demo",    cleave_cmd_demo,    "run the main job on the shipped demo model" },
};

static void
usage (FILE *out)
{
  fprintf (out, "Usage: cleave-cli COMMAND [OPTIONS…]\n\nCommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (out, "  %-9s %s\n", commands[i].name, commands[i].summary);
  fprintf (out, "\nA MODEL is a Cleave model (.safetensors), an ONNX file (.onnx), or a weights-only state_dict\n"
                "(PyTorch .pth/.pt checkpoint or .safetensors) opened with --arch PRESET|FILE.json.\n");
  fprintf (out, "\nRun 'cleave-cli COMMAND --help' for a command's options.\n");
}

/* OpenBLAS reads OPENBLAS_CORETYPE once, when it loads: where this CPU
 * wants other kernels than the ones OpenBLAS would pick (see cleave-blas.h),
 * the program restarts itself with the variable set, and says so. Setting
 * OPENBLAS_CORETYPE (or CLEAVE_KEEP_BLAS_KERNELS) yourself keeps your choice. */
static void
select_blas_kernels (char **argv)
{
  const char *coretype = cleave_blas_preferred_coretype ();

  if (coretype == NULL || g_getenv ("OPENBLAS_CORETYPE") || g_getenv ("CLEAVE_KEEP_BLAS_KERNELS"))
    return;
  fprintf (stderr, "cleave-cli: restarting with OPENBLAS_CORETYPE=%s (this CPU's AVX-512 kernels)\n", coretype);
  cleave_blas_reexec (coretype, argv);
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;

  select_blas_kernels (argv);
#ifdef __GLIBC__
  /* A split allocates and frees the same large scratch buffers on every
   * batch; glibc would hand them back to the kernel each time (mmap/trim)
   * and fault them in again. Measured: a third fewer page faults and about
   * 20% less CPU time for the search. */
  mallopt (M_MMAP_THRESHOLD, 256 << 20);
  mallopt (M_TRIM_THRESHOLD, 512 << 20);
#endif
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  if (argc < 2 || g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h") || g_str_equal (argv[1], "help"))
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? 2 : 0;
    }
  if (g_str_equal (argv[1], "--version"))
    {
      printf ("cleave-cli %s\n", PACKAGE_VERSION);
      return 0;
    }
  if (!cleave_cli_config_init (&error))
    {
      fprintf (stderr, "cleave-cli: %s\n", error->message);
      return 2;
    }
  for (gsize i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (argv[1], commands[i].name))
      return commands[i].run (argc - 1, argv + 1);
  fprintf (stderr, "cleave-cli: unknown command '%s'\n\n", argv[1]);
  usage (stderr);
  return 2;
}
