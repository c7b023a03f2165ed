/* cleave-device.c: not written yet */
