/* cleave-backend-opencl-private.h: entry points for tests of the OpenCL
 * backend; not part of the public API. */
#pragma once

#include "cleave-backend.h"

G_BEGIN_DECLS

/* Builds the backend's kernel programs now (normally done on first use). */
gboolean cleave_backend_opencl_ensure_built (CleaveBackend *backend, GError **error);

/* Compiles @source with @options on the backend's device, without the disk
 * cache, and discards it: lets tests check that a broken kernel gives
 * CLEAVE_ERROR_KERNEL_BUILD with the build log. */
gboolean cleave_backend_opencl_build_source (CleaveBackend *backend, const char *source,
                                             const char *options, GError **error);

/* The cache file of the backend's main program (NULL before it is built)
 * and whether this backend loaded it from the disk cache. */
const char *cleave_backend_opencl_cache_file (CleaveBackend *backend);
gboolean    cleave_backend_opencl_loaded_from_cache (CleaveBackend *backend);

G_END_DECLS
