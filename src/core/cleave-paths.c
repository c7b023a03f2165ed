/* cleave-paths.c: where the programs find the data files installed with them. */
#include "config.h"
#include "cleave-paths.h"

#include <string.h>

static gboolean
path_is_under (const char *path, const char *dir)
{
  gsize n = strlen (dir);

  return strncmp (path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

char **
cleave_data_dirs (void)
{
  g_autoptr(GStrvBuilder) dirs = g_strv_builder_new ();
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);
  g_autofree char *exe_dir = exe ? g_path_get_dirname (exe) : NULL;

  /* A plain string comparison: the installed programs never touch the build
   * tree's path, not even to resolve it. */
  if (exe_dir && path_is_under (exe_dir, BUILD_ROOT))
    {
      g_strv_builder_add (dirs, SOURCE_DATADIR);
      return g_strv_builder_end (dirs);
    }
  if (exe_dir && g_str_has_suffix (exe_dir, BINDIR) && strlen (exe_dir) > strlen (BINDIR))
    {
      g_autofree char *root = g_strndup (exe_dir, strlen (exe_dir) - strlen (BINDIR));
      g_autofree char *staged = g_strconcat (root, PKGDATADIR, NULL);

      g_strv_builder_add (dirs, staged);
    }
  g_strv_builder_add (dirs, PKGDATADIR);
  return g_strv_builder_end (dirs);
}

char *
cleave_find_data_file (const char *relative)
{
  g_auto(GStrv) dirs = NULL;

  g_return_val_if_fail (relative != NULL, NULL);
  dirs = cleave_data_dirs ();
  for (int i = 0; dirs[i]; i++)
    {
      g_autofree char *path = g_build_filename (dirs[i], relative, NULL);

      if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
        return g_steal_pointer (&path);
    }
  return NULL;
}
