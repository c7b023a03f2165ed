/* cleave-compose-results.c: the Compose page's result charts. */
#include <glib/gi18n.h>
#include <math.h>

#include "cleave-compose-results.h"
#include "cleave-gui-util.h"

char *
cleave_compose_headline (double before, double after)
{
  if (!isfinite (before))
    return g_strdup_printf ("%.1f %%", 100 * after);
  /* Translators: accuracy before → after, and the change in percentage points */
  return g_strdup_printf (_("%.1f %% → %.1f %% (%+.1f)"), 100 * before, 100 * after, 100 * (after - before));
}

static void
show_confusion (CleaveChartView *view, const char *title, const CleaveMetrics *m, const char *const *names)
{
  g_autofree double *values = NULL;

  if (!m)
    {
      cleave_chart_view_set_chart (view, CLEAVE_CHART_HEAT_MAP, NULL);
      return;
    }
  values = g_new (double, (gsize) m->n_classes * m->n_classes);
  for (int i = 0; i < m->n_classes * m->n_classes; i++)
    values[i] = m->confusion[i];
  {
    CleaveHeatMap chart = {
      .title = title,
      .row_title = _("true"),
      .col_title = _("predicted"),
      .row_labels = names,
      .n_rows = m->n_classes,
      .col_labels = names,
      .n_cols = m->n_classes,
      .values = values,
      .row_normalize = TRUE,
      .value_format = m->n_classes <= 12 ? "%.0f" : NULL,
    };
    cleave_chart_view_set_chart (view, CLEAVE_CHART_HEAT_MAP, &chart);
  }
}

/* One bar pair per class: F1 before and after; the category label carries
 * the signed change, and a star on the patched classes. */
static void
show_compare (CleaveChartView *view, const CleaveComposeEval *job, const gboolean *patched)
{
  int n = job->n_classes;
  const char *const series[] = { _("F1 before"), _("F1 after"), NULL };
  g_autofree double *values = g_new (double, (gsize) MAX (n, 1) * 2);
  g_autoptr(GPtrArray) labels = g_ptr_array_new_with_free_func (g_free);

  for (int c = 0; c < n; c++)
    {
      double before = job->before ? job->before->f1[c] : job->before_prf ? job->before_prf[c * 3 + 2] : NAN;
      double after = job->after->f1[c];
      const char *name = job->class_names && job->class_names[c] ? job->class_names[c] : "?";
      g_autofree char *delta = isfinite (before) ? g_strdup_printf (" %+.1f", 100 * (after - before)) : g_strdup ("");

      values[c * 2 + 0] = before;
      values[c * 2 + 1] = after;
      g_ptr_array_add (labels, g_strdup_printf ("%s%s%s", patched && patched[c] ? "★ " : "", name, delta));
    }
  g_ptr_array_add (labels, NULL);
  {
    CleaveBarChart chart = {
      .title = _("Per-class F1 before and after (★ patched; change in points)"),
      .categories = (const char *const *) labels->pdata,
      .n_categories = n,
      .series_names = series,
      .n_series = 2,
      .values = values,
      .y_max = 1.0,
    };
    cleave_chart_view_set_chart (view, CLEAVE_CHART_BARS, &chart);
  }
}

char *
cleave_compose_results_show (const CleaveComposeEval *job, const gboolean *patched, CleaveChartView *compare,
                             CleaveChartView *before_view, CleaveChartView *after_view)
{
  const char *const *names = (const char *const *) job->class_names;
  gboolean patch = job->kind == CLEAVE_COMPOSE_EVAL_PATCHED;

  show_compare (compare, job, patched);
  if (patch)
    show_confusion (before_view, _("Weak model: confusion (row-normalised)"), job->before, names);
  else
    cleave_gui_show_prf_chart (before_view, _("Source models on the composed classes"), names, job->n_classes,
                               job->before_prf);
  show_confusion (after_view, patch ? _("Patched model: confusion (row-normalised)")
                                    : _("Composed model: confusion (row-normalised)"), job->after, names);
  return cleave_compose_headline (job->before ? job->before->accuracy : NAN, job->after->accuracy);
}
