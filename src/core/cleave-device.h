/* cleave-device.h: listing compute devices and opening a backend on one. */
#pragma once

#include "cleave-backend.h"

G_BEGIN_DECLS

typedef struct {
  char *id;            /* "cpu", "opencl:P:D" (platform, device index) */
  char *name;          /* device name */
  char *platform;      /* "OpenBLAS (host)" or the OpenCL platform name */
  char *type;          /* "cpu", "gpu", "accelerator" */
  CleaveBackendKind kind;
  guint compute_units;
  guint max_clock_mhz;
  guint64 global_mem;
} CleaveDeviceInfo;

void cleave_device_info_free (CleaveDeviceInfo *info);

/* Every device: "cpu" first, then each OpenCL device of each platform. A
 * missing OpenCL runtime is not an error: the list then holds only "cpu". */
GPtrArray *cleave_device_list (void);

/**
 * cleave_device_open:
 * @spec: (nullable): %NULL or "auto" (the default rule: the first OpenCL GPU with the most compute
 *   units × clock, else "cpu", since the OpenBLAS path beats OpenCL on a CPU), "cpu", "opencl"
 *   (first OpenCL device), "opencl:P:D", a list index as printed by `cleave-cli devices`, or a
 *   case-insensitive substring of a device name
 * @config: (nullable): the backend's configuration (%NULL: the defaults)
 * @error: a #GError (%CLEAVE_ERROR_NO_DEVICE) listing the devices when none matches
 *
 * Nothing else (no environment variable) changes which device opens or how.
 *
 * Returns: (transfer full) (nullable): the backend
 */
CleaveBackend *cleave_device_open (const char *spec, const CleaveBackendConfig *config, GError **error);

/* OpenCL backend on one device (cleave-backend-opencl.c). Returns NULL with
 * CLEAVE_ERROR_NO_DEVICE when there is no such device or OpenCL support was
 * not built. Programs are built lazily once per backend and cached on disk. */
CleaveBackend *cleave_backend_opencl_new (int platform_index, int device_index, const CleaveBackendConfig *config,
                                          GError **error);
/* Fills @list with OpenCL devices (used by cleave_device_list). */
void cleave_backend_opencl_list (GPtrArray *list);

G_END_DECLS
