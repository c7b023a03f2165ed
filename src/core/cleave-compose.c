/* cleave-compose.c: not written yet */
