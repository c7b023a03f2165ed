/* cleave-backend-cpu.c: not written yet */
