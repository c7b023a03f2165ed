/* cleave-graph-json.c: not written yet */
