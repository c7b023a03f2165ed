/* cleave-dataset.c: not written yet */
