/* cleave-ops.c: not written yet */
