/* cleave-module.c: not written yet */
