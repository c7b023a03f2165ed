/* gemm.cl: C = A B (+ bias) (+ C), tiled in local memory with register
 * blocking. Tile sizes come from the host as -D defines (TM, TN, TK, RM, RN),
 * chosen from the device's limits; the work-group is (TN/RN, TM/RM).
 *
 * Every operand is addressed as  off + row*rs + (col/blk)*bs + (col%blk)*cs,
 * which covers plain and transposed matrices (blk huge, bs 0) and NCHW
 * activations seen as [C, N*H*W] (blk = H*W, bs = C*H*W, cs = 1), so conv
 * needs no transposes. Each work-item owns RM x RN outputs strided by the
 * work-group size, so neighbouring work-items touch neighbouring memory.
 *
 * Split-K: dimension 2 of the NDRange picks a slice of K, [z*k_slice,
 * min(K, (z+1)*k_slice)), and the result goes to C + z*c_zs. With one slice
 * (k_slice = K, c_zs = 0) this is the plain GEMM; with several the host
 * points C at a [S][M][N] scratch buffer, passes no bias and no
 * accumulation, and gemm_splitk_reduce sums the slices. That is for weight
 * gradients, where M x N is a few tiles and K (batch x pixels) is huge: one
 * work-group per tile would leave most of a GPU idle. The addressing works
 * for any k, so slices need not follow the NCHW blocks. */

#define WG_X (TN / RN)
#define WG_Y (TM / RM)

/* The output step shared by the kernels: element (gm, gn) of C at
 * c_base + gm*c_rs + (gn/c_blk)*c_bs + (gn%c_blk)*c_cs gets v, plus the bias
 * per row (bias_mode 1) or per column (2), plus its old value when
 * accumulating. */
void
gemm_store (__global float *C, const int c_base, const int c_rs, const int c_cs, const int c_blk, const int c_bs,
            __global const float *bias, const int bias_off, const int bias_mode, const int accumulate,
            const int gm, const int gn, float v)
{
  const int idx = c_base + gm * c_rs + (gn / c_blk) * c_bs + (gn % c_blk) * c_cs;
  if (bias_mode == 1)
    v += bias[bias_off + gm];
  else if (bias_mode == 2)
    v += bias[bias_off + gn];
  if (accumulate)
    v += C[idx];
  C[idx] = v;
}

__kernel __attribute__ ((reqd_work_group_size (WG_X, WG_Y, 1))) void
gemm (const int M, const int N, const int K,
      __global const float *A, const int a_off, const int a_rs, const int a_cs, const int a_blk, const int a_bs,
      __global const float *B, const int b_off, const int b_rs, const int b_cs, const int b_blk, const int b_bs,
      __global float *C, const int c_off, const int c_rs, const int c_cs, const int c_blk, const int c_bs,
      __global const float *bias, const int bias_off, const int bias_mode, const int accumulate,
      const int k_slice, const int c_zs)
{
  __local float As[TK][TM];
  __local float Bs[TK][TN];
  const int tx = get_local_id (0), ty = get_local_id (1);
  const int tid = ty * WG_X + tx;
  const int m0 = get_group_id (1) * TM, n0 = get_group_id (0) * TN;
  const int kb = get_group_id (2) * k_slice, ke = min (K, kb + k_slice);
  const int c_base = c_off + get_group_id (2) * c_zs;
  float acc[RM][RN];

  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++)
      acc[i][j] = 0.0f;

  /* Which tile index runs fastest across work-items: the one contiguous in memory. */
  const int a_k_fast = a_cs == 1;
  const int b_n_fast = b_cs == 1;

  for (int k0 = kb; k0 < ke; k0 += TK)
    {
      for (int e = tid; e < TM * TK; e += WG_X * WG_Y)
        {
          const int mm = a_k_fast ? e / TK : e % TM;
          const int kk = a_k_fast ? e % TK : e / TM;
          const int gm = m0 + mm, gk = k0 + kk;
          float v = 0.0f;
          if (gm < M && gk < ke)
            v = A[a_off + gm * a_rs + (gk / a_blk) * a_bs + (gk % a_blk) * a_cs];
          As[kk][mm] = v;
        }
      for (int e = tid; e < TK * TN; e += WG_X * WG_Y)
        {
          const int nn = b_n_fast ? e % TN : e / TK;
          const int kk = b_n_fast ? e / TN : e % TK;
          const int gk = k0 + kk, gn = n0 + nn;
          float v = 0.0f;
          if (gk < ke && gn < N)
            v = B[b_off + gk * b_rs + (gn / b_blk) * b_bs + (gn % b_blk) * b_cs];
          Bs[kk][nn] = v;
        }
      barrier (CLK_LOCAL_MEM_FENCE);

      for (int kk = 0; kk < TK; kk++)
        {
          float a[RM], b[RN];
          for (int i = 0; i < RM; i++)
            a[i] = As[kk][ty + i * WG_Y];
          for (int j = 0; j < RN; j++)
            b[j] = Bs[kk][tx + j * WG_X];
          for (int i = 0; i < RM; i++)
            for (int j = 0; j < RN; j++)
              acc[i][j] = mad (a[i], b[j], acc[i][j]);
        }
      barrier (CLK_LOCAL_MEM_FENCE);
    }

  for (int i = 0; i < RM; i++)
    {
      const int gm = m0 + ty + i * WG_Y;
      if (gm >= M)
        continue;
      for (int j = 0; j < RN; j++)
        {
          const int gn = n0 + tx + j * WG_X;
          if (gn >= N)
            continue;
          gemm_store (C, c_base, c_rs, c_cs, c_blk, c_bs, bias, bias_off, bias_mode, accumulate, gm, gn, acc[i][j]);
        }
    }
}

/* gemm_strip: the CPU flavour (pocl). No local memory or barriers, which a
 * CPU runtime turns into loops over work-items; instead each work-item owns
 * SR rows x SW contiguous columns, so the inner loops run over contiguous
 * memory with compile-time trip counts and vectorise. Same arguments and
 * semantics as gemm. */
__kernel void
gemm_strip (const int M, const int N, const int K,
            __global const float *A, const int a_off, const int a_rs, const int a_cs, const int a_blk, const int a_bs,
            __global const float *B, const int b_off, const int b_rs, const int b_cs, const int b_blk, const int b_bs,
            __global float *C, const int c_off, const int c_rs, const int c_cs, const int c_blk, const int c_bs,
            __global const float *bias, const int bias_off, const int bias_mode, const int accumulate,
            const int k_slice, const int c_zs)
{
  const int j0 = get_global_id (0) * SW;
  const int i0 = get_global_id (1) * SR;
  if (j0 >= N || i0 >= M)
    return;
  float acc[SR][SW];
  for (int r = 0; r < SR; r++)
    for (int jj = 0; jj < SW; jj++)
      acc[r][jj] = 0.0f;

  int arow[SR];
  for (int r = 0; r < SR; r++)
    arow[r] = a_off + min (i0 + r, M - 1) * a_rs;

  /* The strip is contiguous in B when it stays inside one block. */
  const int b_fast = b_cs == 1 && j0 + SW <= N && j0 / b_blk == (j0 + SW - 1) / b_blk;
  const int b_base = b_off + (j0 / b_blk) * b_bs + (j0 % b_blk);
  const int kb = get_global_id (2) * k_slice, ke = min (K, kb + k_slice);
  const int c_base = c_off + get_global_id (2) * c_zs;
  int kq = kb / a_blk, kr = kb % a_blk;   /* k / a_blk and k % a_blk, kept incrementally */

  for (int k = kb; k < ke; k++)
    {
      const int ka = kq * a_bs + kr * a_cs;
      float a[SR], b[SW];
      for (int r = 0; r < SR; r++)
        a[r] = A[arow[r] + ka];
      if (b_fast)
        {
          __global const float *bp = B + b_base + k * b_rs;
          for (int jj = 0; jj < SW; jj++)
            b[jj] = bp[jj];
        }
      else
        for (int jj = 0; jj < SW; jj++)
          {
            const int gn = j0 + jj;
            b[jj] = gn < N ? B[b_off + k * b_rs + (gn / b_blk) * b_bs + (gn % b_blk) * b_cs] : 0.0f;
          }
      for (int r = 0; r < SR; r++)
        for (int jj = 0; jj < SW; jj++)
          acc[r][jj] = mad (a[r], b[jj], acc[r][jj]);
      if (++kr == a_blk)
        {
          kr = 0;
          kq++;
        }
    }

  for (int r = 0; r < SR; r++)
    {
      const int gm = i0 + r;
      if (gm >= M)
        break;
      for (int jj = 0; jj < SW; jj++)
        {
          const int gn = j0 + jj;
          if (gn >= N)
            break;
          gemm_store (C, c_base, c_rs, c_cs, c_blk, c_bs, bias, bias_off, bias_mode, accumulate, gm, gn, acc[r][jj]);
        }
    }
}

/* gemm_splitk_reduce: C = sum over the S slices of P[S][M][N] (+ bias)
 * (+ C), one work-item per element of C. The slices are added in order 0..S-1
 * by one work-item, so the result does not depend on scheduling. */
__kernel void
gemm_splitk_reduce (const int M, const int N, const int S, __global const float *P,
                    __global float *C, const int c_off, const int c_rs, const int c_cs, const int c_blk, const int c_bs,
                    __global const float *bias, const int bias_off, const int bias_mode, const int accumulate)
{
  const int i = get_global_id (0);
  const int mn = M * N;
  if (i >= mn)
    return;
  float v = 0.0f;
  for (int s = 0; s < S; s++)
    v += P[s * mn + i];
  gemm_store (C, c_off, c_rs, c_cs, c_blk, c_bs, bias, bias_off, bias_mode, accumulate, i / N, i % N, v);
}
