/* cleave-onnx.h: ONNX import and export.
 *
 * Three layers:
 *  - a parsed ONNX model (CleaveOnnxModel): the subset of onnx.proto that
 *    CNN exports use, decoded by a protobuf reader written here that checks
 *    every length and count against the remaining bytes before allocating;
 *  - import: a CleaveOnnxModel as torch.onnx.export writes it (opsets 11–17)
 *    becomes a CleaveGraph plus the input normalisation found in the graph;
 *  - export: a builder that emits one or more CleaveGraphs as branches of one
 *    ONNX graph (opset 13) with extra glue nodes (Sub/Div normalisation,
 *    Concat, ArgMax, ...), encoded by the matching protobuf writer.
 *
 * Input normalisation inside an ONNX graph (Sub/Div/Mul/Add by per-channel
 * constants applied to the graph input before anything else) is folded into
 * the returned per-channel mean/std — x_normalised = (x − mean) / std — and
 * NOT into the first convolution, so the imported graph keeps the original
 * weights and Cleave's own normalisation step reproduces the ONNX model.
 * Export does the reverse: Sub/Div nodes at the input, so the exported file
 * takes raw [0,1] pixels.
 *
 * Errors: malformed files are CLEAVE_ERROR_INVALID_FILE naming the file and
 * the field ("net.onnx: graph.initializer[3] 'conv1.weight': raw_data is 100
 * bytes, dims [8,1,3,3] need 288"); ops or attributes Cleave cannot represent
 * are CLEAVE_ERROR_UNSUPPORTED naming the node, the op and the attribute.
 */
#pragma once

#include <glib.h>
#include "cleave-graph.h"
#include "cleave-model.h"

G_BEGIN_DECLS

#define CLEAVE_ONNX_MAX_DIMS 8

/* TensorProto.DataType values used here */
enum {
  CLEAVE_ONNX_FLOAT   = 1,
  CLEAVE_ONNX_UINT8   = 2,
  CLEAVE_ONNX_INT8    = 3,
  CLEAVE_ONNX_INT32   = 6,
  CLEAVE_ONNX_INT64   = 7,
  CLEAVE_ONNX_BOOL    = 9,
  CLEAVE_ONNX_FLOAT16 = 10,
  CLEAVE_ONNX_DOUBLE  = 11,
};

/* AttributeProto.AttributeType */
typedef enum {
  CLEAVE_ONNX_ATTR_UNDEFINED = 0,
  CLEAVE_ONNX_ATTR_FLOAT     = 1,
  CLEAVE_ONNX_ATTR_INT       = 2,
  CLEAVE_ONNX_ATTR_STRING    = 3,
  CLEAVE_ONNX_ATTR_TENSOR    = 4,
  CLEAVE_ONNX_ATTR_GRAPH     = 5,
  CLEAVE_ONNX_ATTR_FLOATS    = 6,
  CLEAVE_ONNX_ATTR_INTS      = 7,
  CLEAVE_ONNX_ATTR_STRINGS   = 8,
  CLEAVE_ONNX_ATTR_TENSORS   = 9,
  CLEAVE_ONNX_ATTR_GRAPHS    = 10,
} CleaveOnnxAttrType;

/* A tensor with its data converted on load: float types (FLOAT, DOUBLE,
 * FLOAT16) to @f, integer types (INT64, INT32, INT8, UINT8, BOOL) to @i. */
typedef struct {
  char *name;
  int data_type;
  int ndim;
  gint64 dims[CLEAVE_ONNX_MAX_DIMS];
  gsize numel;
  float *f;            /* numel floats or NULL */
  gint64 *i;           /* numel ints or NULL */
} CleaveOnnxTensor;

typedef struct {
  char *name;
  CleaveOnnxAttrType type;
  float f;
  gint64 i;
  char *s;                   /* STRING (NUL-terminated copy) */
  CleaveOnnxTensor *t;       /* TENSOR */
  float *floats;  int n_floats;
  gint64 *ints;   int n_ints;
} CleaveOnnxAttr;

typedef struct {
  char *name;
  char *op_type;
  char *domain;              /* "" for the default domain */
  char **inputs;  int n_inputs;    /* "" marks an omitted optional input */
  char **outputs; int n_outputs;
  CleaveOnnxAttr *attrs; int n_attrs;
} CleaveOnnxNode;

/* ValueInfoProto with a tensor type; dims[k] < 0 when symbolic or unknown. */
typedef struct {
  char *name;
  int elem_type;             /* 0 when absent */
  int ndim;                  /* -1 when the shape is absent */
  gint64 dims[CLEAVE_ONNX_MAX_DIMS];
  char *dim_params[CLEAVE_ONNX_MAX_DIMS];  /* symbolic names or NULL */
} CleaveOnnxValueInfo;

typedef struct {
  gint64 ir_version;
  char *producer_name;
  char *producer_version;
  gint64 opset;              /* version of the default ("" / "ai.onnx") domain, 0 when absent */
  char *graph_name;
  GPtrArray *nodes;          /* CleaveOnnxNode* in file order */
  GPtrArray *initializers;   /* CleaveOnnxTensor* */
  GPtrArray *inputs;         /* CleaveOnnxValueInfo* */
  GPtrArray *outputs;        /* CleaveOnnxValueInfo* */
} CleaveOnnxModel;

CleaveOnnxModel *cleave_onnx_model_new   (void);
void             cleave_onnx_model_free  (CleaveOnnxModel *m);
/* Decodes a serialised ModelProto. @display_name is used in error messages. */
CleaveOnnxModel *cleave_onnx_model_parse (const guint8 *data, gsize size, const char *display_name, GError **error);
CleaveOnnxModel *cleave_onnx_model_load  (const char *path, GError **error);
/* Encodes a model (the inverse of parse, for the fields above). */
GBytes          *cleave_onnx_model_encode (const CleaveOnnxModel *m);
void             cleave_onnx_tensor_free (CleaveOnnxTensor *t);
const CleaveOnnxAttr *cleave_onnx_node_find_attr (const CleaveOnnxNode *n, const char *name);

/* ---- import ---- */

typedef struct {
  CleaveGraph *graph;        /* finalized, parameters filled */
  int n_classes;             /* features of the output */
  int n_channels;            /* input channels */
  float *mean, *std;         /* n_channels each: the graph's input normalisation (0 and 1 when none) */
  gboolean has_normalization;
  gboolean output_is_softmax;  /* a trailing Softmax was dropped: the ONNX model outputs probabilities */
  int n_outputs_used;        /* graph outputs read: 1, or one [N,1] score per class, concatenated */
  gint64 opset;
  char *producer;            /* "pytorch 1.13.0" or NULL */
} CleaveOnnxImport;

/* A graph with several outputs is read by this rule: its only float output
 * (exported compositions and patched models add an integer ArgMax class
 * index, which is ignored), or else, when every float output is one score
 * [N,1], those scores concatenated in order as the classes (an exported
 * module set). Nodes that the chosen outputs do not need are skipped. */
CleaveOnnxImport *cleave_onnx_import       (const char *path, GError **error);
CleaveOnnxImport *cleave_onnx_import_bytes (const guint8 *data, gsize size, const char *display_name, GError **error);
CleaveOnnxImport *cleave_onnx_import_model (const CleaveOnnxModel *m, const char *display_name, GError **error);
void              cleave_onnx_import_free  (CleaveOnnxImport *imp);
/* An ONNX file as a CleaveModel: mean/std from the graph's normalisation,
 * classes "0".."N-1", provenance {"onnx": {"file", "producer", "opset",
 * "output_is_softmax"}}. Fails for inputs with more than 4 channels. */
CleaveModel      *cleave_onnx_load_model   (const char *path, GError **error);

/* ---- export ---- */

/* Writes @g as an opset-13 ONNX model: input "input" [N,C,H,W] taking raw
 * pixels, Sub/Div by @mean/@std (per input channel; both NULL for none), the
 * graph (dropout omitted), output "logits" [N,F]. Atomic write. */
gboolean cleave_onnx_export_graph (const CleaveGraph *g, const float *mean, const float *std,
                                   const char *path, GError **error);

/* A builder for ONNX graphs made of several Cleave graphs plus glue nodes.
 * Value names returned are owned by the builder and valid until it is freed. */
typedef struct _CleaveOnnxBuilder CleaveOnnxBuilder;

CleaveOnnxBuilder *cleave_onnx_builder_new  (const char *graph_name);
void               cleave_onnx_builder_free (CleaveOnnxBuilder *b);

/* Declares a float graph input [N,C,H,W] with a symbolic batch "N". */
const char *cleave_onnx_builder_add_input (CleaveOnnxBuilder *b, const char *name, int c, int h, int w);
/* Declares a graph output. @dims may use -1 for the symbolic batch "N". */
void        cleave_onnx_builder_add_output (CleaveOnnxBuilder *b, const char *value, int elem_type,
                                            int ndim, const gint64 *dims);
/* Adds an initializer; the name is made unique if taken. Returns its name. */
const char *cleave_onnx_builder_add_initializer     (CleaveOnnxBuilder *b, const char *name, int ndim,
                                                     const gint64 *dims, const float *data);
const char *cleave_onnx_builder_add_initializer_i64 (CleaveOnnxBuilder *b, const char *name, int ndim,
                                                     const gint64 *dims, const gint64 *data);
/* Adds a node with one output; returns the node index. The output value is
 * named after the node ("<name>_output_0"). */
int         cleave_onnx_builder_add_node (CleaveOnnxBuilder *b, const char *op_type, const char *name,
                                          const char *const *inputs, int n_inputs);
const char *cleave_onnx_builder_node_output (CleaveOnnxBuilder *b, int node);
void        cleave_onnx_builder_set_int    (CleaveOnnxBuilder *b, int node, const char *attr, gint64 v);
void        cleave_onnx_builder_set_float  (CleaveOnnxBuilder *b, int node, const char *attr, float v);
void        cleave_onnx_builder_set_ints   (CleaveOnnxBuilder *b, int node, const char *attr, const gint64 *v, int n);
/* Sub/Div by per-channel constants on an [N,C,H,W] value; returns the normalised value. */
const char *cleave_onnx_builder_add_normalize (CleaveOnnxBuilder *b, const char *input, int n_channels,
                                               const float *mean, const float *std, const char *prefix);
/* Emits @g reading @input (a value of shape [N,C,H,W] matching the graph's
 * input). Node names become "/<prefix><node>/<Op>", initializer names
 * "<prefix><param name>". Returns the graph output value, or NULL on error. */
const char *cleave_onnx_builder_add_graph (CleaveOnnxBuilder *b, const CleaveGraph *g, const char *input,
                                           const char *prefix, GError **error);
/* The model so far (owned by the builder). */
const CleaveOnnxModel *cleave_onnx_builder_model (CleaveOnnxBuilder *b);
GBytes     *cleave_onnx_builder_to_bytes (CleaveOnnxBuilder *b);
/* Atomic write (temporary file + rename). */
gboolean    cleave_onnx_builder_save (CleaveOnnxBuilder *b, const char *path, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveOnnxModel, cleave_onnx_model_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveOnnxImport, cleave_onnx_import_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveOnnxBuilder, cleave_onnx_builder_free)

G_END_DECLS
