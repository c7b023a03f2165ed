/* reduce.cl: per-channel sums, one work-group per output element.
 * RED_WG is the largest local size the host may use (a power of two); the
 * host may launch with a smaller power of two when the device demands it. */

float
local_sum (__local float *scratch, float v)
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
  return scratch[0];
}

/* out[g*C + c] = sum over samples n in [g*B, (g+1)*B) and positions p < HW of
 * a[n,c,p] (times b[n,c,p] when has_b). x is [G*B, C, HW]. */
__kernel void
channel_reduce (const int c_count, const int hw, const int per_group, const int has_b,
                __global const float *a, __global const float *b, __global float *out)
{
  __local float scratch[RED_WG];
  const int gc = get_group_id (0);
  const int g = gc / c_count, c = gc % c_count;
  const int lid = get_local_id (0), lsz = get_local_size (0);
  const int total = per_group * hw;
  float s = 0.0f;

  for (int i = lid; i < total; i += lsz)
    {
      const int n = g * per_group + i / hw;
      const size_t idx = ((size_t) n * c_count + c) * hw + i % hw;
      s += has_b ? a[idx] * b[idx] : a[idx];
    }
  s = local_sum (scratch, s);
  if (lid == 0)
    out[gc] = s;
}

/* Mean of the n values of x into out[0] (the loss). */
__kernel void
mean_reduce (const int n, __global const float *x, __global float *out)
{
  __local float scratch[RED_WG];
  const int lid = get_local_id (0), lsz = get_local_size (0);
  float s = 0.0f;
  for (int i = lid; i < n; i += lsz)
    s += x[i];
  s = local_sum (scratch, s);
  if (lid == 0)
    out[0] = s / (float) n;
}
