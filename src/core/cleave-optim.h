/* cleave-optim.h: SGD (momentum, weight decay) and Adam over (value, grad) pairs. */
#pragma once

#include "cleave-net.h"

G_BEGIN_DECLS

typedef enum {
  CLEAVE_OPTIM_SGD,
  CLEAVE_OPTIM_ADAM,
} CleaveOptimKind;

typedef struct _CleaveOptimizer CleaveOptimizer;

CleaveOptimizer *cleave_optimizer_new_sgd  (float lr, float momentum, float weight_decay);
CleaveOptimizer *cleave_optimizer_new_adam (float lr, float beta1, float beta2, float eps, float weight_decay);
void             cleave_optimizer_free     (CleaveOptimizer *opt);

/* Registers a parameter; the optimizer keeps pointers (not ownership). */
gboolean cleave_optimizer_add     (CleaveOptimizer *opt, CleaveTensor *value, CleaveTensor *grad, GError **error);
/* Registers every trainable parameter of @net. */
gboolean cleave_optimizer_add_net (CleaveOptimizer *opt, CleaveNet *net, GError **error);
gboolean cleave_optimizer_step    (CleaveOptimizer *opt, GError **error);
void     cleave_optimizer_set_lr  (CleaveOptimizer *opt, float lr);
float    cleave_optimizer_get_lr  (CleaveOptimizer *opt);

/* Step schedule: lr × gamma at each milestone epoch (e.g. 30% and 60% of the run). */
float cleave_step_lr (float base_lr, int epoch, const int *milestones, int n_milestones, float gamma);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (CleaveOptimizer, cleave_optimizer_free)

G_END_DECLS
