/* cleave-try-image.h: one test image through the Compose page's result:
 * the composed model's per-class module scores, or the weak and patched
 * models' probabilities side by side, on a worker thread. */
#pragma once

#include <gtk/gtk.h>
#include "cleave-compose.h"

G_BEGIN_DECLS

typedef struct {
  /* inputs, owned: a composition, or a patched model and its weak model */
  CleaveComposition *composition;
  CleavePatched *patched;
  CleaveModel *weak;
  char *dataset;
  char *device;
  int index;                   /* test image; wraps around the split's size */
  /* results */
  int image;                   /* the image used */
  char *true_class;
  GdkTexture *texture;
  char **class_names;          /* n_classes */
  int n_classes;
  double *before;              /* weak model's probabilities (patched), else NULL */
  double *after;               /* composed scores or patched probabilities */
} CleaveTryImage;

void            cleave_try_image_free (CleaveTryImage *job);
/* Runs @job (taken) on a worker thread. */
void            cleave_try_image_run_async (CleaveTryImage *job, gpointer source_object, GCancellable *cancellable,
                                            GAsyncReadyCallback callback, gpointer user_data);
/* The finished job, owned by @result. (transfer none) */
CleaveTryImage *cleave_try_image_finish (GAsyncResult *result, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveTryImage, cleave_try_image_free)

G_END_DECLS
