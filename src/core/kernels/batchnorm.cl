/* batchnorm.cl: statistics per channel on the device (one work-group per
 * channel, two passes so the variance does not cancel), then elementwise. */

float
bn_local_sum (__local float *scratch, float v)
{
  const int lid = get_local_id (0);
  scratch[lid] = v;
  barrier (CLK_LOCAL_MEM_FENCE);
  for (int s = get_local_size (0) / 2; s > 0; s >>= 1)
    {
      if (lid < s)
        scratch[lid] += scratch[lid + s];
      barrier (CLK_LOCAL_MEM_FENCE);
    }
  const float r = scratch[0];
  barrier (CLK_LOCAL_MEM_FENCE);
  return r;
}

__kernel void
bn_stats (const int n, const int c_count, const int hw, const float momentum, const float eps,
          __global const float *x, __global float *save_mean, __global float *save_invstd,
          __global float *running_mean, __global float *running_var, const int has_running)
{
  __local float scratch[RED_WG];
  const int c = get_group_id (0);
  const int lid = get_local_id (0), lsz = get_local_size (0);
  const int total = n * hw;
  float s = 0.0f;

  for (int i = lid; i < total; i += lsz)
    s += x[((size_t) (i / hw) * c_count + c) * hw + i % hw];
  const float mean = bn_local_sum (scratch, s) / (float) total;

  float q = 0.0f;
  for (int i = lid; i < total; i += lsz)
    {
      const float d = x[((size_t) (i / hw) * c_count + c) * hw + i % hw] - mean;
      q += d * d;
    }
  const float m2 = bn_local_sum (scratch, q);

  if (lid == 0)
    {
      const float var = m2 / (float) total;
      save_mean[c] = mean;
      save_invstd[c] = 1.0f / sqrt (var + eps);
      if (!has_running)
        return;
      const float unbiased = total > 1 ? m2 / (float) (total - 1) : var;
      running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
      running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
    }
}

/* y = (x - mean[c]) * invstd[c] * gamma[c] + beta[c]; use_running turns the
 * running variance into 1/sqrt(var + eps) on the fly. */
__kernel void
bn_apply (const int n_elems, const int c_count, const int hw, const int use_running, const float eps,
          __global const float *x, __global const float *mean, __global const float *var_or_invstd,
          __global const float *gamma, __global const float *beta, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n_elems)
    {
      const int c = (i / hw) % c_count;
      const float invstd = use_running ? 1.0f / sqrt (var_or_invstd[c] + eps) : var_or_invstd[c];
      y[i] = (x[i] - mean[c]) * invstd * gamma[c] + beta[c];
    }
}

/* sums[c] = sum dy, sums[C + c] = sum dy * xhat. */
__kernel void
bn_backward_reduce (const int n, const int c_count, const int hw,
                    __global const float *x, __global const float *dy,
                    __global const float *mean, __global const float *invstd,
                    __global float *sums)
{
  __local float scratch[RED_WG];
  const int c = get_group_id (0);
  const int lid = get_local_id (0), lsz = get_local_size (0);
  const int total = n * hw;
  const float mu = mean[c], is = invstd[c];
  float s = 0.0f, t = 0.0f;

  for (int i = lid; i < total; i += lsz)
    {
      const size_t idx = ((size_t) (i / hw) * c_count + c) * hw + i % hw;
      const float g = dy[idx];
      s += g;
      t += g * (x[idx] - mu) * is;
    }
  s = bn_local_sum (scratch, s);
  t = bn_local_sum (scratch, t);
  if (lid == 0)
    {
      sums[c] = s;
      sums[c_count + c] = t;
    }
}

/* training: dx = gamma*invstd/M * (M*dy - sum_dy - xhat*sum_dy_xhat);
 * eval: dx = dy * gamma * invstd. */
__kernel void
bn_backward_dx (const int n_elems, const int c_count, const int hw, const int training,
                __global const float *x, __global const float *dy, __global const float *gamma,
                __global const float *mean, __global const float *invstd,
                __global const float *sums, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n_elems)
    {
      const int c = (i / hw) % c_count;
      const float is = invstd[c];
      const float k = gamma[c] * is;
      if (training)
        {
          const float m = (float) (n_elems / c_count);
          const float xhat = (x[i] - mean[c]) * is;
          dx[i] = k * (dy[i] - sums[c] / m - xhat * sums[c_count + c] / m);
        }
      else
        dx[i] = dy[i] * k;
    }
}
