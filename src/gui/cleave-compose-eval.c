/* cleave-compose-eval.c: evaluations for the Compose page, off the main
 * thread. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-compose-eval.h"
#include "cleave-gui-util.h"
#include "cleave-dataset.h"
#include "cleave-device.h"
#include "cleave-error.h"

static gboolean
eval_patched (CleaveComposeEval *job, CleaveBackend *backend, const CleaveDataset *ds, GCancellable *cancellable, GError **error)
{
  CleaveScorer *weak = cleave_scorer_new_model (g_steal_pointer (&job->weak));
  CleaveScorer *patched = cleave_scorer_new_patched (g_steal_pointer (&job->patched));
  CleaveMetrics *before = NULL;
  gboolean ok = FALSE;

  job->n_classes = cleave_scorer_n_classes (patched);
  job->class_names = g_strdupv ((char **) cleave_scorer_class_names (patched));
  before = cleave_scorer_evaluate (weak, backend, ds, NULL, 0, NULL, NULL, NULL, cancellable, error);
  if (before)
    job->after = cleave_scorer_evaluate (patched, backend, ds, NULL, 0, NULL, NULL, NULL, cancellable, error);
  if (job->after)
    {
      job->before_prf = g_new (double, (gsize) job->n_classes * 3);
      for (int c = 0; c < job->n_classes; c++)
        {
          job->before_prf[c * 3 + 0] = before->precision[c];
          job->before_prf[c * 3 + 1] = before->recall[c];
          job->before_prf[c * 3 + 2] = before->f1[c];
        }
      job->before = g_steal_pointer (&before);
      ok = TRUE;
    }
  cleave_metrics_free (before);
  cleave_scorer_free (weak);
  cleave_scorer_free (patched);
  return ok;
}

/* The dataset class serving composed class @k: same name, else the
 * module's class index in its source. */
static int
task_class (const CleaveComposition *c, int k, const CleaveDataset *ds)
{
  const CleaveComposedClass *cc = &g_array_index (c->classes, CleaveComposedClass, k);
  const CleaveModule *m = cleave_composition_module (c, k);

  for (int i = 0; ds->class_names && i < ds->n_classes; i++)
    if (g_strcmp0 (ds->class_names[i], cc->class_name) == 0)
      return i;
  return m->class_index < ds->n_classes ? m->class_index : -1;
}

static gboolean
eval_composition (CleaveComposeEval *job, CleaveBackend *backend, const CleaveDataset *ds, GCancellable *cancellable,
                  GError **error)
{
  CleaveComposition *c = job->composition;
  int K = cleave_composition_n_classes (c), n_sources = (int) c->sources->len;
  g_autofree int *classes = g_new (int, K);
  g_autofree int *task_idx = NULL;
  g_autoptr(CleaveDataset) sub = NULL;
  g_autoptr(GString) before_text = g_string_new (NULL);
  CleaveScorer *scorer;
  int n_task = 0;

  for (int k = 0; k < K; k++)
    if ((classes[k] = task_class (c, k, ds)) < 0)
      {
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                     _("The dataset has no class “%s”"),
                     g_array_index (c->classes, CleaveComposedClass, k).class_name);
        return FALSE;
      }
  sub = cleave_dataset_select_classes (ds, classes, K, error);
  if (!sub)
    return FALSE;

  /* Before: each source model on the task's images of the full dataset. */
  task_idx = g_new (int, MAX (ds->n, 1));
  for (int i = 0; i < ds->n; i++)
    for (int k = 0; k < K; k++)
      if (ds->labels[i] == classes[k])
        {
          task_idx[n_task++] = i;
          break;
        }
  job->n_classes = K;
  job->before_prf = g_new (double, (gsize) K * 3);
  for (int i = 0; i < K * 3; i++)
    job->before_prf[i] = NAN;
  g_string_append (before_text, _("Before:"));
  for (int s = 0; s < n_sources; s++)
    {
      const CleaveModuleSet *set = g_ptr_array_index (c->sources, s);
      g_autofree char *base = set->source_path ? g_path_get_basename (set->source_path) : g_strdup ("?");
      g_autoptr(GError) local = NULL;
      CleaveModel *model = set->source_path ? cleave_model_load (set->source_path, &local) : NULL;
      CleaveScorer *src;
      CleaveMetrics *m = NULL;

      if (!model || model->n_classes != ds->n_classes)
        {
          /* Translators: the source model of a module set cannot be evaluated; %s is its file name */
          g_string_append_printf (before_text, _(" %s not available;"), base);
          cleave_model_free (model);
          continue;
        }
      src = cleave_scorer_new_model (model);
      m = cleave_scorer_evaluate (src, backend, ds, task_idx, n_task, NULL, NULL, NULL, cancellable, error);
      cleave_scorer_free (src);
      if (!m)
        return FALSE;
      /* Translators: source model file name and its accuracy on the composed classes' images */
      g_string_append_printf (before_text, _(" %s %.2f %%;"), base, 100 * m->accuracy);
      for (int k = 0; k < K; k++)
        if (g_array_index (c->classes, CleaveComposedClass, k).source == s)
          {
            job->before_prf[k * 3 + 0] = m->precision[classes[k]];
            job->before_prf[k * 3 + 1] = m->recall[classes[k]];
            job->before_prf[k * 3 + 2] = m->f1[classes[k]];
          }
      cleave_metrics_free (m);
    }
  if (before_text->len && before_text->str[before_text->len - 1] == ';')
    g_string_truncate (before_text, before_text->len - 1);
  job->before_text = g_strdup (before_text->str);

  scorer = cleave_scorer_new_composition (g_steal_pointer (&job->composition));
  job->class_names = g_strdupv ((char **) cleave_scorer_class_names (scorer));
  job->after = cleave_scorer_evaluate (scorer, backend, sub, NULL, 0, NULL, NULL, NULL, cancellable, error);
  cleave_scorer_free (scorer);
  return job->after != NULL;
}

static gboolean
eval_model (CleaveComposeEval *job, CleaveBackend *backend, const CleaveDataset *ds, GCancellable *cancellable,
            GError **error)
{
  CleaveScorer *scorer = cleave_scorer_new_model (g_steal_pointer (&job->weak));

  job->n_classes = cleave_scorer_n_classes (scorer);
  job->class_names = g_strdupv ((char **) cleave_scorer_class_names (scorer));
  job->after = cleave_scorer_evaluate (scorer, backend, ds, NULL, 0, NULL, NULL, NULL, cancellable, error);
  cleave_scorer_free (scorer);
  return job->after != NULL;
}

static void
eval_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  CleaveComposeEval *job = task_data;
  g_autoptr(CleaveDataset) ds = NULL;
  g_autoptr(CleaveBackend) backend = NULL;
  GError *error = NULL;
  gboolean ok = FALSE;

  if (cleave_gui_open_test_data (job->dataset, job->device, cancellable, &ds, &backend, &error))
    switch (job->kind)
      {
      case CLEAVE_COMPOSE_EVAL_PATCHED:
        ok = eval_patched (job, backend, ds, cancellable, &error);
        break;
      case CLEAVE_COMPOSE_EVAL_COMPOSITION:
        ok = eval_composition (job, backend, ds, cancellable, &error);
        break;
      case CLEAVE_COMPOSE_EVAL_MODEL:
        ok = eval_model (job, backend, ds, cancellable, &error);
        break;
      }
  if (ok)
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

CleaveComposeEval *
cleave_compose_eval_new (CleaveComposeEvalKind kind, const char *dataset, const char *device)
{
  CleaveComposeEval *job = g_new0 (CleaveComposeEval, 1);

  job->kind = kind;
  job->dataset = g_strdup (dataset);
  job->device = g_strdup (device ? device : "auto");
  return job;
}

void
cleave_compose_eval_free (CleaveComposeEval *job)
{
  if (!job)
    return;
  cleave_composition_free (job->composition);
  cleave_patched_free (job->patched);
  cleave_model_free (job->weak);
  g_free (job->dataset);
  g_free (job->device);
  g_strfreev (job->class_names);
  cleave_metrics_free (job->after);
  cleave_metrics_free (job->before);
  g_free (job->before_prf);
  g_free (job->before_text);
  g_free (job);
}

void
cleave_compose_eval_run_async (CleaveComposeEval *job, gpointer source_object, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (source_object, cancellable, callback, user_data);

  g_task_set_source_tag (task, cleave_compose_eval_run_async);
  g_task_set_task_data (task, job, (GDestroyNotify) cleave_compose_eval_free);
  g_task_run_in_thread (task, eval_thread);
}

CleaveComposeEval *
cleave_compose_eval_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (G_IS_TASK (result), NULL);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_task_get_task_data (G_TASK (result));
}
