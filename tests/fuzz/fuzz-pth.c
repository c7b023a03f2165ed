/* fuzz-pth.c: libFuzzer harness for the PyTorch checkpoint reader
 * (cleave_pth_load_bytes: the zip reader, the pickle machine and the tensor
 * views). Every input must give either tensors or a GError, never a crash, a
 * leak or an out-of-bounds access. Seeds: tests/fuzz/corpus/pth/. */
#include "cleave-pth.h"

#include <string.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data, size_t size)
{
  GError *error = NULL;
  CleaveSafetensors *st = cleave_pth_load_bytes (data, size, "fuzz.pth", &error);

  if (st != NULL)
    {
      /* Touch every tensor, as the model loader does. */
      for (guint i = 0; i < st->tensors->len; i++)
        {
          const CleaveSafeTensor *t = st->tensors->pdata[i];
          g_free (cleave_safe_tensor_to_f32 (t, 0, "fuzz.pth", NULL));
        }
      cleave_safetensors_free (st);
    }
  g_clear_error (&error);
  return 0;
}
