/* cleave-cnnsplitter.c: not written yet */
