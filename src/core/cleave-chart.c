/* cleave-chart.c: not written yet */
