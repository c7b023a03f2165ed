/* fuzz-replay.c: main() for the harnesses when they are not built with
 * libFuzzer. Each argument is an input file or a folder of them (not
 * recursive, in name order); each goes once through LLVMFuzzerTestOneInput.
 * With ASan/UBSan (dev.sh test) a finding aborts the replay. */
#include "fuzz-common.h"

#include <stdio.h>
#include <string.h>

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static gboolean
replay_file (const char *path)
{
  g_autofree char *data = NULL;
  g_autoptr (GError) error = NULL;
  gsize len;

  if (!g_file_get_contents (path, &data, &len, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return FALSE;
    }
  LLVMFuzzerTestOneInput ((const uint8_t *) data, len);
  return TRUE;
}

int
main (int argc, char **argv)
{
  int n = 0;

  fuzz_dir ();
  for (int i = 1; i < argc; i++)
    {
      g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_free);

      if (g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          g_autoptr (GError) error = NULL;
          GDir *d = g_dir_open (argv[i], 0, &error);
          const char *name;

          if (d == NULL)
            {
              fprintf (stderr, "%s\n", error->message);
              return 1;
            }
          while ((name = g_dir_read_name (d)) != NULL)
            {
              char *path = g_build_filename (argv[i], name, NULL);
              if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
                g_ptr_array_add (files, path);
              else
                g_free (path);
            }
          g_dir_close (d);
          g_ptr_array_sort (files, cmp_str);
        }
      else
        g_ptr_array_add (files, g_strdup (argv[i]));
      for (guint k = 0; k < files->len; k++)
        {
          if (!replay_file (files->pdata[k]))
            return 1;
          n++;
        }
    }
  if (n == 0)
    {
      fprintf (stderr, "no inputs to replay\n");
      return 1;
    }
  printf ("%d inputs replayed\n", n);
  return 0;
}
