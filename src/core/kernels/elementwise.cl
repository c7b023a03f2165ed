/* elementwise.cl: one work-item per element; the global size is rounded up,
 * so every kernel checks its bound. */

__kernel void
relu_forward (const int n, __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    y[i] = fmax (x[i], 0.0f);
}

__kernel void
relu_backward (const int n, __global const float *y, __global const float *dy, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n)
    dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

__kernel void
sigmoid_forward (const int n, __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    y[i] = 1.0f / (1.0f + exp (-x[i]));
}

__kernel void
sigmoid_backward (const int n, __global const float *y, __global const float *dy, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n)
    dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

__kernel void
clamp_forward (const int n, __global const float *x, __global float *y, const float alpha, const float beta,
               const float lo, const float hi)
{
  const int i = get_global_id (0);
  if (i < n)
    y[i] = fmin (fmax (alpha * x[i] + beta, lo), hi);
}

__kernel void
clamp_backward (const int n, __global const float *y, __global const float *dy, __global float *dx,
                const float alpha, const float lo, const float hi)
{
  const int i = get_global_id (0);
  if (i < n)
    dx[i] = y[i] > lo && y[i] < hi ? alpha * dy[i] : 0.0f;
}

/* Row-wise softmax of [N,F], one work-item per row. */
__kernel void
softmax_forward (const int n, const int f, __global const float *x, __global float *y)
{
  const int r = get_global_id (0);
  if (r < n)
    {
      __global const float *xr = x + (size_t) r * f;
      __global float *yr = y + (size_t) r * f;
      float mx = xr[0], s = 0.0f;
      for (int k = 1; k < f; k++)
        mx = fmax (mx, xr[k]);
      for (int k = 0; k < f; k++)
        s += yr[k] = exp (xr[k] - mx);
      for (int k = 0; k < f; k++)
        yr[k] /= s;
    }
}

__kernel void
softmax_backward (const int n, const int f, __global const float *y, __global const float *dy, __global float *dx)
{
  const int r = get_global_id (0);
  if (r < n)
    {
      __global const float *yr = y + (size_t) r * f, *dr = dy + (size_t) r * f;
      __global float *xr = dx + (size_t) r * f;
      float s = 0.0f;
      for (int k = 0; k < f; k++)
        s += dr[k] * yr[k];
      for (int k = 0; k < f; k++)
        xr[k] = yr[k] * (dr[k] - s);
    }
}

/* y channel k·groups + g = x channel g·(C/groups) + k; one work-item per element. */
__kernel void
channel_shuffle (const int n, const int c, const int hw, const int groups,
                 __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      const int p = i % hw;
      const int ch = (i / hw) % c;
      const int b = i / (hw * c);
      const int k = ch / groups, g = ch % groups;
      y[i] = x[(b * c + g * (c / groups) + k) * hw + p];
    }
}

__kernel void
mul (const int n, __global const float *a, __global const float *b, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    y[i] = a[i] * b[i];
}

__kernel void
axpby (const int n, const float alpha, __global const float *a, const float beta,
       __global const float *b, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    y[i] = alpha * a[i] + beta * b[i];
}

/* Must stay identical to cleave_dropout_uniform() in cleave-backend.h: the
 * keep mask is compared bit for bit against the cpu backend. */
float
dropout_uniform (ulong seed, ulong index)
{
  ulong z = seed + (index + 1) * 0x9E3779B97F4A7C15UL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
  z = z ^ (z >> 31);
  return (float) (z >> 40) * (1.0f / 16777216.0f);
}

__kernel void
dropout_forward (const int n, __global const float *x, __global float *y, __global float *keep,
                 const float p, const float scale, const ulong seed, const int has_keep)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      const float k = dropout_uniform (seed, (ulong) i) >= p ? scale : 0.0f;
      if (has_keep)
        keep[i] = k;
      y[i] = x[i] * k;
    }
}

/* src[N,Cs,HW] <-> dst[N,Cd,HW] at channel offset; one work-item per src element. */
__kernel void
channel_copy_in (const int n, const int cs, const int cd, const int hw, const int offset,
                 __global const float *src, __global float *dst)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      const int p = i % hw;
      const int c = (i / hw) % cs;
      const int b = i / (hw * cs);
      dst[(b * cd + offset + c) * hw + p] = src[i];
    }
}

__kernel void
channel_copy_out (const int n, const int cs, const int cd, const int hw, const int offset,
                  __global const float *src, __global float *dst)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      const int p = i % hw;
      const int c = (i / hw) % cd;
      const int b = i / (hw * cd);
      dst[i] = src[(b * cs + offset + c) * hw + p];
    }
}

/* y = x * m[n / per_group, c]; y is [N, C, HW], x its first xn / (C·HW)
 * rows, repeated (xn = n: the whole batch). */
__kernel void
mask_apply (const int n, const int xn, const int c, const int hw, const int per_group,
            __global const float *x, __global const float *m, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      const int ch = (i / hw) % c;
      const int b = i / (hw * c);
      y[i] = x[xn < n ? i % xn : i] * m[(b / per_group) * c + ch];
    }
}

/* Global average pooling over HW for each of the @n (sample, channel) pairs. */
__kernel void
global_avgpool_forward (const int n, const int hw, __global const float *x, __global float *y)
{
  const int i = get_global_id (0);
  if (i < n)
    {
      __global const float *p = x + (size_t) i * hw;
      float s = 0.0f;
      for (int k = 0; k < hw; k++)
        s += p[k];
      y[i] = s / (float) hw;
    }
}

__kernel void
global_avgpool_backward (const int n, const int hw, __global const float *dy, __global float *dx)
{
  const int i = get_global_id (0);
  if (i < n)
    dx[i] = dy[i / hw] / (float) hw;
}
