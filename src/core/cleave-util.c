/* cleave-util.c: helpers shared by the core's readers and writers. */
#include "cleave-util-private.h"
#include "cleave-error.h"

#include <math.h>

gboolean
cleave_invalid_file_valist (GError **error, const char *file, const char *fmt, va_list ap)
{
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);

  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_FILE, "%s: %s", file, msg);
  return FALSE;
}

gboolean
cleave_invalid_file (GError **error, const char *file, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  cleave_invalid_file_valist (error, file, fmt, ap);
  va_end (ap);
  return FALSE;
}

void
cleave_json_add_number (JsonBuilder *b, const char *key, double v)
{
  json_builder_set_member_name (b, key);
  if (isfinite (v))
    json_builder_add_double_value (b, v);
  else
    json_builder_add_null_value (b);
}

void
cleave_json_add_string (JsonBuilder *b, const char *key, const char *v)
{
  json_builder_set_member_name (b, key);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

void
cleave_json_add_json_text (JsonBuilder *b, const char *key, const char *text)
{
  g_autoptr(JsonParser) p = json_parser_new ();
  json_builder_set_member_name (b, key);
  if (text == NULL)
    json_builder_add_null_value (b);
  else if (json_parser_load_from_data (p, text, -1, NULL) && json_parser_get_root (p))
    json_builder_add_value (b, json_node_copy (json_parser_get_root (p)));
  else
    json_builder_add_string_value (b, text);
}

#include "cleave-blas.h"
#include <unistd.h>

const char *
cleave_blas_preferred_coretype (void)
{
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init ();
  if (__builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512bw") &&
      __builtin_cpu_supports ("avx512dq") && __builtin_cpu_supports ("avx512vl"))
    return "SkylakeX";
#endif
  return NULL;
}

void
cleave_blas_reexec (const char *coretype, char **argv)
{
  g_return_if_fail (coretype != NULL && argv != NULL);
  g_setenv ("OPENBLAS_CORETYPE", coretype, TRUE);
  execv ("/proc/self/exe", argv);
  /* exec failed: carry on with the default kernels */
  g_unsetenv ("OPENBLAS_CORETYPE");
}
