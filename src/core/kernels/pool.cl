/* pool.cl: max and average pooling. Backward passes gather (one work-item per
 * input element) so no atomics are needed. */

/* Index (in the plane) of the first maximum of one window, -1 if the window
 * holds only padding. NaN wins, as in PyTorch. */
int
maxpool_argmax (__global const float *plane, const int h, const int w,
                const int oh, const int ow, const int k, const int s, const int pad)
{
  float best = -INFINITY;
  int arg = -1;
  for (int i = 0; i < k; i++)
    {
      const int ih = oh * s - pad + i;
      if (ih < 0 || ih >= h)
        continue;
      for (int j = 0; j < k; j++)
        {
          const int iw = ow * s - pad + j;
          if (iw < 0 || iw >= w)
            continue;
          const float v = plane[ih * w + iw];
          if (arg < 0 || v > best || isnan (v))
            {
              best = v;
              arg = ih * w + iw;
              if (isnan (v))
                return arg;
            }
        }
    }
  return arg;
}

__kernel void
maxpool_forward (const int n_out, const int h, const int w, const int ho, const int wo,
                 const int k, const int s, const int pad, const int exclude_pad,
                 __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n_out)
    {
      const int ow = i % wo, oh = (i / wo) % ho, plane = i / (wo * ho);
      __global const float *xp = x + (size_t) plane * h * w;
      const int a = maxpool_argmax (xp, h, w, oh, ow, k, s, pad);
      y[i] = a >= 0 ? xp[a] : -INFINITY;
    }
}

/* Output rows/cols whose window covers input index @in: [lo, hi). */
void
pool_range (const int in, const int k, const int s, const int pad, const int out_size,
            int *lo, int *hi)
{
  const int t = in + pad - k + 1;
  int a = t <= 0 ? 0 : (t + s - 1) / s;
  int b = (in + pad) / s + 1;
  *lo = a;
  *hi = min (b, out_size);
}

__kernel void
maxpool_backward (const int n_in, const int h, const int w, const int ho, const int wo,
                  const int k, const int s, const int pad, const int exclude_pad,
                  __global const float *x, __global const float *dy, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n_in)
    {
      const int iw = i % w, ih = (i / w) % h, plane = i / (w * h);
      __global const float *xp = x + (size_t) plane * h * w;
      __global const float *dyp = dy + (size_t) plane * ho * wo;
      int oh0, oh1, ow0, ow1;
      float g = 0.0f;
      pool_range (ih, k, s, pad, ho, &oh0, &oh1);
      pool_range (iw, k, s, pad, wo, &ow0, &ow1);
      for (int oh = oh0; oh < oh1; oh++)
        for (int ow = ow0; ow < ow1; ow++)
          if (maxpool_argmax (xp, h, w, oh, ow, k, s, pad) == ih * w + iw)
            g += dyp[oh * wo + ow];
      dx[i] = g;
    }
}

/* The window's divisor, as cleave_avgpool_divisor() in cleave-ops.h: the
 * window clipped to the padded input, or to the input with exclude_pad. */
float
avgpool_divisor (const int oh, const int ow, const int h, const int w, const int k, const int s,
                 const int pad, const int exclude_pad)
{
  int h0 = oh * s - pad, w0 = ow * s - pad;
  int h1 = min (h0 + k, h + pad), w1 = min (w0 + k, w + pad);
  if (exclude_pad)
    {
      h0 = max (h0, 0);
      w0 = max (w0, 0);
      h1 = min (h1, h);
      w1 = min (w1, w);
    }
  return (float) max ((h1 - h0) * (w1 - w0), 1);
}

__kernel void
avgpool_forward (const int n_out, const int h, const int w, const int ho, const int wo,
                 const int k, const int s, const int pad, const int exclude_pad,
                 __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n_out)
    {
      const int ow = i % wo, oh = (i / wo) % ho, plane = i / (wo * ho);
      __global const float *xp = x + (size_t) plane * h * w;
      float sum = 0.0f;
      for (int a = 0; a < k; a++)
        {
          const int ih = oh * s - pad + a;
          if (ih < 0 || ih >= h)
            continue;
          for (int b = 0; b < k; b++)
            {
              const int iw = ow * s - pad + b;
              if (iw >= 0 && iw < w)
                sum += xp[ih * w + iw];
            }
        }
      y[i] = sum / avgpool_divisor (oh, ow, h, w, k, s, pad, exclude_pad);
    }
}

__kernel void
avgpool_backward (const int n_in, const int h, const int w, const int ho, const int wo,
                  const int k, const int s, const int pad, const int exclude_pad,
                  __global const float *dy, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n_in)
    {
      const int iw = i % w, ih = (i / w) % h, plane = i / (w * h);
      __global const float *dyp = dy + (size_t) plane * ho * wo;
      int oh0, oh1, ow0, ow1;
      float g = 0.0f;
      pool_range (ih, k, s, pad, ho, &oh0, &oh1);
      pool_range (iw, k, s, pad, wo, &ow0, &ow1);
      for (int oh = oh0; oh < oh1; oh++)
        for (int ow = ow0; ow < ow1; ow++)
          g += dyp[oh * wo + ow] / avgpool_divisor (oh, ow, h, w, k, s, pad, exclude_pad);
      dx[i] = g;
    }
}
