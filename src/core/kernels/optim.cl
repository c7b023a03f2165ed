/* optim.cl: PyTorch's SGD and Adam updates, elementwise. */

__kernel void
sgd_step (const int n, __global float *param, __global const float *grad, __global float *buf,
          const float lr, const float momentum, const float weight_decay, const int first_step,
          const int use_buf)
{
  const int i = get_global_id (0);
  if (i >= n)
    return;
  float g = grad[i] + weight_decay * param[i];
  if (use_buf)
    {
      g = first_step ? g : momentum * buf[i] + g;
      buf[i] = g;
    }
  param[i] -= lr * g;
}

/* step_size = lr / (1 - beta1^t), inv_bc2_sqrt = 1 / sqrt(1 - beta2^t), both from the host. */
__kernel void
adam_step (const int n, __global float *param, __global const float *grad, __global float *m,
           __global float *v, const float beta1, const float beta2, const float eps,
           const float weight_decay, const float step_size, const float inv_bc2_sqrt)
{
  const int i = get_global_id (0);
  if (i >= n)
    return;
  const float g = grad[i] + weight_decay * param[i];
  const float mi = beta1 * m[i] + (1.0f - beta1) * g;
  const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
  m[i] = mi;
  v[i] = vi;
  param[i] -= step_size * mi / (sqrt (vi) * inv_bc2_sqrt + eps);
}
