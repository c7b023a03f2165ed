/* cleave-onnx.c: not written yet */
