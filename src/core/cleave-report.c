/* cleave-report.c: not written yet */
