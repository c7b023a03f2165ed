/* fuzz-image.c: one image file as the only entry of an ImageFolder
 * (root/<class>/<file>) through cleave_dataset_load_image_folder, which
 * decodes it with gdk-pixbuf. */
#include "fuzz-common.h"
#include "cleave-dataset.h"

#include <glib/gstdio.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* gdk-pixbuf goes by content, the folder listing by extension */
  gboolean jpeg = size >= 2 && data[0] == 0xff && data[1] == 0xd8;
  g_autofree char *path = fuzz_write (jpeg ? "images/cat/0.jpg" : "images/cat/0.png", data, size);
  g_autofree char *root = g_build_filename (fuzz_dir (), "images", NULL);
  GError *error = NULL;
  CleaveDataset *ds = cleave_dataset_load_image_folder (root, NULL, &error);

  fuzz_check_result (ds != NULL, error);
  cleave_dataset_free (ds);
  g_unlink (path);   /* the next input may take the other name */
  return 0;
}
