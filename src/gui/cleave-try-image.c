/* cleave-try-image.c: scoring one test image for the Compose page. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-try-image.h"
#include "cleave-dataset.h"
#include "cleave-gui-util.h"
#include "cleave-device.h"

void
cleave_try_image_free (CleaveTryImage *job)
{
  if (!job)
    return;
  cleave_composition_free (job->composition);
  cleave_patched_free (job->patched);
  cleave_model_free (job->weak);
  g_free (job->dataset);
  g_free (job->device);
  g_free (job->true_class);
  g_clear_object (&job->texture);
  g_strfreev (job->class_names);
  g_free (job->before);
  g_free (job->after);
  g_free (job);
}

/* The image as an RGB texture (grey images repeated in each channel). */
static GdkTexture *
image_texture (const CleaveDataset *ds, int i)
{
  gsize plane = (gsize) ds->h * ds->w;
  const guint8 *px = ds->pixels + (gsize) i * ds->c * plane;
  g_autofree guint8 *rgb = g_new (guint8, plane * 3);
  g_autoptr(GBytes) bytes = NULL;

  for (gsize p = 0; p < plane; p++)
    for (int k = 0; k < 3; k++)
      rgb[p * 3 + k] = px[(ds->c >= 3 ? k : 0) * plane + p];
  bytes = g_bytes_new_take (g_steal_pointer (&rgb), plane * 3);
  return gdk_memory_texture_new (ds->w, ds->h, GDK_MEMORY_R8G8B8, bytes, (gsize) ds->w * 3);
}

static double *
scores_of (CleaveScorer *scorer, CleaveBackend *backend, const CleaveDataset *ds, int i, gboolean softmax,
           GCancellable *cancellable, GError **error)
{
  int n = cleave_scorer_n_classes (scorer);
  g_autofree float *out = g_new (float, n);
  double *v, max = -INFINITY, sum = 0;

  if (!cleave_scorer_scores (scorer, backend, ds, &i, 1, out, cancellable, error))
    return NULL;
  v = g_new (double, n);
  for (int c = 0; c < n; c++)
    max = MAX (max, out[c]);
  for (int c = 0; c < n; c++)
    sum += (v[c] = softmax ? exp (out[c] - max) : out[c]);
  for (int c = 0; softmax && c < n; c++)
    v[c] /= sum;
  return v;
}

static void
try_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  CleaveTryImage *job = task_data;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  CleaveScorer *result = NULL, *weak = NULL;
  GError *error = NULL;

  if (cleave_gui_open_test_data (job->dataset, job->device, cancellable, &ds, &backend, &error))
    {
      job->image = ((job->index % ds->n) + ds->n) % ds->n;
      job->true_class = g_strdup (ds->class_names ? ds->class_names[ds->labels[job->image]] : "?");
      job->texture = image_texture (ds, job->image);
      result = job->patched ? cleave_scorer_new_patched (g_steal_pointer (&job->patched))
                            : cleave_scorer_new_composition (g_steal_pointer (&job->composition));
      job->n_classes = cleave_scorer_n_classes (result);
      job->class_names = g_strdupv ((char **) cleave_scorer_class_names (result));
      job->after = scores_of (result, backend, ds, job->image, FALSE, cancellable, &error);
      if (job->after && job->weak)
        {
          weak = cleave_scorer_new_model (g_steal_pointer (&job->weak));
          job->before = scores_of (weak, backend, ds, job->image, TRUE, cancellable, &error);
        }
    }
  cleave_scorer_free (result);
  cleave_scorer_free (weak);
  if (error)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

void
cleave_try_image_run_async (CleaveTryImage *job, gpointer source_object, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (source_object, cancellable, callback, user_data);

  g_task_set_source_tag (task, cleave_try_image_run_async);
  g_task_set_task_data (task, job, (GDestroyNotify) cleave_try_image_free);
  g_task_run_in_thread (task, try_thread);
}

CleaveTryImage *
cleave_try_image_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (G_IS_TASK (result), NULL);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_task_get_task_data (G_TASK (result));
}
