"""Sample calls for the attention pack's ops, for `vt-ops test attention` (format: samples.py).

Tiny heads (batch 1-2, 1-2 heads, sequence 2-5, head dim 4-6) so gradcheck's finite differences
stay quick; the second call has a boolean mask and the third an additive bfloat16 one. Dropout is
off in the sdpa calls (p=0: every provider must agree bit for bit on what it drops only through
dropout_mask, which has its own call).
"""
from __future__ import annotations

PACK = "attention"

RANDOM = frozenset({"attention::dropout_mask", "attention::dropout_draw"})
DATA_DEPENDENT = frozenset()
NOT_COVERED: dict = {}
# sdpa's rule gives the mask no gradient (pack.cpp: masks are inputs, not parameters)
NO_GRAD = {"attention::sdpa": {"mask"}}
# sdpa's lse output has a gradient (through sdpa_backward's grad_lse); rng is an integer tensor
AUX_OUTPUTS: dict = {}


def samples(s):
    f, b, call = s.f, s.b, s.call

    def sdpa_bw():
        q, k, v = f(1, 2, 3, 4), f(1, 2, 5, 4), f(1, 2, 5, 6)
        out, lse, _ = s.op("attention::sdpa")(q, k, v, None, True, None, 0.0)
        qm, km, vm = f(1, 3, 3, 4), f(1, 1, 5, 4), f(1, 1, 5, 4)
        out_m, lse_m, _ = s.op("attention::sdpa")(qm, km, vm, None, False, None, 0.0, True)
        return [call(f(1, 2, 3, 6), q, k, v, out, lse, None, True, 0.5, 0.0, 0, 0),
                # dropout's [seed, offset] as the forward's rng tensor (the backward rule's way off cpu)
                call(f(1, 2, 3, 6), q, k, v, out, lse, None, True, 0.5, 0.25, 0, 0, None, s.i(2, high=50)),
                # MQA: 3 query heads on one kv head, dk and dv summed over them
                call(f(1, 3, 3, 4), qm, km, vm, out_m, lse_m, None, False, 0.5, 0.0, 0, 0)]

    return {
        "attention::sdpa": lambda: [
            call(f(1, 2, 3, 4), f(1, 2, 5, 4), f(1, 2, 5, 6), None, True),
            call(f(2, 1, 3, 4), f(2, 1, 3, 4), f(2, 1, 3, 4), b(3, 3)),
            call(f(1, 1, 2, 4, dtype="bfloat16"), f(1, 1, 3, 4, dtype="bfloat16"),
                 f(1, 1, 3, 4, dtype="bfloat16"), f(2, 3, dtype="bfloat16")),
            # grouped-query attention: 4 query heads on 2 kv heads (enable_gqa, the last argument)
            call(f(1, 4, 3, 4), f(1, 2, 5, 4), f(1, 2, 5, 4), None, True, None, 0.0, True)],
        "attention::sdpa_backward": sdpa_bw,
        "attention::dropout_mask": lambda: [call([2, 3, 5], 0.25, 7, 4, s.DEV),
                                            call([2, 3, 5], 0.25, 0, 0, s.DEV, s.i(2, high=50))],
        # rng: the int64 (2,) tensor the draw records its [seed, offset] into
        "attention::dropout_draw": lambda: call([2, 3, 5], 0.25, s.i(2, high=1)),
    }
