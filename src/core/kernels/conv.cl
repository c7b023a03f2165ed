/* conv.cl: im2col / col2im for one group of a chunk of samples. The column
 * matrix is [Cig*K*K, nb*Ho*Wo]: the batch is folded into the GEMM's N so that
 * small images still give wide matrices. */

/* One work-item per (input channel, sample, output row): it writes K*K runs
 * of Wo contiguous values, which keeps the per-item overhead of CPU runtimes
 * low and the stores contiguous. */
__kernel void
im2col (const int rows, const int cols, const int c_in, const int h, const int w,
        const int ho, const int wo, const int k, const int s, const int pad,
        const int n0, const int c0, __global const float *x, __global float *col)
{
  const int row = get_global_id (0);    /* nl * ho + oh */
  const int cl = get_global_id (1);     /* channel within the group */
  if (row >= cols / wo || cl * k * k >= rows)
    return;
  const int nl = row / ho, oh = row % ho;
  __global const float *xp = x + ((size_t) (n0 + nl) * c_in + c0 + cl) * h * w;
  for (int kh = 0; kh < k; kh++)
    {
      const int ih = oh * s - pad + kh;
      for (int kw = 0; kw < k; kw++)
        {
          __global float *dst = col + (size_t) ((cl * k + kh) * k + kw) * cols + (size_t) row * wo;
          if (ih < 0 || ih >= h)
            {
              for (int ow = 0; ow < wo; ow++)
                dst[ow] = 0.0f;
              continue;
            }
          for (int ow = 0; ow < wo; ow++)
            {
              const int iw = ow * s - pad + kw;
              dst[ow] = iw >= 0 && iw < w ? xp[ih * w + iw] : 0.0f;
            }
        }
    }
}

/* dx[n0+nl, c0+ci, ih, iw] = sum of the column entries that read it. */
__kernel void
col2im (const int n_elems, const int cig, const int cols, const int c_in, const int h, const int w,
        const int ho, const int wo, const int k, const int s, const int pad,
        const int n0, const int c0, __global const float *col, __global float *dx)
{
  const int i = get_global_id (0);
  if (i >= n_elems)
    return;
  const int iw = i % w, ih = (i / w) % h, ci = (i / (w * h)) % cig, nl = i / (w * h * cig);
  const int hw = ho * wo;
  float g = 0.0f;
  for (int kh = 0; kh < k; kh++)
    {
      const int th = ih + pad - kh;
      if (th < 0 || th % s != 0)
        continue;
      const int oh = th / s;
      if (oh >= ho)
        continue;
      for (int kw = 0; kw < k; kw++)
        {
          const int tw = iw + pad - kw;
          if (tw < 0 || tw % s != 0)
            continue;
          const int ow = tw / s;
          if (ow >= wo)
            continue;
          g += col[(size_t) ((ci * k + kh) * k + kw) * cols + nl * hw + oh * wo + ow];
        }
    }
  dx[(((size_t) (n0 + nl) * c_in + c0 + ci) * h + ih) * w + iw] = g;
}

/* im2row: the transpose of im2col, [nb*Ho*Wo, Cig*K*K], so that the weight
 * gradient's GEMM reads both operands along contiguous memory. */
__kernel void
im2row (const int rows, const int cols, const int c_in, const int h, const int w,
        const int ho, const int wo, const int k, const int s, const int pad,
        const int n0, const int c0, __global const float *x, __global float *out)
{
  const int r = get_global_id (0);
  const int j = get_global_id (1);
  if (j >= cols || r >= rows)
    return;
  const int kw = r % k, kh = (r / k) % k, ci = c0 + r / (k * k);
  const int hw = ho * wo;
  const int nl = j / hw, p = j % hw;
  const int ih = (p / wo) * s - pad + kh, iw = (p % wo) * s - pad + kw;
  float v = 0.0f;
  if (ih >= 0 && ih < h && iw >= 0 && iw < w)
    v = x[(((size_t) (n0 + nl) * c_in + ci) * h + ih) * w + iw];
  out[(size_t) j * rows + r] = v;
}
