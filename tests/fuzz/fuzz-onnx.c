/* fuzz-onnx.c: ONNX bytes through the protobuf reader and the importer. A
 * model that parses must encode to bytes that parse again. */
#include "fuzz-common.h"
#include "cleave-onnx.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;
  CleaveOnnxModel *m;
  CleaveOnnxImport *imp;

  fuzz_dir ();
  m = cleave_onnx_model_parse (data, size, "fuzz.onnx", &error);
  fuzz_check_result (m != NULL, error);
  if (m == NULL)
    return 0;
  {
    g_autoptr (GBytes) bytes = cleave_onnx_model_encode (m);
    gsize len;
    const guint8 *enc = g_bytes_get_data (bytes, &len);
    CleaveOnnxModel *again = cleave_onnx_model_parse (enc, len, "re-encoded.onnx", &error);

    fuzz_check_result (again != NULL, error);
    if (again == NULL)
      g_error ("a parsed ONNX model does not parse back after encoding");
    cleave_onnx_model_free (again);
  }
  imp = cleave_onnx_import_model (m, "fuzz.onnx", &error);
  fuzz_check_result (imp != NULL, error);
  cleave_onnx_import_free (imp);
  cleave_onnx_model_free (m);
  return 0;
}
