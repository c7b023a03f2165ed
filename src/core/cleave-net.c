/* cleave-net.c: not written yet */
