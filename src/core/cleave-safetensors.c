/* cleave-safetensors.c: not written yet */
