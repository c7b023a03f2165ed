/* cleave-model.c: not written yet */
