/* cleave-gradsplitter.c: not written yet */
