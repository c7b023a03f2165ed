#pragma once
#include "cleave-graph.h"

struct _CleaveGraph {
  int in_c, in_h, in_w;
  GPtrArray *nodes;       /* CleaveNode* ; node 0 is the input */
  GPtrArray *params;      /* CleaveParam* */
  GArray *sites;          /* CleaveMaskSite */
  gboolean finalized;
};

void cleave_param_free (CleaveParam *p);
int  cleave_graph_add_node (CleaveGraph *g, CleaveNode *n);
