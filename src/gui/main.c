/* main.c: the Cleave desktop application. */
#include <glib/gi18n.h>
#include <locale.h>

#include "config.h"
#include "cleave-application.h"
#include "cleave-blas.h"

int
main (int argc, char **argv)
{
  g_autoptr(CleaveApplication) app = NULL;

  cleave_blas_select_kernels (argv);
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = cleave_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
