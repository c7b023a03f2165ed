#include "cli-common.h"
#include "cleave-error.h"

int
cleave_cmd_devices (int argc, char **argv)
{
  g_autoptr(GError) error = g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "'devices' is not available yet");
  return cleave_cli_fail (g_steal_pointer (&error));
}
