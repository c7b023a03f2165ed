/* cleave-tensor.h: float32 NCHW tensors whose data lives in a backend. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define CLEAVE_MAX_DIMS 4

typedef struct _CleaveBackend CleaveBackend;

/* A reference-counted block of device memory holding @n floats.
 * @handle is a host `float *` for the cpu backend and a `cl_mem` for OpenCL. */
typedef struct {
  CleaveBackend *backend;
  gpointer handle;
  gsize n;
  gint ref_count;
} CleaveBuffer;

/* Plain struct, not a GObject. Always contiguous (strides are kept so that
 * callers can assert it and so views stay cheap to add later). */
typedef struct {
  int ndim;
  int shape[CLEAVE_MAX_DIMS];
  gsize strides[CLEAVE_MAX_DIMS];
  CleaveBuffer *buf;
} CleaveTensor;

CleaveTensor *cleave_tensor_new        (CleaveBackend *backend, int ndim, const int *shape, GError **error);
CleaveTensor *cleave_tensor_new_4d     (CleaveBackend *backend, int n, int c, int h, int w, GError **error);
CleaveTensor *cleave_tensor_new_2d     (CleaveBackend *backend, int n, int f, GError **error);
CleaveTensor *cleave_tensor_new_1d     (CleaveBackend *backend, int n, GError **error);
/* Same data, other shape with the same element count (shares the buffer). */
CleaveTensor *cleave_tensor_reshape    (CleaveTensor *t, int ndim, const int *shape);
/* Same data, the first @rows entries along dimension 0 (shares the buffer). */
CleaveTensor *cleave_tensor_prefix     (CleaveTensor *t, int rows);
void          cleave_tensor_free       (CleaveTensor *t);
gsize         cleave_tensor_numel      (const CleaveTensor *t);
gboolean      cleave_tensor_same_shape (const CleaveTensor *a, const CleaveTensor *b);
/* "[128, 32, 28, 28]" — newly allocated. */
char         *cleave_tensor_shape_string (const CleaveTensor *t);

gboolean cleave_tensor_upload   (CleaveTensor *t, const float *src, gsize n, GError **error);
gboolean cleave_tensor_download (const CleaveTensor *t, float *dst, gsize n, GError **error);
/* Convenience: a newly allocated host copy (g_free it). */
float   *cleave_tensor_to_host  (const CleaveTensor *t, GError **error);
gboolean cleave_tensor_fill     (CleaveTensor *t, float value, GError **error);
gboolean cleave_tensor_copy     (CleaveTensor *dst, const CleaveTensor *src, GError **error);

CleaveBuffer *cleave_buffer_ref   (CleaveBuffer *b);
void          cleave_buffer_unref (CleaveBuffer *b);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveTensor, cleave_tensor_free)

G_END_DECLS
