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
open_info (const CleaveDeviceInfo *info, GError **error)
{
  int p, d;
  if (info->kind == CLEAVE_BACKEND_KIND_CPU)
    return cleave_backend_cpu_new ();
  if (sscanf (info->id, "opencl:%d:%d", &p, &d) != 2)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE, "malformed device id '%s'", info->id);
      return NULL;
    }
  return cleave_backend_opencl_new (p, d, error);
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
cleave_device_open (const char *spec, GError **error)
{
  g_autoptr(GPtrArray) list = NULL;
  g_autofree char *lower = NULL;
  int index;

  if (spec == NULL)
    spec = g_getenv ("CLEAVE_DEVICE");
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
          CleaveBackend *b = open_info (best, NULL);
          if (b)
            return b;
        }
      return cleave_backend_cpu_new ();
    }

  if (g_ascii_strcasecmp (spec, "cpu") == 0)
    return cleave_backend_cpu_new ();

  if (g_ascii_strcasecmp (spec, "opencl") == 0)
    {
      list = cleave_device_list ();
      for (guint i = 0; i < list->len; i++)
        {
          const CleaveDeviceInfo *info = list->pdata[i];
          if (info->kind == CLEAVE_BACKEND_KIND_OPENCL)
            return open_info (info, error);
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
      return cleave_backend_opencl_new (p, d, error);
    }

  list = cleave_device_list ();
  if (parse_index (spec, &index))
    {
      if ((guint) index < list->len)
        return open_info (list->pdata[index], error);
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
        return open_info (info, error);
    }
  {
    g_autofree char *avail = available_devices (list);
    g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_NO_DEVICE,
                 "no device matches '%s'; use auto, cpu, opencl, opencl:P:D, an index or part of a name "
                 "(available: %s)", spec, avail);
  }
  return NULL;
}
