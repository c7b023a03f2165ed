/* cleave-backend-opencl.c: not written yet */
