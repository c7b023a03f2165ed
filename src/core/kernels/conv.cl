/* conv.cl: im2col / col2im for one group of a chunk of samples. The column
 * matrix is [Cig*K*K, nb*Ho*Wo]: the batch is folded into the GEMM's N so that
 * small images still give wide matrices. */

__kernel void
im2col (const int rows, const int cols, const int c_in, const int h, const int w,
        const int ho, const int wo, const int k, const int s, const int pad,
        const int n0, const int c0, __global const float *x, __global float *col)
{
  const int j = get_global_id (0);
  const int r = get_global_id (1);
  if (j >= cols || r >= rows)
    return;
  const int kw = r % k, kh = (r / k) % k, ci = c0 + r / (k * k);
  const int hw = ho * wo;
  const int nl = j / hw, p = j % hw;
  const int ih = (p / wo) * s - pad + kh, iw = (p % wo) * s - pad + kw;
  float v = 0.0f;
  if (ih >= 0 && ih < h && iw >= 0 && iw < w)
    v = x[(((size_t) (n0 + nl) * c_in + ci) * h + ih) * w + iw];
  col[(size_t) r * cols + j] = v;
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
