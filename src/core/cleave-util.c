/* cleave-util.c: helpers shared by the core's readers and writers. */
#include "cleave-util-private.h"
#include "cleave-file.h"
#include "cleave-error.h"

#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <float.h>
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

gboolean
cleave_check_option (GError **error, const char *name, double v,
                     double lo, gboolean lo_open, double hi, gboolean hi_open)
{
  if (isfinite (v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi))
    return TRUE;
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "option %s must be a number in %c%g, %g%c, not %g",
               name, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', v);
  return FALSE;
}

const char *
cleave_json_string (JsonNode *n)
{
  return n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING ? json_node_get_string (n) : NULL;
}

gboolean
cleave_json_integers_fit (const char *s, gsize len, char **bad)
{
  gboolean in_string = FALSE;

  for (gsize i = 0; i < len; i++)
    {
      char c = s[i];
      gsize start = i, d0, d1;
      gboolean neg;

      if (in_string)
        {
          if (c == '\\')
            i++;
          else if (c == '"')
            in_string = FALSE;
          continue;
        }
      if (c == '"')
        {
          in_string = TRUE;
          continue;
        }
      if (!(c == '-' || g_ascii_isdigit (c)) || (i > 0 && (g_ascii_isalnum (s[i - 1]) || s[i - 1] == '.')))
        continue;
      neg = c == '-';
      d0 = neg ? i + 1 : i;
      while (d0 < len && s[d0] == '0')
        d0++;
      for (d1 = d0; d1 < len && g_ascii_isdigit (s[d1]); d1++)
        ;
      i = d1 > 0 ? d1 - 1 : 0;
      if (d1 < len && (s[d1] == '.' || s[d1] == 'e' || s[d1] == 'E'))
        {
          /* a real number: json-glib reads it as a double */
          while (i + 1 < len && (g_ascii_isalnum (s[i + 1]) || s[i + 1] == '.' || s[i + 1] == '-' || s[i + 1] == '+'))
            i++;
          continue;
        }
      if (d1 - d0 > 19 || (d1 - d0 == 19 && strncmp (s + d0, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0))
        {
          if (bad)
            *bad = g_strndup (s + start, MIN (d1 - start, 40));
          return FALSE;
        }
    }
  return TRUE;
}

JsonNode *
cleave_json_root (JsonParser *p, JsonNodeType type)
{
  JsonNode *root = json_parser_get_root (p);
  return root != NULL && JSON_NODE_TYPE (root) == type ? root : NULL;
}

float
cleave_json_float (JsonNode *n)
{
  GType t = n && JSON_NODE_HOLDS_VALUE (n) ? json_node_get_value_type (n) : G_TYPE_INVALID;
  double d;
  if (t != G_TYPE_DOUBLE && t != G_TYPE_INT64)
    return NAN;
  d = json_node_get_double (n);
  return fabs (d) > FLT_MAX ? (float) copysign (INFINITY, d) : (float) d;
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

static char *
temp_prefix (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  return g_strdup_printf (".%s.tmp-", base);
}

gboolean
cleave_file_replace (const char *path, const void *data, gsize len, int mode, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path), *prefix = temp_prefix (path);
  g_autofree char *name = g_strconcat (prefix, "XXXXXX", NULL);
  g_autofree char *tmp = g_build_filename (dir, name, NULL);
  const guint8 *p = data;
  int fd, err = 0;

  fd = g_mkstemp_full (tmp, O_RDWR | O_CLOEXEC, mode);
  if (fd < 0)
    {
      err = errno;
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: cannot write: %s", path, g_strerror (err));
      return FALSE;
    }
  while (len > 0 && err == 0)
    {
      gssize n = write (fd, p, len);
      if (n < 0 && errno != EINTR)
        err = errno;
      else if (n > 0)
        p += n, len -= (gsize) n;
    }
  if (err == 0 && fsync (fd) != 0)
    err = errno;
  if (close (fd) != 0 && err == 0)
    err = errno;
  if (err == 0 && g_rename (tmp, path) != 0)
    err = errno;
  if (err != 0)
    {
      g_unlink (tmp);
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_IO, "%s: cannot write: %s", path, g_strerror (err));
      return FALSE;
    }
  return TRUE;
}

int
cleave_file_remove_stale_temps (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path), *prefix = temp_prefix (path);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  int removed = 0;

  while (d && (name = g_dir_read_name (d)))
    if (g_str_has_prefix (name, prefix) && strlen (name) == strlen (prefix) + 6)
      {
        g_autofree char *full = g_build_filename (dir, name, NULL);
        removed += g_unlink (full) == 0;
      }
  return removed;
}
