/* main.c: the Cleave desktop application. */
#include <glib/gi18n.h>
#include <locale.h>

#include "config.h"
#include "cleave-application.h"
#include "cleave-blas.h"
#include "cleave-gui-util.h"

int
main (int argc, char **argv)
{
  g_autoptr(CleaveApplication) app = NULL;
  const char *coretype = cleave_blas_preferred_coretype ();

  /* See cleave-blas.h: OpenBLAS picks its kernels when it loads. Setting
   * OPENBLAS_CORETYPE (or CLEAVE_KEEP_BLAS_KERNELS) keeps your choice. */
  if (coretype && !g_getenv ("OPENBLAS_CORETYPE") && !g_getenv ("CLEAVE_KEEP_BLAS_KERNELS"))
    {
      g_message ("restarting with OPENBLAS_CORETYPE=%s (this CPU's AVX-512 kernels)", coretype);
      cleave_blas_reexec (coretype, argv);
    }
  cleave_gui_config_init ();
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  app = cleave_application_new ();
  return g_application_run (G_APPLICATION (app), argc, argv);
}
