/* cleave-graph.h: a CNN as a DAG of named layers with host-side parameters.
 *
 * The graph is pure structure plus host copies of the parameters: model files,
 * ONNX import/export, module extraction and `info` work on it without any
 * backend. CleaveNet (cleave-net.h) binds a graph to a backend to run it.
 *
 * Node names are PyTorch module paths ("features.0"); parameter names are
 * node name + ".weight" / ".bias" / ".running_mean" / ".running_var", so a
 * PyTorch state_dict of the same module tree maps one to one.
 */
#pragma once

#include <glib.h>
#include "cleave-tensor.h"

G_BEGIN_DECLS

#define CLEAVE_MAX_INPUTS 64

typedef enum {
  CLEAVE_OP_INPUT,
  CLEAVE_OP_CONV2D,
  CLEAVE_OP_BATCHNORM2D,
  CLEAVE_OP_RELU,
  CLEAVE_OP_MAXPOOL2D,
  CLEAVE_OP_AVGPOOL2D,
  CLEAVE_OP_GLOBAL_AVGPOOL,
  CLEAVE_OP_LINEAR,
  CLEAVE_OP_DROPOUT,
  CLEAVE_OP_FLATTEN,
  CLEAVE_OP_ADD,
  CLEAVE_OP_CONCAT,
  CLEAVE_OP_SIGMOID,
  CLEAVE_OP_CLIP,              /* min (max (alpha·x + beta, clip_min), clip_max): ReLU6, a scalar affine */
  CLEAVE_OP_HARDSIGMOID,       /* clip (alpha·x + beta, 0, 1) */
  CLEAVE_OP_MUL,               /* a · b, b the same shape as a or (C,1,1) per channel (squeeze-excitation) */
  CLEAVE_OP_CHANNEL_SHUFFLE,   /* (g, C/g) channels transposed to (C/g, g) (ShuffleNet) */
  CLEAVE_OP_SLICE,             /* channels [start, start + out_channels) of its input */
  CLEAVE_OP_SOFTMAX,           /* softmax over the features of a [N,F] tensor */
  CLEAVE_N_OPS
} CleaveOpKind;

const char  *cleave_op_kind_to_string   (CleaveOpKind op);   /* "conv2d", "batchnorm2d", ... */
CleaveOpKind cleave_op_kind_from_string (const char *s);      /* -1 when unknown */

typedef enum {
  CLEAVE_PARAM_WEIGHT,
  CLEAVE_PARAM_BIAS,
  CLEAVE_PARAM_RUNNING_MEAN,
  CLEAVE_PARAM_RUNNING_VAR,
  CLEAVE_N_PARAM_SLOTS
} CleaveParamSlot;

typedef struct {
  char *name;                 /* "features.0.weight" */
  int ndim;
  int shape[CLEAVE_MAX_DIMS];
  float *data;                /* host copy, numel floats */
  gboolean trainable;         /* FALSE for running stats and frozen weights */
  gboolean is_buffer;         /* running_mean / running_var */
} CleaveParam;

typedef struct {
  char *name;
  CleaveOpKind op;
  int inputs[CLEAVE_MAX_INPUTS];
  int n_inputs;
  /* attributes; which ones matter depends on op */
  int in_channels, out_channels, kernel, stride, pad, groups; /* conv2d; kernel/stride/pad for pools */
  gboolean has_bias;                                           /* conv2d, linear */
  int in_features, out_features;                               /* linear */
  float eps, momentum;                                         /* batchnorm2d */
  float p;                                                     /* dropout */
  gboolean ceil_mode;          /* pools: output size rounded up (a last, partial window) */
  gboolean exclude_pad;        /* avgpool: divide by the window's cells inside the input
                                * (ONNX count_include_pad = 0); FALSE counts the padding */
  gboolean keepdims;           /* global_avgpool: output (C,1,1) instead of (C) */
  float clip_min, clip_max;    /* clip */
  float alpha, beta;           /* hardsigmoid, clip (1 and 0 for a plain clip) */
  int start;                   /* slice: first channel; out_channels is the count */
  /* per-sample output shape, filled by cleave_graph_finalize():
   * out_ndim 3 → (C,H,W), out_ndim 1 → (F) */
  int out_ndim;
  int out_shape[3];
  /* indices into the graph's parameter array, -1 when absent */
  int param[CLEAVE_N_PARAM_SLOTS];
} CleaveNode;

/* Where a splitter's channel mask acts: after the ReLU (or BN) that follows a
 * conv. Sites in one tie group share one mask (residual adds). */
typedef struct {
  int conv;        /* node index of the conv2d */
  int node;        /* node whose output is multiplied by the mask */
  int channels;    /* = conv out_channels */
  int tie;         /* index of the first site of its tie group (itself if untied) */
} CleaveMaskSite;

typedef struct _CleaveGraph CleaveGraph;

CleaveGraph *cleave_graph_new   (int in_channels, int in_height, int in_width);
CleaveGraph *cleave_graph_copy  (const CleaveGraph *g);     /* deep copy incl. parameter data */
void         cleave_graph_free  (CleaveGraph *g);

/* Builders return the new node's index. @input is a node index (0 is the input node). */
int cleave_graph_add_conv2d         (CleaveGraph *g, const char *name, int input, int out_channels,
                                     int kernel, int stride, int pad, int groups, gboolean bias);
int cleave_graph_add_batchnorm2d    (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_relu           (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_maxpool2d      (CleaveGraph *g, const char *name, int input, int kernel, int stride, int pad);
int cleave_graph_add_avgpool2d      (CleaveGraph *g, const char *name, int input, int kernel, int stride, int pad);
/* [C, H, W] → (C): the output is 1-d, no flatten needed before a linear. */
int cleave_graph_add_global_avgpool (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_linear         (CleaveGraph *g, const char *name, int input, int out_features, gboolean bias);
int cleave_graph_add_dropout        (CleaveGraph *g, const char *name, int input, float p);
int cleave_graph_add_flatten        (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_add            (CleaveGraph *g, const char *name, int a, int b);
int cleave_graph_add_concat         (CleaveGraph *g, const char *name, const int *inputs, int n_inputs);
int cleave_graph_add_sigmoid        (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_clip           (CleaveGraph *g, const char *name, int input, float min, float max);
/* y = alpha·x + beta: a clip without bounds (±G_MAXFLOAT) */
int cleave_graph_add_scale          (CleaveGraph *g, const char *name, int input, float alpha, float beta);
int cleave_graph_add_hardsigmoid    (CleaveGraph *g, const char *name, int input, float alpha, float beta);
/* @a: the tensor; @b: the same shape, or (C,1,1) scaling each channel */
int cleave_graph_add_mul            (CleaveGraph *g, const char *name, int a, int b);
int cleave_graph_add_channel_shuffle (CleaveGraph *g, const char *name, int input, int groups);
int cleave_graph_add_softmax        (CleaveGraph *g, const char *name, int input);
int cleave_graph_add_slice          (CleaveGraph *g, const char *name, int input, int start, int count);

/* Infers shapes, checks them, creates (zeroed) parameters where missing, and
 * computes mask sites. Must be called after building and before use. Names are
 * made unique ("relu" → "relu_1") when a builder got NULL. */
gboolean cleave_graph_finalize (CleaveGraph *g, GError **error);

int               cleave_graph_n_nodes       (const CleaveGraph *g);
CleaveNode       *cleave_graph_node          (const CleaveGraph *g, int i);
int               cleave_graph_find_node     (const CleaveGraph *g, const char *name);   /* -1 */
int               cleave_graph_output        (const CleaveGraph *g);                     /* last node */
void              cleave_graph_input_shape   (const CleaveGraph *g, int *c, int *h, int *w);
int               cleave_graph_n_outputs     (const CleaveGraph *g);                     /* features of the output */

int               cleave_graph_n_params      (const CleaveGraph *g);
CleaveParam      *cleave_graph_param         (const CleaveGraph *g, int i);
int               cleave_graph_find_param    (const CleaveGraph *g, const char *name);   /* -1 */
gsize             cleave_param_numel         (const CleaveParam *p);

int                   cleave_graph_n_mask_sites (const CleaveGraph *g);
const CleaveMaskSite *cleave_graph_mask_site    (const CleaveGraph *g, int i);
int                   cleave_graph_total_kernels (const CleaveGraph *g);  /* sum of site channels */

/* PyTorch's default initialisation (kaiming_uniform(a=√5) for conv/linear
 * weights, uniform(±1/√fan_in) biases, BN γ=1 β=0 mean 0 var 1), seeded. */
void cleave_graph_init_params (CleaveGraph *g, guint64 seed);

/* Marks every parameter (not buffer) trainable or frozen. */
void cleave_graph_set_trainable (CleaveGraph *g, gboolean trainable);

/* Counts for `info`: parameters (trainable + buffers excluded) and multiply-adds per image. */
guint64 cleave_graph_count_params (const CleaveGraph *g);
guint64 cleave_graph_count_flops  (const CleaveGraph *g);   /* 2 × MACs, per image */
guint64 cleave_graph_node_flops   (const CleaveGraph *g, int node);

/* The architecture as JSON (no weights) and back. Schema in docs/ARCHITECTURE-JSON.md:
 * {"input":[C,H,W],"nodes":[{"name":..,"op":"conv2d","inputs":["prev"],...attrs}]}.
 * from_json validates every field and names it in the error. */
char        *cleave_graph_to_json   (const CleaveGraph *g);
CleaveGraph *cleave_graph_from_json (const char *json, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveGraph, cleave_graph_free)

G_END_DECLS
