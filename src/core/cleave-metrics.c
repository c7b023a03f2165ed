/* cleave-metrics.c: not written yet */
