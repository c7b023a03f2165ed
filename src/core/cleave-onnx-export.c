/* cleave-onnx-export.c: not written yet */
