/* fuzz-common.c: the private folder and result checks of the fuzz harnesses. */
#include "fuzz-common.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static void
remove_tree (const char *path)
{
  GDir *d = g_dir_open (path, 0, NULL);
  const char *name;

  if (d != NULL)
    {
      while ((name = g_dir_read_name (d)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
            remove_tree (child);
          else
            g_unlink (child);
        }
      g_dir_close (d);
    }
  g_rmdir (path);
}

static void
remove_dir (void)
{
  if (dir != NULL)
    remove_tree (dir);
}

/* Criticals (a failed g_return_if_fail) and errors abort, so that libFuzzer
 * and the sanitizers see them as crashes: GLib's own fatal path raises
 * SIGTRAP, which libFuzzer does not catch. */
static GLogWriterOutput
fatal_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
  g_log_writer_standard_streams (level, fields, n_fields, user_data);
  if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
    abort ();
  return G_LOG_WRITER_HANDLED;
}

const char *
fuzz_dir (void)
{
  if (dir == NULL)
    {
      /* Before anything asks GLib for the temporary folder: it caches the
       * answer, and it must be this folder from now on. */
      const char *base = getenv ("TMPDIR");
      char *tmpl = g_build_filename (base && *base ? base : "/tmp", "cleave-fuzz-XXXXXX", NULL);

      if (mkdtemp (tmpl) == NULL)
        {
          perror (tmpl);
          abort ();
        }
      dir = tmpl;
      g_setenv ("TMPDIR", dir, TRUE);
      atexit (remove_dir);
      g_log_set_writer_func (fatal_writer, NULL, NULL);
    }
  return dir;
}

char *
fuzz_write (const char *relpath, const guint8 *data, gsize size)
{
  char *path = g_build_filename (fuzz_dir (), relpath, NULL);
  g_autofree char *parent = g_path_get_dirname (path);
  FILE *f;

  if (g_mkdir_with_parents (parent, 0700) != 0 || (f = fopen (path, "wb")) == NULL)
    {
      perror (path);
      abort ();
    }
  if ((size > 0 && fwrite (data, 1, size, f) != size) || fclose (f) != 0)
    {
      perror (path);
      abort ();
    }
  return path;
}

char *
fuzz_strndup (const guint8 *data, gsize size)
{
  char *s = g_malloc (size + 1);
  if (size > 0)
    memcpy (s, data, size);
  s[size] = '\0';
  return s;
}

void
fuzz_check_result (gboolean have_result, GError *error)
{
  if (have_result && error != NULL)
    g_error ("a result and an error (%s)", error->message);
  if (!have_result && (error == NULL || error->message == NULL || error->message[0] == '\0'))
    g_error ("no result and no error message");
  if (error != NULL && getenv ("CLEAVE_FUZZ_VERBOSE") != NULL)
    fprintf (stderr, "refused: %s\n", error->message);
  g_clear_error (&error);
}
