#include "cli-common.h"
#include "cleave-error.h"

int
cleave_cmd_compose (int argc, char **argv)
{
  g_autoptr(GError) error = g_error_new (CLEAVE_ERROR, CLEAVE_ERROR_UNSUPPORTED, "'compose' is not available yet");
  return cleave_cli_fail (g_steal_pointer (&error));
}
