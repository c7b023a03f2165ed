/* cleave-optim.c: not written yet */
