/* loss.cl: softmax cross-entropy, one work-item per sample; the batch mean
 * is taken by mean_reduce (reduce.cl). */

__kernel void
softmax_ce (const int n, const int c, __global const float *logits, __global const float *labels,
            __global float *losses, __global float *dlogits, const int want_grad)
{
  const int i = get_global_id (0);
  if (i >= n)
    return;
  __global const float *z = logits + (size_t) i * c;
  /* An out-of-range label must not read outside the row. */
  const int label = clamp ((int) labels[i], 0, c - 1);
  float mx = z[0];
  for (int j = 1; j < c; j++)
    mx = fmax (mx, z[j]);
  float sum = 0.0f;
  for (int j = 0; j < c; j++)
    sum += exp (z[j] - mx);
  const float lse = mx + log (sum);
  losses[i] = lse - z[label];
  if (want_grad)
    {
      __global float *d = dlogits + (size_t) i * c;
      const float inv_n = 1.0f / (float) n;
      for (int j = 0; j < c; j++)
        d[j] = (exp (z[j] - lse) - (j == label ? 1.0f : 0.0f)) * inv_n;
    }
}
