// ops/attention_hopper/lab/bwd_layouts.cu — host check (no GPU) of the layout facts bwd_wgmma.cuh
// rests on, with CuTe's own layout algebra:
//   - the transposed views (Q^T, dO^T, K^T, dS^T) address the same element as the plain ones;
//   - Offsets<L> (bwd_wgmma2.cuh: element offsets from a 1024-aligned base) lands where cute's own
//     swizzled pointer does, for Q (both stages), K/V and dS^T; evaluating L itself does not (its
//     swizzle is in bytes: the bug of commit 8b4988a, counted and printed, not failed on);
//   - TiledDq's float2 slots (wgmma3's dQ tiles in the threads' order) cover each (query, d pair) of a
//     tile once, and slots 2k, 2k + 1 are columns d .. d + 3 of one query (dq_convert_tiled's pairs);
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

#include "bwd_wgmma2.cuh"

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
  using vt_fmha::wgmma_bwd::Offsets;
  Offsets<typename T::LayoutQ> oq;
  Offsets<typename T::LayoutKV> ok;
  Offsets<typename T::LayoutdSt> ost;
  alignas(1024) static E buf[cosize_v<typename T::LayoutQ> + cosize_v<typename T::LayoutKV> +
                             cosize_v<typename T::LayoutdS>];
  Tensor pq = make_tensor(make_smem_ptr(buf), lq);
  Tensor pk = make_tensor(make_smem_ptr(buf), lk);
  Tensor pst = make_tensor(make_smem_ptr(buf), lst);
  int raw_wrong = 0;  // the byte swizzle applied to element offsets (8b4988a's addresses)
  for (int s = 0; s < T::kStages; ++s)
    for (int r = 0; r < Br; ++r)
      for (int d = 0; d < D; ++d) {
        bad += &pq(r, d, s) - buf != oq(r, d, s);
        raw_wrong += &pq(r, d, s) - buf != lq(r, d, s);
      }
  for (int r = 0; r < Bc; ++r)
    for (int d = 0; d < D; ++d) bad += &pk(r, d) - buf != ok(r, d);
  for (int c = 0; c < Bc; ++c)
    for (int r = 0; r < Br; ++r) bad += &pst(c, r) - buf != ost(c, r);
  std::printf("D=%d: %d of %d Q offsets wrong when the GMMA layout is evaluated as an integer\n", D, raw_wrong,
              T::kStages * Br * D);
  std::vector<int> seen(cosize(lq), 0);
  for (int s = 0; s < T::kStages; ++s)
    for (int r = 0; r < Br; ++r)
      for (int d = 0; d < D; ++d) seen[lq(r, d, s)]++;
  for (int x : seen) bad += x != 1;
  for (int r = 0; r < Br; ++r)
    for (int d = 0; d < D; d += 8)
      for (int j = 1; j < 8; ++j) bad += oq(r, d + j, 1) != oq(r, d, 1) + j;
  for (int r = 0; r < Bc; ++r)
    for (int d = 0; d < D; d += 8)
      for (int j = 1; j < 8; ++j) bad += ok(r, d + j) != ok(r, d) + j;
  for (int c = 0; c < Bc; ++c)
    for (int r = 0; r < Br; r += 2) bad += ost(c, r + 1) != ost(c, r) + 1 || ost(c, r) % 2 != 0;

  using ALayout = Layout<Shape<Shape<_2, _2, _2>, _1, Int<Br / 16>>, Stride<Stride<_1, _2, _4>, _0, _8>>;
  typename T::MmaSdP sdp;
  typename T::MmadKV dkv;
  for (int t = 0; t < vt_fmha::wgmma_bwd::kThreads; ++t) {
    auto cS = sdp.get_thread_slice(t).partition_C(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
    auto cA = dkv.get_thread_slice(t).partition_A(make_identity_tensor(Shape<Int<Bc>, Int<Br>>{}));
    for (int j = 0; j < size(ALayout{}); ++j) bad += !(cA(j) == cS(ALayout{}(j)));
  }
  // TiledDq (wgmma3): the float2 slots of a tile are the (query, d pair)s of the tile, each once
  using TD = vt_fmha::wgmma_bwd::TiledDq<E, D>;
  std::vector<int> hit(Br * D / 2, 0);
  for (int s = 0; s < TD::kSlots; ++s) {
    const auto qd = TD::coord(s);
    const int q = get<0>(qd), d = get<1>(qd);
    if (d % 2 != 0 || q < 0 || q >= Br || d < 0 || d >= D) ++bad;
    else hit[q * (D / 2) + d / 2]++;
  }
  for (int x : hit) bad += x != 1;
  for (int s = 0; s < TD::kSlots; s += 2) {  // dq_convert_tiled's pairs: one query, columns d .. d + 3
    const auto a = TD::coord(s), b = TD::coord(s + 1);
    bad += get<0>(a) != get<0>(b) || get<1>(b) != get<1>(a) + 2 || get<1>(a) % 4 != 0;
  }
  std::printf("D=%d Br=%d Bc=%d bad=%d\n", D, Br, Bc, bad);
  return bad;
}

int main() {
  return check<cutlass::bfloat16_t, 64>() + check<cutlass::half_t, 64>() + check<cutlass::bfloat16_t, 128>() +
         check<cutlass::half_t, 128>() != 0;
}
