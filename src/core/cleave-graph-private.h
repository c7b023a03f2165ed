#pragma once
#include "cleave-graph.h"

struct _CleaveGraph {
  int in_c, in_h, in_w;
  GPtrArray *nodes;       /* CleaveNode* ; node 0 is the input */
  GPtrArray *params;      /* CleaveParam* */
  GArray *sites;          /* CleaveMaskSite */
  gboolean finalized;
  /* during finalize: elements parameters may still take; with shapes_only,
   * new parameters get their shapes but no data (a loader fills them from a
   * file whose tensors it checks against those shapes first) */
  gint64 numel_left;
  gboolean shapes_only;
};

/* Limits on sizes read from architecture JSON: elements of one parameter or
 * of one layer's per-image output, and of all parameters together. */
#define CLEAVE_GRAPH_MAX_NUMEL ((gint64) 1 << 28)
#define CLEAVE_GRAPH_MAX_TOTAL_NUMEL ((gint64) 1 << 30)

/* Refuses parameter values that would poison every result: a non-finite
 * value, or a negative BN running variance ("FILE: tensor 'NAME': ..."). */
gboolean cleave_graph_check_values (const CleaveGraph *g, const char *file, GError **error);

/* cleave_graph_from_json() for a graph stored in a Cleave file: every
 * attribute Cleave writes must be present (no defaults), and the parameters
 * are left without data (NULL): the caller must fill every one before the
 * graph is used. */
CleaveGraph *cleave_graph_from_json_shapes (const char *json, GError **error);

void cleave_param_free (CleaveParam *p);
int  cleave_graph_add_node (CleaveGraph *g, CleaveNode *n);
