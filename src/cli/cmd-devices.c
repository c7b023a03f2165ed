/* cmd-devices.c: `cleave-cli devices` — every device a backend can run on. */
#include "cli-common.h"

int
cleave_cmd_devices (int argc, char **argv)
{
  g_autoptr(GPtrArray) list = cleave_device_list ();
  g_autoptr(GError) error = NULL;
  g_autoptr(CleaveBackend) def = NULL;

  if (argc > 1 && (g_str_equal (argv[1], "--help") || g_str_equal (argv[1], "-h")))
    {
      printf ("Usage: cleave-cli devices\n\nLists the compute devices; pass an index, id or name to --device.\n"
              "The default is the first OpenCL GPU (most compute units × clock), else cpu.\n");
      return 0;
    }
  printf ("%-3s %-12s %-6s %-5s %8s %10s  %s\n", "#", "id", "type", "CUs", "MHz", "memory", "name (platform)");
  for (guint i = 0; i < list->len; i++)
    {
      CleaveDeviceInfo *d = list->pdata[i];
      printf ("%-3u %-12s %-6s %-5u %8u %8.1fG  %s (%s)\n", i, d->id, d->type, d->compute_units, d->max_clock_mhz,
              d->global_mem / 1073741824.0, d->name, d->platform);
    }
  def = cleave_cli_open_device (NULL, &error);
  if (def)
    printf ("default: %s\n", def->name);
  else
    printf ("default: none (%s)\n", error->message);
  return 0;
}
