/* cleave-net.h: a graph bound to a backend — forward, backward, masks.
 *
 * The net owns device copies of the graph's parameters, their gradients
 * (for trainable ones), and per-node activation buffers sized for the last
 * batch size (reallocated when it grows). */
#pragma once

#include <gio/gio.h>
#include "cleave-graph.h"
#include "cleave-backend.h"

G_BEGIN_DECLS

typedef struct _CleaveNet CleaveNet;

/* Uploads the graph's parameters. The net keeps a pointer to @graph (it must
 * outlive the net) and a reference to @backend. */
CleaveNet     *cleave_net_new      (CleaveGraph *graph, CleaveBackend *backend, GError **error);
void           cleave_net_free     (CleaveNet *net);
CleaveGraph   *cleave_net_graph    (CleaveNet *net);
CleaveBackend *cleave_net_backend  (CleaveNet *net);

/* Forward pass on a host batch (NCHW floats, already normalised).
 * training: batch statistics in BN (running stats updated), dropout active. */
gboolean cleave_net_forward        (CleaveNet *net, const float *input, int batch, gboolean training, GError **error);
gboolean cleave_net_forward_tensor (CleaveNet *net, const CleaveTensor *input, gboolean training, GError **error);
/* Inference: an eval-mode forward (running statistics, no dropout) where the
 * backend can fuse conv → batchnorm [→ relu] chains into one pass
 * (cleave_conv2d_bn_forward; the cpu backend can). The output and the
 * outputs of relu/mask-site nodes are as after cleave_net_forward (to
 * rounding: the batchnorm is folded into the weights); the conv and
 * batchnorm nodes inside a fused chain are not written. cleave_net_backward
 * after it gives input and mask gradients (a frozen network, as in the
 * splitters' search), and fails when a layer of a fused chain has trainable
 * parameters. */
gboolean cleave_net_infer          (CleaveNet *net, const float *input, int batch, GError **error);
/* cleave_net_infer on @copies copies of @rows images (rows * copies in
 * all, copy g being rows [g*rows, (g+1)*rows)), as the splitters feed one
 * batch to every mask group: the layers up to the first mask that differs
 * between groups run on the @rows images once and their outputs are
 * copied (on the cpu backend, a conv → batchnorm → relu chain ending at
 * that mask is read repeated instead of copied). */
gboolean cleave_net_infer_repeated (CleaveNet *net, const float *input, int rows, int copies, GError **error);
/* Forward and backward passes check @cancellable (may be NULL; the net
 * keeps a reference) before each layer and fail with G_IO_ERROR_CANCELLED
 * once it is cancelled, so one pass over a large batch stops within a
 * layer. The activations and gradients are then incomplete; the next
 * forward starts afresh. */
void     cleave_net_set_cancellable (CleaveNet *net, GCancellable *cancellable);
/* Whether the last forward fused any chain. */
gboolean cleave_net_last_fused     (CleaveNet *net);
/* The output node's activation [batch, F] (owned by the net, valid until the next forward). */
CleaveTensor *cleave_net_output      (CleaveNet *net);
/* Any node's activation from the last forward (owned by the net). */
CleaveTensor *cleave_net_node_output (CleaveNet *net, int node);
/* Copies the output [batch, F] to host (caller-allocated, batch*F floats). */
gboolean cleave_net_download_output (CleaveNet *net, float *dst, GError **error);

/* Backward from d(loss)/d(output) [batch, F]. Writes gradients of trainable
 * parameters and, when masks with gradients are set, of the masks. Weight
 * gradients of frozen parameters are never computed. */
gboolean cleave_net_backward (CleaveNet *net, const CleaveTensor *doutput, GError **error);

/* Device tensors of parameter i (same index as in the graph); grad is NULL
 * for non-trainable parameters. Call cleave_net_refresh_trainable() after
 * changing trainable flags in the graph. */
CleaveTensor *cleave_net_param       (CleaveNet *net, int i);
CleaveTensor *cleave_net_param_grad  (CleaveNet *net, int i);
gboolean      cleave_net_refresh_trainable (CleaveNet *net, GError **error);
/* Copies device parameters back into the graph's host data (after training). */
gboolean      cleave_net_sync_to_graph   (CleaveNet *net, GError **error);
/* Re-uploads the graph's host data (after editing it on the host). */
gboolean      cleave_net_sync_from_graph (CleaveNet *net, GError **error);

/* Channel masks for the splitters. @masks has one tensor per mask site
 * (cleave_graph_n_mask_sites), each [groups, channels], on this backend; the
 * net does not take ownership. With groups G, a forward batch must be G*B:
 * samples [g*B, (g+1)*B) use mask row g. Tied sites may pass the same tensor.
 * With need_grad, backward fills cleave_net_mask_grad(site) ([groups, channels];
 * tied sites each get their own gradient, the caller sums them).
 * Pass masks = NULL to remove masks. */
gboolean      cleave_net_set_masks  (CleaveNet *net, CleaveTensor **masks, int groups, gboolean need_grad, GError **error);
CleaveTensor *cleave_net_mask_grad  (CleaveNet *net, int site);

/* Seed for dropout; each training forward advances it. */
void cleave_net_set_seed (CleaveNet *net, guint64 seed);

G_END_DECLS
