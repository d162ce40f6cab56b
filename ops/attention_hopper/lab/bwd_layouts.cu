// ops/attention_hopper/lab/bwd_layouts.cu — host check (no GPU) of the layout facts bwd_wgmma.cuh
// rests on, with CuTe's own layout algebra:
//   - the transposed views (Q^T, dO^T, K^T, dS^T) address the same element as the plain ones;
//   - the staged Q layout covers its buffer once; 16-byte cp.async chunks stay contiguous under
//     the swizzle; neighbouring queries of dS^T are neighbours in memory (its 4-byte stores);
//   - element i of a thread's S^T accumulator is element j of its dV/dK register A operand
//     (ALayout(j) = i) at the same (key, query), for all 256 threads: P^T and dS^T feed wgmma
//     straight from registers.
// Build and run (from the repository root; prints "bad=0" for each head dim and exits 0):
//   nvcc -std=c++17 --expt-relaxed-constexpr -DVT_WITH_CUDA -Iopsdk/include \
//     -I.venv/lib/python3.11/site-packages/cutlass_library/source/include -Iops/attention_hopper \
//     -x cu ops/attention_hopper/lab/bwd_layouts.cu -o /tmp/bwd_layouts && /tmp/bwd_layouts
#include <cstdio>
#include <vector>

#include "bwd_wgmma.cuh"

using namespace cute;

template <class E, int D>
int check() {
  using T = vt_fmha::wgmma_bwd::Traits<E, D>;
  constexpr int Br = T::Br, Bc = T::Bc;
  int bad = 0;
  typename T::LayoutQ lq;
  typename T::LayoutQt lqt;
  typename T::LayoutKV lk;
  typename T::LayoutKt lkt;
  typename T::LayoutdS ls;
  typename T::LayoutdSt lst;
  for (int s = 0; s < T::kStages; ++s)
    for (int r = 0; r < Br; ++r)
      for (int d = 0; d < D; ++d) bad += lq(r, d, s) != lqt(d, r, s);
  for (int r = 0; r < Bc; ++r)
    for (int d = 0; d < D; ++d) bad += lk(r, d) != lkt(d, r);
  for (int r = 0; r < Br; ++r)
    for (int c = 0; c < Bc; ++c) bad += ls(r, c) != lst(c, r);
  std::vector<int> seen(cosize(lq), 0);
  for (int s = 0; s < T::kStages; ++s)
    for (int r = 0; r < Br; ++r)
      for (int d = 0; d < D; ++d) seen[lq(r, d, s)]++;
  for (int x : seen) bad += x != 1;
  for (int r = 0; r < Br; ++r)
    for (int d = 0; d < D; d += 8)
      for (int j = 1; j < 8; ++j) bad += lq(r, d + j, 1) != lq(r, d, 1) + j;
  for (int r = 0; r < Bc; ++r)
    for (int d = 0; d < D; d += 8)
      for (int j = 1; j < 8; ++j) bad += lk(r, d + j) != lk(r, d) + j;
  for (int c = 0; c < Bc; ++c)
    for (int r = 0; r < Br; r += 2) bad += lst(c, r + 1) != lst(c, r) + 1;

  using ALayout = Layout<Shape<Shape<_2, _2, _2>, _1, Int<Br / 16>>, Stride<Stride<_1, _2, _4>, _0, _8>>;
  typename T::MmaSdP sdp;
  typename T::MmadKV dkv;
  for (int t = 0; t < vt_fmha::wgmma_bwd::kThreads; ++t) {
    auto cS = sdp.get_thread_slice(t).partition_C(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
    auto cA = dkv.get_thread_slice(t).partition_A(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
    for (int j = 0; j < size(ALayout{}); ++j) bad += !(cA(j) == cS(ALayout{}(j)));
  }
  std::printf("D=%d Br=%d Bc=%d bad=%d\n", D, Br, Bc, bad);
  return bad;
}

int main() {
  return check<cutlass::bfloat16_t, 64>() + check<cutlass::half_t, 64>() + check<cutlass::bfloat16_t, 128>() +
         check<cutlass::half_t, 128>() != 0;
}
