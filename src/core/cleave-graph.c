/* cleave-graph.c: not written yet */
