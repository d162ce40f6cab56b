// ops/attention_hopper/lab/bwd_ws_tma.cu — host check (no GPU) of what bwd_ws.cuh's TMA loads rest on,
// with CuTe's own algebra (no descriptor is encoded without a driver: make_tma_copy's encode call fails
// here, prints the descriptor it would have made, and goes on under -DNDEBUG; the box and swizzle it
// prints are part of the check, read by eye):
//   - stage s of Traits' staged Q layout is the one-stage layout the TMA box writes (WsTraits::LayoutQ1)
//     shifted by s * Br * D elements, as element offsets (Offsets<>) — so a box into stage s lands
//     where the wgmma descriptors and the dS^T / softmax code expect;
//   - the producer's partitions: the source of query block i starts at row i * Br of head (h, b) of
//     q's (T, D, H, B) view (TMA's coordinates come in its dim order: (d, t, h, b)), block kb of K at
//     row kb * Bc; the destination of stage s starts at
//     element s * Br * D; one stage's boxes move Br * D elements (the expect_tx byte count / size);
//   - Shared fits the 227 KiB a CTA may have, with the 1024 bytes of alignment slack; the kernel's
//     parameters (four TMA descriptors) fit a launch's 4 KiB, the descriptors 64-byte aligned.
// Build and run (from the repository root; prints "bad=0" for each head dim and exits 0):
//   nvcc -std=c++17 --expt-relaxed-constexpr -DNDEBUG -DVT_WITH_CUDA -Iopsdk/include \
//     -I.venv/lib/python3.11/site-packages/cutlass_library/source/include -Iops/attention_hopper \
//     -x cu ops/attention_hopper/lab/bwd_ws_tma.cu -o /tmp/bwd_ws_tma && /tmp/bwd_ws_tma 2>/dev/null
// (drop 2>/dev/null to see the descriptors make_tma_copy would encode)
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bwd_ws.cuh"

using namespace cute;

template <class E, int D>
int check() {
  using W = vt_fmha::ws_bwd::WsTraits<E, D>;
  using T = typename W::T;
  constexpr int Br = T::Br, Bc = T::Bc;
  int bad = 0;
  using vt_fmha::wgmma_bwd::Offsets;
  Offsets<typename T::LayoutQ> staged;
  Offsets<typename W::LayoutQ1> one;
  for (int s = 0; s < T::kStages; ++s)
    for (int r = 0; r < Br; ++r)
      for (int d = 0; d < D; ++d) bad += staged(r, d, s) != one(r, d) + s * Br * D;

  // q / k as the kernel's TMA sees them: B = 2, H = 3, T = 300 (a partial last block), contiguous
  const int B = 2, H = 3, Tq = 300;
  static E gbuf[1];  // never read: the encode fails before any address is used
  const vt_fmha::Strides s{(int64_t)H * Tq * D, (int64_t)Tq * D, D};
  auto tma_q = make_tma_copy(SM90_TMA_LOAD{}, vt_fmha::ws_bwd::tma_view<E>(gbuf, B, H, Tq, D, s),
                             typename W::LayoutQ1{});
  auto tma_k = make_tma_copy(SM90_TMA_LOAD{}, vt_fmha::ws_bwd::tma_view<E>(gbuf, B, H, Tq, D, s),
                             typename T::LayoutKV{});
  alignas(1024) static E sbuf[cosize_v<typename T::LayoutQ>];
  const int h = 2, b = 1;
  Tensor mQ = tma_q.get_tma_tensor(make_shape(Tq, D, H, B))(_, _, h, b);
  Tensor gQ = local_tile(mQ, Shape<Int<Br>, Int<D>>{}, make_coord(_, _0{}));
  Tensor sQ = make_tensor(make_smem_ptr(sbuf), typename T::LayoutQ{});
  auto tq = tma_q.get_slice(0);
  Tensor tQgQ = tq.partition_S(gQ);
  Tensor tQsQ = tq.partition_D(sQ);
  std::printf("D=%d: Q source ", D), print(shape(tQgQ)), std::printf(", destination "), print(shape(tQsQ)),
      std::printf("\n");
  const int nq = (Tq + Br - 1) / Br;
  bad += size<3>(tQgQ) != nq || size<3>(tQsQ) != T::kStages;
  for (int i = 0; i < nq; ++i) {
    auto c = tQgQ(0, 0, 0, i);  // the block's first element in TMA's dim order: (d, t, h, b)
    if (getenv("VT_LAB_VERBOSE")) print(c), std::printf(" <- block %d\n", i);
    bad += get<1>(c) != i * Br || get<0>(c) != 0 || get<2>(c) != h || get<3>(c) != b;
  }
  for (int st = 0; st < T::kStages; ++st)
    bad += &tQsQ(0, 0, 0, st) - sbuf != st * Br * D;
  // one stage's boxes move Br x D elements: the producer's expect_tx is Br * D * sizeof(E) per operand
  bad += size(tQsQ(_, _, _, 0)) != Br * D || W::kQBytes != Br * D * sizeof(E);

  Tensor mK = tma_k.get_tma_tensor(make_shape(Tq, D, H, B))(_, _, h, b);
  const int kb = 2;
  Tensor gK = local_tile(mK, Shape<Int<Bc>, Int<D>>{}, make_coord(kb, _0{}));
  Tensor sK = make_tensor(make_smem_ptr(sbuf), typename T::LayoutKV{});
  auto tk = tma_k.get_slice(0);
  Tensor tKgK = tk.partition_S(gK);
  Tensor tKsK = tk.partition_D(sK);
  std::printf("D=%d: K source ", D), print(shape(tKgK)), std::printf(", destination "), print(shape(tKsK)),
      std::printf("\n");
  auto ck = tKgK(0);
  if (getenv("VT_LAB_VERBOSE")) print(ck), std::printf(" <- key block %d; stage offsets %d %d\n", kb,
      (int)(&tQsQ(0, 0, 0, 0) - sbuf), (int)(&tQsQ(0, 0, 0, 1) - sbuf));
  bad += get<1>(ck) != kb * Bc || get<0>(ck) != 0 || get<2>(ck) != h || get<3>(ck) != b;
  bad += size(tKsK) != Bc * D || W::kKVBytes != Bc * D * sizeof(E);

  const int smem = (int)W::kSmem;
  bad += smem > 227 * 1024;
  // the kernel's parameters (four TMA descriptors by value, __grid_constant__) within the 4 KiB a
  // launch may pass, the descriptors 64-byte aligned as TMA wants them
  using P = vt_fmha::ws_bwd::Params<E, D>;
  bad += sizeof(P) > 4096 || alignof(P) < 64 || offsetof(P, tma_q) % 64 != 0 || offsetof(P, tma_k) % 64 != 0;
  std::printf("D=%d: kernel parameters %zu bytes\n", D, sizeof(P));
  std::printf("D=%d Br=%d Bc=%d shared %d bytes (%.1f KiB) bad=%d\n", D, Br, Bc, smem, smem / 1024.0, bad);
  return bad;
}

int main() {
  return check<cutlass::bfloat16_t, 64>() + check<cutlass::half_t, 64>() + check<cutlass::bfloat16_t, 128>() +
         check<cutlass::half_t, 128>() != 0;
}
