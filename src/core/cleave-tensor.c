/* cleave-tensor.c: tensor bookkeeping; the data moves through the backend. */
#include "cleave-tensor.h"
#include "cleave-backend.h"
#include "cleave-error.h"

CleaveBuffer *
cleave_buffer_ref (CleaveBuffer *b)
{
  g_atomic_int_inc (&b->ref_count);
  return b;
}

void
cleave_buffer_unref (CleaveBuffer *b)
{
  if (b == NULL)
    return;
  if (g_atomic_int_dec_and_test (&b->ref_count))
    {
      b->backend->vtable->free (b->backend, b->handle);
      cleave_backend_unref (b->backend);
      g_free (b);
    }
}

static void
set_contiguous_strides (CleaveTensor *t)
{
  gsize s = 1;
  for (int i = t->ndim - 1; i >= 0; i--)
    {
      t->strides[i] = s;
      s *= (gsize) t->shape[i];
    }
}

static gboolean
shape_numel (int ndim, const int *shape, gsize *out, GError **error)
{
  gsize n = 1;
  if (ndim < 1 || ndim > CLEAVE_MAX_DIMS)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "tensor rank %d is outside 1..%d", ndim, CLEAVE_MAX_DIMS);
      return FALSE;
    }
  for (int i = 0; i < ndim; i++)
    {
      if (shape[i] <= 0)
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "tensor dimension %d is %d (must be positive)", i, shape[i]);
          return FALSE;
        }
      if (n > G_MAXSIZE / 8 / (gsize) shape[i])
        {
          g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                       "tensor too large");
          return FALSE;
        }
      n *= (gsize) shape[i];
    }
  *out = n;
  return TRUE;
}

CleaveTensor *
cleave_tensor_new (CleaveBackend *backend, int ndim, const int *shape, GError **error)
{
  gsize n;
  gpointer handle;
  CleaveTensor *t;

  g_return_val_if_fail (backend != NULL, NULL);
  if (!shape_numel (ndim, shape, &n, error))
    return NULL;
  handle = backend->vtable->alloc (backend, n, error);
  if (handle == NULL)
    return NULL;
  t = g_new0 (CleaveTensor, 1);
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  set_contiguous_strides (t);
  t->buf = g_new0 (CleaveBuffer, 1);
  t->buf->backend = cleave_backend_ref (backend);
  t->buf->handle = handle;
  t->buf->n = n;
  t->buf->ref_count = 1;
  return t;
}

CleaveTensor *
cleave_tensor_new_4d (CleaveBackend *backend, int n, int c, int h, int w, GError **error)
{
  int shape[4] = { n, c, h, w };
  return cleave_tensor_new (backend, 4, shape, error);
}

CleaveTensor *
cleave_tensor_new_2d (CleaveBackend *backend, int n, int f, GError **error)
{
  int shape[2] = { n, f };
  return cleave_tensor_new (backend, 2, shape, error);
}

CleaveTensor *
cleave_tensor_new_1d (CleaveBackend *backend, int n, GError **error)
{
  return cleave_tensor_new (backend, 1, &n, error);
}

CleaveTensor *
cleave_tensor_reshape (CleaveTensor *t, int ndim, const int *shape)
{
  gsize n;
  CleaveTensor *r;

  g_return_val_if_fail (t != NULL, NULL);
  if (!shape_numel (ndim, shape, &n, NULL))
    g_return_val_if_reached (NULL);
  g_return_val_if_fail (n == cleave_tensor_numel (t), NULL);
  r = g_new0 (CleaveTensor, 1);
  r->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    r->shape[i] = shape[i];
  set_contiguous_strides (r);
  r->buf = cleave_buffer_ref (t->buf);
  return r;
}

CleaveTensor *
cleave_tensor_prefix (CleaveTensor *t, int rows)
{
  CleaveTensor *r;

  g_return_val_if_fail (t != NULL && t->ndim > 0 && rows > 0 && rows <= t->shape[0], NULL);
  r = g_new0 (CleaveTensor, 1);
  *r = *t;
  r->shape[0] = rows;
  r->buf = cleave_buffer_ref (t->buf);
  return r;
}

void
cleave_tensor_free (CleaveTensor *t)
{
  if (t == NULL)
    return;
  cleave_buffer_unref (t->buf);
  g_free (t);
}

gsize
cleave_tensor_numel (const CleaveTensor *t)
{
  gsize n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (gsize) t->shape[i];
  return n;
}

gboolean
cleave_tensor_same_shape (const CleaveTensor *a, const CleaveTensor *b)
{
  if (a->ndim != b->ndim)
    return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return FALSE;
  return TRUE;
}

char *
cleave_tensor_shape_string (const CleaveTensor *t)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < t->ndim; i++)
    g_string_append_printf (s, i ? ", %d" : "%d", t->shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static gboolean
check_count (const CleaveTensor *t, gsize n, GError **error)
{
  if (n != cleave_tensor_numel (t))
    {
      g_autofree char *s = cleave_tensor_shape_string (t);
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "%zu values given for a tensor of shape %s", n, s);
      return FALSE;
    }
  return TRUE;
}

gboolean
cleave_tensor_upload (CleaveTensor *t, const float *src, gsize n, GError **error)
{
  CleaveBackend *b = t->buf->backend;
  if (!check_count (t, n, error))
    return FALSE;
  return b->vtable->upload (b, t->buf->handle, 0, src, n, error);
}

gboolean
cleave_tensor_download (const CleaveTensor *t, float *dst, gsize n, GError **error)
{
  CleaveBackend *b = t->buf->backend;
  if (!check_count (t, n, error))
    return FALSE;
  return b->vtable->download (b, t->buf->handle, 0, dst, n, error);
}

float *
cleave_tensor_to_host (const CleaveTensor *t, GError **error)
{
  gsize n = cleave_tensor_numel (t);
  float *dst = g_new (float, n);
  if (!cleave_tensor_download (t, dst, n, error))
    {
      g_free (dst);
      return NULL;
    }
  return dst;
}

gboolean
cleave_tensor_fill (CleaveTensor *t, float value, GError **error)
{
  CleaveBackend *b = t->buf->backend;
  return b->vtable->fill (b, t, value, error);
}

gboolean
cleave_tensor_copy (CleaveTensor *dst, const CleaveTensor *src, GError **error)
{
  CleaveBackend *b = dst->buf->backend;
  if (cleave_tensor_numel (dst) != cleave_tensor_numel (src) || src->buf->backend != b)
    {
      g_set_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT,
                   "copy between tensors of different sizes or backends");
      return FALSE;
    }
  return b->vtable->copy (b, dst, src, error);
}

CleaveBackend *
cleave_backend_ref (CleaveBackend *b)
{
  g_atomic_int_inc (&b->ref_count);
  return b;
}

void
cleave_backend_unref (CleaveBackend *b)
{
  if (b == NULL)
    return;
  if (g_atomic_int_dec_and_test (&b->ref_count))
    {
      if (b->vtable->destroy)
        b->vtable->destroy (b);
      g_free (b->name);
      g_free (b->description);
      g_free (b);
    }
}

gboolean
cleave_backend_finish (CleaveBackend *b, GError **error)
{
  if (b->vtable->finish)
    return b->vtable->finish (b, error);
  return TRUE;
}
