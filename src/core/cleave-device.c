/* cleave-device.c: listing compute devices and opening a backend by spec. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleave-device.h"

void
cleave_device_info_free (CleaveDeviceInfo *info)
{
  if (info == NULL)
    return;
  g_free (info->id);
  g_free (info->name);
  g_free (info->platform);
  g_free (info->type);
  g_free (info);
}

static char *
cpu_model_name (void)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;

  if (g_file_get_contents ("/proc/cpuinfo", &text, NULL, NULL))
    {
      lines = g_strsplit (text, "\n", -1);
      for (int i = 0; lines[i]; i++)
        if (g_str_has_prefix (lines[i], "model name"))
          {
            const char *colon = strchr (lines[i], ':');
            if (colon)
              {
                char *name = g_strstrip (g_strdup (colon + 1));
                if (*name)
                  return name;
                g_free (name);
              }
          }
    }
  return g_strdup ("CPU");
}

GPtrArray *
cleave_device_list (void)
{
  GPtrArray *list = g_ptr_array_new_with_free_func ((GDestroyNotify) cleave_device_info_free);
  CleaveDeviceInfo *cpu = g_new0 (CleaveDeviceInfo, 1);

  cpu->id = g_strdup ("cpu");
  cpu->name = cpu_model_name ();
  cpu->platform = g_strdup ("OpenBLAS (host)");
  cpu->type = g_strdup ("cpu");
  cpu->kind = CLEAVE_BACKEND_KIND_CPU;
  cpu->compute_units = g_get_num_processors ();
  g_ptr_array_add (list, cpu);
  cleave_backend_opencl_list (list);
  return list;
}

static gboolean
parse_index (const char *s, int *out)
{
  char *end = NULL;
  gint64 v;
  if (s == NULL || !g_ascii_isdigit (*s))
    return FALSE;
  v = g_ascii_strtoll (s, &end, 10);
  if (*end != '\0' || v < 0 || v > G_MAXINT)
    return FALSE;
  *out = (int) v;
  return TRUE;
}

static CleaveBackend *
open_info (const CleaveDeviceInfo *info, const CleaveBackendConfig *config, GError **error)
{
  int p, d;
  if (info->kind == CLEAVE_BACKEND_KIND_CPU)
    return cleave_backend_cpu_new_with_config (config);
  if (sscanf (info->id, "opencl:%d:%d", &p, &d) != 2)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE, "malformed device id '%s'", info->id);
      return NULL;
    }
  return cleave_backend_opencl_new (p, d, config, error);
}

static char *
available_devices (GPtrArray *list)
{
  GString *s = g_string_new (NULL);
  for (guint i = 0; i < list->len; i++)
    {
      const CleaveDeviceInfo *info = list->pdata[i];
      g_string_append_printf (s, "%s%u: %s (%s)", i ? ", " : "", i, info->id, info->name);
    }
  return g_string_free (s, FALSE);
}

CleaveBackend *
cleave_device_open (const char *spec, const CleaveBackendConfig *config, GError **error)
{
  g_autoptr(GPtrArray) list = NULL;
  g_autofree char *lower = NULL;
  int index;

  if (spec == NULL || *spec == '\0' || g_ascii_strcasecmp (spec, "auto") == 0)
    {
      const CleaveDeviceInfo *best = NULL;
      guint64 best_score = 0;
      list = cleave_device_list ();
      for (guint i = 0; i < list->len; i++)
        {
          const CleaveDeviceInfo *info = list->pdata[i];
          guint64 score = (guint64) info->compute_units * MAX (info->max_clock_mhz, 1);
          if (info->kind != CLEAVE_BACKEND_KIND_OPENCL || g_strcmp0 (info->type, "gpu") != 0)
            continue;
          if (best == NULL || score > best_score)
            {
              best = info;
              best_score = score;
            }
        }
      if (best)
        {
          /* A GPU that fails to open should not stop the program: the cpu still works. */
          CleaveBackend *b = open_info (best, config, NULL);
          if (b)
            return b;
        }
      return cleave_backend_cpu_new_with_config (config);
    }

  if (g_ascii_strcasecmp (spec, "cpu") == 0)
    return cleave_backend_cpu_new_with_config (config);

  if (g_ascii_strcasecmp (spec, "opencl") == 0)
    {
      list = cleave_device_list ();
      for (guint i = 0; i < list->len; i++)
        {
          const CleaveDeviceInfo *info = list->pdata[i];
          if (info->kind == CLEAVE_BACKEND_KIND_OPENCL)
            return open_info (info, config, error);
        }
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE,
                   HAVE_OPENCL ? "device 'opencl' requested, but no OpenCL device was found"
                               : "device 'opencl' requested, but this build has no OpenCL support");
      return NULL;
    }

  if (g_ascii_strncasecmp (spec, "opencl:", 7) == 0)
    {
      g_auto(GStrv) parts = g_strsplit (spec + 7, ":", -1);
      int p, d;
      if (g_strv_length (parts) != 2 || !parse_index (parts[0], &p) || !parse_index (parts[1], &d))
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE,
                       "bad device '%s': expected opencl:PLATFORM:DEVICE, e.g. opencl:0:0", spec);
          return NULL;
        }
      return cleave_backend_opencl_new (p, d, config, error);
    }

  list = cleave_device_list ();
  if (parse_index (spec, &index))
    {
      if ((guint) index < list->len)
        return open_info (list->pdata[index], config, error);
      {
        g_autofree char *avail = available_devices (list);
        g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE,
                     "device index %d is out of range; available: %s", index, avail);
      }
      return NULL;
    }

  lower = g_utf8_strdown (spec, -1);
  for (guint i = 0; i < list->len; i++)
    {
      const CleaveDeviceInfo *info = list->pdata[i];
      g_autofree char *name = g_utf8_strdown (info->name, -1);
      if (strstr (name, lower))
        return open_info (info, config, error);
    }
  {
    g_autofree char *avail = available_devices (list);
    g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE,
                 "no device matches '%s'; use auto, cpu, opencl, opencl:P:D, an index or part of a name "
                 "(available: %s)", spec, avail);
  }
  return NULL;
}

/* ---------------------------------------------------------------- configuration */

void
cleave_backend_config_init (CleaveBackendConfig *config)
{
  g_return_if_fail (config != NULL);
  memset (config, 0, sizeof *config);
}

static const CleaveBackendSetting settings[] = {
  { "threads", "OMP_NUM_THREADS", "cpu threads, 1 to 64 (0: one per processor)" },
  { "threads", "CLEAVE_CPU_THREADS", "cpu threads, 1 to 64 (0: one per processor)" },
  { "conv-algo", "CLEAVE_CONV_ALGO", "cpu convolutions: auto, im2col or winograd" },
  { "winograd-grad-chunk", "CLEAVE_WINOGRAD_GRAD_CHUNK", "floats per Winograd weight-gradient chunk (0: 8 Mi)" },
  { "opencl-gemm", "CLEAVE_OPENCL_GEMM", "OpenCL GEMM kernel: auto, tiled or strip" },
  { "opencl-split-k", "CLEAVE_OPENCL_SPLIT_K", "OpenCL GEMM K slices: 0 automatic, 1 off, N up to 4096" },
};

const CleaveBackendSetting *
cleave_backend_settings (guint *n_settings)
{
  g_return_val_if_fail (n_settings != NULL, NULL);
  *n_settings = G_N_ELEMENTS (settings);
  return settings;
}

static gboolean
parse_count (const char *name, const char *value, gint64 max, gint64 *out, GError **error)
{
  char *end = NULL;
  gint64 v = g_ascii_strtoll (value, &end, 10);

  if (end == value || *end != '\0' || v < 0 || v > max)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "%s: '%s' is not a whole number from 0 to %" G_GINT64_FORMAT, name, value, max);
      return FALSE;
    }
  *out = v;
  return TRUE;
}

/* @value among @words (NULL-terminated): its index, else an error naming them. */
static gboolean
parse_word (const char *name, const char *value, const char *const *words, int *out, GError **error)
{
  g_autofree char *all = NULL;

  for (int i = 0; words[i]; i++)
    if (g_ascii_strcasecmp (value, words[i]) == 0)
      {
        *out = i;
        return TRUE;
      }
  all = g_strjoinv (", ", (char **) words);
  g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "%s: '%s' is not one of %s", name, value, all);
  return FALSE;
}

static const char *const conv_algos[] = { "auto", "im2col", "winograd", NULL };
static const char *const gemms[] = { "auto", "tiled", "strip", NULL };

gboolean
cleave_backend_config_set (CleaveBackendConfig *config, const char *name, const char *value, GError **error)
{
  gint64 v;
  int w;

  g_return_val_if_fail (config != NULL && name != NULL && value != NULL, FALSE);
  if (g_str_equal (name, "threads"))
    {
      if (!parse_count (name, value, 64, &v, error))
        return FALSE;
      config->threads = (int) v;
    }
  else if (g_str_equal (name, "winograd-grad-chunk"))
    {
      if (!parse_count (name, value, G_MAXINT64 / 4, &v, error))
        return FALSE;
      config->winograd_grad_chunk = (gsize) v;
    }
  else if (g_str_equal (name, "opencl-split-k"))
    {
      if (!parse_count (name, value, 4096, &v, error))
        return FALSE;
      config->opencl_split_k = (int) v;
    }
  else if (g_str_equal (name, "conv-algo"))
    {
      if (!parse_word (name, value, conv_algos, &w, error))
        return FALSE;
      config->conv_algo = (CleaveConvAlgo) w;
    }
  else if (g_str_equal (name, "opencl-gemm"))
    {
      if (!parse_word (name, value, gemms, &w, error))
        return FALSE;
      config->opencl_gemm = (CleaveOpenclGemm) w;
    }
  else
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT, "no backend setting named '%s'", name);
      return FALSE;
    }
  return TRUE;
}

char *
cleave_backend_config_describe (const CleaveBackendConfig *config)
{
  GString *s = g_string_new (NULL);

  g_return_val_if_fail (config != NULL, NULL);
  if (config->threads)
    g_string_append_printf (s, ", threads %d", config->threads);
  if (config->conv_algo)
    g_string_append_printf (s, ", conv-algo %s", conv_algos[config->conv_algo]);
  if (config->winograd_grad_chunk)
    g_string_append_printf (s, ", winograd-grad-chunk %" G_GSIZE_FORMAT, config->winograd_grad_chunk);
  if (config->opencl_gemm)
    g_string_append_printf (s, ", opencl-gemm %s", gemms[config->opencl_gemm]);
  if (config->opencl_split_k)
    g_string_append_printf (s, ", opencl-split-k %d", config->opencl_split_k);
  if (s->len == 0)
    g_string_append (s, ", defaults");
  g_string_erase (s, 0, 2);
  return g_string_free (s, FALSE);
}

gboolean
cleave_backend_config_from_environ (CleaveBackendConfig *config, char **envp, GString *taken, GError **error)
{
  g_return_val_if_fail (config != NULL, FALSE);
  for (gsize i = 0; i < G_N_ELEMENTS (settings); i++)
    {
      const char *v = g_environ_getenv (envp, settings[i].env);
      if (v == NULL || *v == '\0')
        continue;
      if (!cleave_backend_config_set (config, settings[i].name, v, error))
        {
          g_prefix_error (error, "%s: ", settings[i].env);
          return FALSE;
        }
      if (taken)
        g_string_append_printf (taken, "%s%s=%s (%s)", taken->len ? ", " : "", settings[i].env, v, settings[i].name);
    }
  return TRUE;
}
