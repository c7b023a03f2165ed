/* cleave-arch.c: not written yet */
