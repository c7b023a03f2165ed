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

/* Overrides the GEMM tuning so that tests reach paths the device would not
 * take on its own: @split_k 0 automatic (the default, from the compute-unit
 * count), 1 never split K, N > 1 split every GEMM into N slices of K (fewer
 * when K is short); @col_limit_floats caps the im2col chunk (0: the
 * device's default), so a small value runs convolutions in several chunks
 * whose weight gradients accumulate. */
void  cleave_backend_opencl_set_gemm_tuning (CleaveBackend *backend, int split_k, gsize col_limit_floats);
/* How many GEMMs this backend has run split over K (with the reduction). */
guint cleave_backend_opencl_split_gemms (CleaveBackend *backend);

G_END_DECLS
