/* cleave-train.c: not written yet */
