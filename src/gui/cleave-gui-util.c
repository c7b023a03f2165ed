/* cleave-gui-util.c: helpers shared by the pages. */
#include <glib/gi18n.h>
#include <string.h>

#include "cleave-gui-util.h"

CleaveModel *
cleave_gui_copy_model (const CleaveModel *src)
{
  CleaveModel *m = cleave_model_new (cleave_graph_copy (src->graph), src->n_classes,
                                     (const char *const *) src->class_names);

  m->n_channels = src->n_channels;
  memcpy (m->mean, src->mean, sizeof m->mean);
  memcpy (m->std, src->std, sizeof m->std);
  m->path = g_strdup (src->path);
  m->sha256 = g_strdup (src->sha256);
  m->dataset = g_strdup (src->dataset);
  m->provenance_json = g_strdup (src->provenance_json);
  return m;
}

char *
cleave_gui_format_count (guint64 v)
{
  g_autofree char *digits = g_strdup_printf ("%" G_GUINT64_FORMAT, v);
  GString *out = g_string_new (NULL);
  gsize n = strlen (digits);

  for (gsize i = 0; i < n; i++)
    {
      if (i > 0 && (n - i) % 3 == 0)
        g_string_append (out, "\u2009");
      g_string_append_c (out, digits[i]);
    }
  return g_string_free (out, FALSE);
}

char *
cleave_gui_format_duration (double seconds)
{
  guint64 s = seconds > 0 ? (guint64) (seconds + 0.5) : 0;

  if (s >= 3600)
    return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u:%02u", s / 3600, (guint) (s / 60 % 60), (guint) (s % 60));
  if (s >= 60)
    return g_strdup_printf ("%" G_GUINT64_FORMAT ":%02u", s / 60, (guint) (s % 60));
  /* Translators: a duration in seconds */
  return g_strdup_printf (_("%u s"), (guint) s);
}

CleaveModuleRef *
cleave_module_ref_new (guint set_index, guint module_index)
{
  CleaveModuleRef *ref = g_new (CleaveModuleRef, 1);

  ref->set_index = set_index;
  ref->module_index = module_index;
  return ref;
}

CleaveModuleRef *
cleave_module_ref_copy (const CleaveModuleRef *ref)
{
  return g_memdup2 (ref, sizeof *ref);
}

void
cleave_module_ref_free (CleaveModuleRef *ref)
{
  g_free (ref);
}

G_DEFINE_BOXED_TYPE (CleaveModuleRef, cleave_module_ref, cleave_module_ref_copy, cleave_module_ref_free)
