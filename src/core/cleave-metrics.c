/* cleave-metrics.c: confusion matrices, P/R/F1, and batched evaluation. */
#include "cleave-metrics.h"
#include "cleave-error.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

CleaveMetrics *
cleave_metrics_new (int n_classes)
{
  CleaveMetrics *m = g_new0 (CleaveMetrics, 1);
  m->n_classes = n_classes;
  m->confusion = g_new0 (guint, (gsize) n_classes * n_classes);
  m->precision = g_new0 (double, n_classes);
  m->recall = g_new0 (double, n_classes);
  m->f1 = g_new0 (double, n_classes);
  m->loss = NAN;
  return m;
}

void
cleave_metrics_free (CleaveMetrics *m)
{
  if (m == NULL)
    return;
  g_free (m->confusion);
  g_free (m->precision);
  g_free (m->recall);
  g_free (m->f1);
  g_free (m);
}

void
cleave_metrics_add (CleaveMetrics *m, int truth, int predicted)
{
  if (truth < 0 || truth >= m->n_classes || predicted < 0 || predicted >= m->n_classes)
    return;
  m->confusion[truth * m->n_classes + predicted]++;
  m->total++;
  if (truth == predicted)
    m->correct++;
}

int
cleave_metrics_add_outputs (CleaveMetrics *m, int truth, const float *outputs, int n)
{
  int best = 0;
  gboolean finite = TRUE;
  for (int k = 0; k < n; k++)
    {
      finite &= isfinite (outputs[k]);
      if (outputs[k] > outputs[best])
        best = k;
    }
  m->nonfinite += !finite;
  cleave_metrics_add (m, truth, best);
  return best;
}

void
cleave_metrics_finish (CleaveMetrics *m)
{
  int n = m->n_classes;
  double f1_sum = 0;
  m->accuracy = m->total ? (double) m->correct / m->total : 0.0;
  for (int c = 0; c < n; c++)
    {
      guint tp = m->confusion[c * n + c], col = 0, row = 0;
      for (int k = 0; k < n; k++)
        {
          col += m->confusion[k * n + c];
          row += m->confusion[c * n + k];
        }
      m->precision[c] = col ? (double) tp / col : 0.0;
      m->recall[c] = row ? (double) tp / row : 0.0;
      m->f1[c] = m->precision[c] + m->recall[c] > 0
                   ? 2 * m->precision[c] * m->recall[c] / (m->precision[c] + m->recall[c]) : 0.0;
      f1_sum += m->f1[c];
    }
  m->macro_f1 = n ? f1_sum / n : 0.0;
}

char *
cleave_metrics_to_json (const CleaveMetrics *m, const char *const *class_names)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  int n = m->n_classes;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "images");
  json_builder_add_int_value (b, m->total);
  json_builder_set_member_name (b, "accuracy");
  json_builder_add_double_value (b, m->accuracy);
  json_builder_set_member_name (b, "macro_f1");
  json_builder_add_double_value (b, m->macro_f1);
  json_builder_set_member_name (b, "classes");
  json_builder_begin_array (b);
  for (int c = 0; c < n; c++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      if (class_names && class_names[c])
        json_builder_add_string_value (b, class_names[c]);
      else
        json_builder_add_int_value (b, c);
      json_builder_set_member_name (b, "precision");
      json_builder_add_double_value (b, m->precision[c]);
      json_builder_set_member_name (b, "recall");
      json_builder_add_double_value (b, m->recall[c]);
      json_builder_set_member_name (b, "f1");
      json_builder_add_double_value (b, m->f1[c]);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "confusion");
  json_builder_begin_array (b);
  for (int r = 0; r < n; r++)
    {
      json_builder_begin_array (b);
      for (int c = 0; c < n; c++)
        json_builder_add_int_value (b, m->confusion[r * n + c]);
      json_builder_end_array (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  json_generator_set_pretty (gen, TRUE);
  return json_generator_to_data (gen, NULL);
}

CleaveMetrics *
cleave_evaluate (CleaveModel *model, CleaveNet *net, const CleaveDataset *ds, const int *indices, int n,
                 int batch, float **logits_out, CleaveProgressFunc progress, gpointer user_data,
                 GCancellable *cancellable, GError **error)
{
  int n_out = cleave_graph_n_outputs (model->graph);
  int c, h, w;
  g_autofree float *x = NULL, *y = NULL, *out = NULL;
  g_autofree int *idx = NULL;
  float *logits = NULL;
  CleaveMetrics *m;
  gint64 start = g_get_monotonic_time ();
  double loss_sum = 0;

  cleave_graph_input_shape (model->graph, &c, &h, &w);
  if (ds->c != c || ds->h != h || ds->w != w)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset '%s' has %d×%d×%d images, the model expects %d×%d×%d",
                   ds->name, ds->c, ds->h, ds->w, c, h, w);
      return NULL;
    }
  if (ds->n_classes > n_out)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "dataset '%s' has %d classes, the model only %d outputs", ds->name, ds->n_classes, n_out);
      return NULL;
    }
  if (indices == NULL)
    {
      n = ds->n;
      idx = g_new (int, n);
      for (int i = 0; i < n; i++)
        idx[i] = i;
      indices = idx;
    }
  if (batch < 1)
    batch = 256;
  x = g_new (float, (gsize) batch * c * h * w);
  y = g_new (float, batch);
  out = g_new (float, (gsize) batch * n_out);
  if (logits_out)
    logits = g_new (float, (gsize) MAX (n, 1) * n_out);
  m = cleave_metrics_new (n_out);
  for (int start_i = 0; start_i < n; start_i += batch)
    {
      int b = MIN (batch, n - start_i);
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto fail;
      cleave_dataset_fill_batch (ds, indices + start_i, b, model->mean, model->std, NULL, NULL, x, y);
      if (!cleave_net_infer (net, x, b, error) || !cleave_net_download_output (net, out, error))
        goto fail;
      for (int i = 0; i < b; i++)
        {
          const float *row = out + (gsize) i * n_out;
          int truth = (int) y[i], best = cleave_metrics_add_outputs (m, truth, row, n_out);
          double mx = row[best], se = 0;
          for (int k = 0; k < n_out; k++)
            se += exp (row[k] - mx);
          loss_sum += log (se) + mx - row[truth];
        }
      if (logits)
        memcpy (logits + (gsize) start_i * n_out, out, sizeof (float) * b * n_out);
      if (progress)
        {
          CleaveProgress p = { 0 };
          double secs = (g_get_monotonic_time () - start) / 1e6;
          p.fraction = (double) (start_i + b) / n;
          p.phase = CLEAVE_PHASE_EVALUATE;
          p.loss = p.val_accuracy = p.krr = NAN;
          p.accuracy = m->total ? (double) m->correct / m->total : NAN;
          p.images_per_s = secs > 0 ? (start_i + b) / secs : 0;
          progress (&p, user_data);
        }
    }
  cleave_metrics_finish (m);
  m->loss = n ? loss_sum / n : NAN;
  if (logits_out)
    *logits_out = logits;
  return m;

fail:
  g_free (logits);
  cleave_metrics_free (m);
  return NULL;
}

CleaveMetrics *
cleave_model_evaluate (CleaveModel *model, CleaveBackend *backend, const CleaveDataset *ds,
                       CleaveProgressFunc progress, gpointer user_data, GCancellable *cancellable, GError **error)
{
  CleaveNet *net = cleave_net_new (model->graph, backend, error);
  CleaveMetrics *m;
  if (net == NULL)
    return NULL;
  m = cleave_evaluate (model, net, ds, NULL, 0, 256, NULL, progress, user_data, cancellable, error);
  cleave_net_free (net);
  return m;
}

const char *
cleave_phase_name (CleavePhase phase)
{
  static const char *const names[] = {
    [CLEAVE_PHASE_LOAD] = "load", [CLEAVE_PHASE_TRAIN] = "train", [CLEAVE_PHASE_VALIDATE] = "validate",
    [CLEAVE_PHASE_EVALUATE] = "evaluate", [CLEAVE_PHASE_HEADS] = "heads", [CLEAVE_PHASE_MASKS] = "masks",
    [CLEAVE_PHASE_REFIT] = "refit", [CLEAVE_PHASE_IMPORTANCE] = "importance",
    [CLEAVE_PHASE_SENSITIVITY] = "sensitivity", [CLEAVE_PHASE_GENERATION] = "generation",
    [CLEAVE_PHASE_TEST] = "test",
  };
  g_return_val_if_fail ((guint) phase < G_N_ELEMENTS (names), "?");
  return names[phase];
}
