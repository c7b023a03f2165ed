/* test-tensor.c: tensor bookkeeping and data movement on the cpu backend. */
#include <string.h>

#include "cleave-backend.h"

static CleaveBackend *backend;

static void
test_create (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) t = cleave_tensor_new_4d (backend, 2, 3, 4, 5, &error);
  g_autoptr (CleaveTensor) m = cleave_tensor_new_2d (backend, 7, 9, &error);
  g_autoptr (CleaveTensor) v = cleave_tensor_new_1d (backend, 11, &error);
  g_autofree char *s = NULL;

  g_assert_no_error (error);
  g_assert_cmpint (t->ndim, ==, 4);
  g_assert_cmpuint (cleave_tensor_numel (t), ==, 120);
  /* contiguous NCHW strides */
  g_assert_cmpuint (t->strides[0], ==, 60);
  g_assert_cmpuint (t->strides[1], ==, 20);
  g_assert_cmpuint (t->strides[2], ==, 5);
  g_assert_cmpuint (t->strides[3], ==, 1);
  g_assert_cmpuint (t->buf->n, ==, 120);
  g_assert_true (t->buf->backend == backend);
  /* handles are 64-byte aligned host memory */
  g_assert_cmpuint ((guintptr) t->buf->handle % 64, ==, 0);
  s = cleave_tensor_shape_string (t);
  g_assert_cmpstr (s, ==, "[2, 3, 4, 5]");
  g_clear_pointer (&s, g_free);
  s = cleave_tensor_shape_string (m);
  g_assert_cmpstr (s, ==, "[7, 9]");
  g_assert_cmpuint (cleave_tensor_numel (v), ==, 11);
  g_assert_false (cleave_tensor_same_shape (t, m));
}

static void
test_bad_shapes (void)
{
  g_autoptr (GError) error = NULL;
  int zero[2] = { 3, 0 }, neg[1] = { -4 }, five[5] = { 1, 1, 1, 1, 1 };
  int huge[4] = { G_MAXINT, G_MAXINT, G_MAXINT, G_MAXINT };

  g_assert_null (cleave_tensor_new (backend, 2, zero, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "dimension 1 is 0"));
  g_clear_error (&error);

  g_assert_null (cleave_tensor_new (backend, 1, neg, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_assert_null (cleave_tensor_new (backend, 5, five, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_assert_null (cleave_tensor_new (backend, 0, five, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* an element count that overflows is refused, not wrapped */
  g_assert_null (cleave_tensor_new (backend, 4, huge, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static void
test_upload_download (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) t = cleave_tensor_new_2d (backend, 3, 4, &error);
  float in[12], out[12] = { 0 };
  g_autofree float *copy = NULL;

  for (int i = 0; i < 12; i++)
    in[i] = i * 0.5f - 2.0f;
  g_assert_true (cleave_tensor_upload (t, in, 12, &error));
  g_assert_no_error (error);
  g_assert_true (cleave_tensor_download (t, out, 12, &error));
  g_assert_cmpmem (in, sizeof in, out, sizeof out);
  copy = cleave_tensor_to_host (t, &error);
  g_assert_nonnull (copy);
  g_assert_cmpmem (in, sizeof in, copy, 12 * sizeof (float));

  /* a wrong count is an error naming the shape, and leaves the data alone */
  g_assert_false (cleave_tensor_upload (t, in, 11, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "[3, 4]"));
  g_clear_error (&error);
  g_assert_false (cleave_tensor_download (t, out, 13, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static void
test_fill_copy (void)
{
  g_autoptr (GError) error = NULL;
  /* large enough that the fill runs on several threads */
  g_autoptr (CleaveTensor) a = cleave_tensor_new_4d (backend, 4, 8, 32, 32, &error);
  g_autoptr (CleaveTensor) b = cleave_tensor_new_2d (backend, 4, 8 * 32 * 32, &error);
  g_autoptr (CleaveTensor) c = cleave_tensor_new_1d (backend, 5, &error);
  gsize n = cleave_tensor_numel (a);
  g_autofree float *h = NULL;

  g_assert_true (cleave_tensor_fill (a, 2.5f, &error));
  g_assert_no_error (error);
  h = cleave_tensor_to_host (a, &error);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat (h[i], ==, 2.5f);
  g_clear_pointer (&h, g_free);

  /* copy only needs equal element counts */
  g_assert_true (cleave_tensor_fill (b, -1.0f, &error));
  g_assert_true (cleave_tensor_copy (b, a, &error));
  g_assert_no_error (error);
  h = cleave_tensor_to_host (b, &error);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat (h[i], ==, 2.5f);

  g_assert_true (cleave_tensor_fill (a, 0.0f, &error));
  g_clear_pointer (&h, g_free);
  h = cleave_tensor_to_host (a, &error);
  for (gsize i = 0; i < n; i++)
    g_assert_cmpfloat (h[i], ==, 0.0f);

  g_assert_false (cleave_tensor_copy (c, a, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static void
test_copy_across_backends (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveBackend) other = cleave_backend_cpu_new ();
  g_autoptr (CleaveTensor) a = cleave_tensor_new_1d (backend, 4, &error);
  g_autoptr (CleaveTensor) b = cleave_tensor_new_1d (other, 4, &error);

  g_assert_false (cleave_tensor_copy (b, a, &error));
  g_assert_error (error, CLEAVE_ERROR, CLEAVE_ERROR_INVALID_ARGUMENT);
}

static void
test_reshape (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (CleaveTensor) t = cleave_tensor_new_4d (backend, 2, 3, 2, 2, &error);
  int flat[2] = { 2, 12 };
  float in[24], out[24];
  g_autoptr (CleaveTensor) f = NULL;

  for (int i = 0; i < 24; i++)
    in[i] = (float) i;
  cleave_tensor_upload (t, in, 24, &error);
  /* flatten is a reshape sharing the buffer: no data moves */
  f = cleave_tensor_reshape (t, 2, flat);
  g_assert_nonnull (f);
  g_assert_true (f->buf == t->buf);
  g_assert_cmpint (f->buf->ref_count, ==, 2);
  g_assert_cmpuint (f->strides[0], ==, 12);
  g_assert_true (cleave_tensor_download (f, out, 24, &error));
  g_assert_cmpmem (in, sizeof in, out, sizeof out);

  /* writes through the view are seen by the original */
  cleave_tensor_fill (f, 9.0f, &error);
  cleave_tensor_download (t, out, 24, &error);
  g_assert_cmpfloat (out[23], ==, 9.0f);

  /* the buffer outlives the tensor it came from */
  g_clear_pointer (&t, cleave_tensor_free);
  g_assert_cmpint (f->buf->ref_count, ==, 1);
  g_assert_true (cleave_tensor_download (f, out, 24, &error));
  g_assert_cmpfloat (out[0], ==, 9.0f);
}

static void
test_reshape_bad (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr (CleaveTensor) t = cleave_tensor_new_1d (backend, 6, NULL);
      int shape[2] = { 4, 2 };
      /* a programmer error: warns (g_return_val_if_fail) and returns NULL */
      g_assert_null (cleave_tensor_reshape (t, 2, shape));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_stderr ("*CRITICAL*");
}

static void
test_backend_lifetime (void)
{
  CleaveBackend *b = cleave_backend_cpu_new ();
  CleaveTensor *t;

  g_assert_cmpint (b->kind, ==, CLEAVE_BACKEND_KIND_CPU);
  g_assert_cmpstr (b->name, ==, "cpu");
  g_assert_nonnull (b->description);
  g_assert_true (cleave_backend_finish (b, NULL));
  t = cleave_tensor_new_1d (b, 3, NULL);
  /* the tensor keeps its backend alive */
  g_assert_cmpint (b->ref_count, ==, 2);
  cleave_backend_unref (b);
  g_assert_true (cleave_tensor_fill (t, 1.0f, NULL));
  cleave_tensor_free (t);
}

int
main (int argc, char **argv)
{
  int rc;

  g_test_init (&argc, &argv, NULL);
  backend = cleave_backend_cpu_new ();

  g_test_add_func ("/core/tensor/create", test_create);
  g_test_add_func ("/core/tensor/bad-shapes", test_bad_shapes);
  g_test_add_func ("/core/tensor/upload-download", test_upload_download);
  g_test_add_func ("/core/tensor/fill-copy", test_fill_copy);
  g_test_add_func ("/core/tensor/copy-across-backends", test_copy_across_backends);
  g_test_add_func ("/core/tensor/reshape-shares-data", test_reshape);
  g_test_add_func ("/core/tensor/reshape-bad-count", test_reshape_bad);
  g_test_add_func ("/core/tensor/backend-lifetime", test_backend_lifetime);

  rc = g_test_run ();
  cleave_backend_unref (backend);
  return rc;
}
