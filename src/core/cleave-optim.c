/* cleave-optim.c: optimisers; the arithmetic is in the backends' step ops. */
#include "cleave-optim.h"
#include "cleave-ops.h"
#include "cleave-graph.h"

typedef struct {
  CleaveTensor *value, *grad;
  CleaveTensor *s0, *s1;   /* SGD: momentum buffer; Adam: m, v */
} Slot;

struct _CleaveOptimizer {
  CleaveOptimKind kind;
  float lr, momentum, weight_decay, beta1, beta2, eps;
  int t;
  GArray *slots;
};

static CleaveOptimizer *
optimizer_new (CleaveOptimKind kind)
{
  CleaveOptimizer *o = g_new0 (CleaveOptimizer, 1);
  o->kind = kind;
  o->slots = g_array_new (FALSE, TRUE, sizeof (Slot));
  return o;
}

CleaveOptimizer *
cleave_optimizer_new_sgd (float lr, float momentum, float weight_decay)
{
  CleaveOptimizer *o = optimizer_new (CLEAVE_OPTIM_SGD);
  o->lr = lr;
  o->momentum = momentum;
  o->weight_decay = weight_decay;
  return o;
}

CleaveOptimizer *
cleave_optimizer_new_adam (float lr, float beta1, float beta2, float eps, float weight_decay)
{
  CleaveOptimizer *o = optimizer_new (CLEAVE_OPTIM_ADAM);
  o->lr = lr;
  o->beta1 = beta1;
  o->beta2 = beta2;
  o->eps = eps;
  o->weight_decay = weight_decay;
  return o;
}

void
cleave_optimizer_free (CleaveOptimizer *o)
{
  if (o == NULL)
    return;
  for (guint i = 0; i < o->slots->len; i++)
    {
      Slot *s = &g_array_index (o->slots, Slot, i);
      cleave_tensor_free (s->s0);
      cleave_tensor_free (s->s1);
    }
  g_array_unref (o->slots);
  g_free (o);
}

gboolean
cleave_optimizer_add (CleaveOptimizer *o, CleaveTensor *value, CleaveTensor *grad, GError **error)
{
  Slot s = { value, grad, NULL, NULL };
  CleaveBackend *b = value->buf->backend;

  s.s0 = cleave_tensor_new (b, value->ndim, value->shape, error);
  if (s.s0 == NULL || !cleave_tensor_fill (s.s0, 0.0f, error))
    goto fail;
  if (o->kind == CLEAVE_OPTIM_ADAM)
    {
      s.s1 = cleave_tensor_new (b, value->ndim, value->shape, error);
      if (s.s1 == NULL || !cleave_tensor_fill (s.s1, 0.0f, error))
        goto fail;
    }
  g_array_append_val (o->slots, s);
  return TRUE;
fail:
  cleave_tensor_free (s.s0);
  cleave_tensor_free (s.s1);
  return FALSE;
}

gboolean
cleave_optimizer_add_net (CleaveOptimizer *o, CleaveNet *net, GError **error)
{
  CleaveGraph *g = cleave_net_graph (net);
  for (int i = 0; i < cleave_graph_n_params (g); i++)
    if (cleave_net_param_grad (net, i) != NULL &&
        !cleave_optimizer_add (o, cleave_net_param (net, i), cleave_net_param_grad (net, i), error))
      return FALSE;
  return TRUE;
}

gboolean
cleave_optimizer_step (CleaveOptimizer *o, GError **error)
{
  o->t++;
  for (guint i = 0; i < o->slots->len; i++)
    {
      Slot *s = &g_array_index (o->slots, Slot, i);
      gboolean ok;
      if (o->kind == CLEAVE_OPTIM_SGD)
        ok = cleave_sgd_step (s->value, s->grad, s->s0, o->lr, o->momentum, o->weight_decay, o->t == 1, error);
      else
        ok = cleave_adam_step (s->value, s->grad, s->s0, s->s1, o->lr, o->beta1, o->beta2, o->eps,
                               o->weight_decay, o->t, error);
      if (!ok)
        return FALSE;
    }
  return TRUE;
}

void
cleave_optimizer_set_lr (CleaveOptimizer *o, float lr)
{
  o->lr = lr;
}

float
cleave_optimizer_get_lr (CleaveOptimizer *o)
{
  return o->lr;
}

float
cleave_step_lr (float base_lr, int epoch, const int *milestones, int n_milestones, float gamma)
{
  float lr = base_lr;
  for (int i = 0; i < n_milestones; i++)
    if (epoch >= milestones[i])
      lr *= gamma;
  return lr;
}
