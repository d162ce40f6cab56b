"""Sample calls for the core pack's ops, for `vt-ops test core` (format: registry/samples.py).

Every op core defines has an entry, with tiny shapes (the checker runs each call on every provider
and device, under gradcheck's finite differences, and with bad inputs). Values stay where the ops
are smooth (logs of positives, divisors away from 0) so float64 gradcheck is meaningful; index
tensors stay in range. The same calls as tests/test_meta.py's table, written against the Maker.
"""
from __future__ import annotations

PACK = "core"

# ops whose values come from the random generator: the checker seeds it before every run, and
# compares values across devices only where the generators agree (shapes and dtypes otherwise)
RANDOM = frozenset({"core::normal", "core::uniform", "core::normal_", "core::uniform_",
                    "core::randint", "core::randperm", "core::dropout"})
# output shapes that depend on tensor values: the meta step must refuse them (NotImplementedError)
DATA_DEPENDENT = frozenset({"core::nonzero"})
# ops with no sample, and why (none: every core op has one)
NOT_COVERED: dict = {}
# arguments whose gradient the backward rules leave out by design: an in-place multiply has
# overwritten the self value that other's gradient needs (the rule says so and raises)
NO_GRAD = {"core::mul_": {"other"}}
# outputs that are saved statistics for the backward op, not differentiable results
# (cross_entropy_fused's third output is the gradient buffer its backward hands out)
AUX_OUTPUTS = {"core::layer_norm": {1, 2}, "core::add_layer_norm": {2, 3}, "core::rms_norm": {1},
               "core::cross_entropy": {1}, "core::cross_entropy_fused": {1, 2}}


def samples(s):
    f, pos, i, b, call, DEV = s.f, s.pos, s.i, s.b, s.call, s.DEV

    def unary(low=-2.0):
        return lambda: call(f(2, 3, low=low))

    def binary():
        return lambda: [call(f(2, 3), f(3)), call(f(4, 1, 3), f(2, 3))]

    def compare():
        return lambda: [call(f(2, 3), f(3)), call(i(3, 1), i(4))]

    def compare_scalar():
        return lambda: [call(f(2, 3), 1.5), call(i(2, 3), 1)]

    def scalar():
        return lambda: [call(f(2, 3), 2.5), call(i(2, 3), 2)]

    def scalar_alpha():
        return lambda: [call(f(2, 3), 2.5, 2), call(i(2, 3), 2)]

    def factory(*args, **kwargs):
        return lambda: call(*args, device=DEV, **kwargs)

    def layer_norm_bw():
        x, w, bias = f(2, 3, 4), f(4), f(4)
        _, mean, rstd = s.op("core::layer_norm")(x, [4], w, bias)
        return call(f(2, 3, 4), x, [4], mean, rstd, w, bias)

    def add_layer_norm_bw():
        x, r, w, bias = f(2, 3, 4), f(2, 3, 4, dtype="bfloat16"), f(4), f(4)
        sm, _, mean, rstd = s.op("core::add_layer_norm")(x, r, [4], w, bias)
        return [call(f(2, 3, 4), f(2, 3, 4), sm, [4], mean, rstd, s.vt.float32, s.vt.bfloat16, w, bias),
                call(None, f(2, 3, 4, dtype="bfloat16"), sm, [4], mean, rstd, s.vt.float32, s.vt.bfloat16)]

    def rms_norm_bw():
        x, w = f(2, 3, 4), f(4)
        _, rstd = s.op("core::rms_norm")(x, [4], w)
        return call(f(2, 3, 4), x, [4], rstd, w)

    def cross_entropy_bw():
        x, t = f(4, 5), i(4, high=5)
        _, lse = s.op("core::cross_entropy")(x, t, -100, 0.1, "mean")
        return [call(f(), x, t, lse, -100, 0.1, "mean"),
                call(f(4), x, t, lse, -100, 0.0, "none")]

    def cross_entropy_grad_scale():  # the buffer as cross_entropy_fused writes it
        x, t = f(2, 5, 3), i(2, 3, high=5)
        _, _, grad = s.op("core::cross_entropy_fused")(x, t, -100, 0.1, "none")
        return [call(f(), f(4, 5), "mean"), call(f(2, 3), grad, "none")]

    return {
        # -- elementwise --------------------------------------------------------------------------
        **{f"core::{n}": unary() for n in ("abs", "cos", "exp", "neg", "relu", "sigmoid", "sign",
                                           "silu", "sin", "tanh")},
        **{f"core::{n}": unary(0.5) for n in ("log", "log1p", "rsqrt", "sqrt")},
        "core::logical_not": lambda: [call(b(2, 3)), call(f(3))],
        "core::add": lambda: [call(f(2, 3), f(3), 2.0), call(i(2, 3), i(2, 1)),
                              call(f(2, 3, dtype="bfloat16"), f(3, dtype="bfloat16"), -1.0)],
        "core::sub": lambda: [call(f(2, 3), f(3), 2.0), call(i(3, dtype="int32"), i(2, 1, dtype="int32"))],
        "core::mul": binary(),
        "core::div": lambda: [call(f(2, 3), pos(3)), call(i(2, 3), i(1) + 1)],
        "core::maximum": binary(),
        "core::minimum": binary(),
        "core::pow": lambda: [call(pos(2, 3), f(3)), call(i(2, 3), i(3))],
        "core::pow_scalar": lambda: [call(pos(2, 3), 0.5), call(i(2, 3), 2.0)],
        **{f"core::{n}_scalar": scalar_alpha() for n in ("add", "sub", "rsub")},
        **{f"core::{n}_scalar": scalar() for n in ("mul", "maximum", "minimum")},
        "core::div_scalar": lambda: [call(f(2, 3), 2.5), call(i(2, 3), 2)],
        "core::rdiv_scalar": lambda: [call(pos(2, 3), 2.5), call(i(2, 3) + 1, 2)],
        **{f"core::{n}_scalar_": lambda: call(f(2, 3), 2.5) for n in ("add", "sub", "mul", "div")},
        "core::add_": lambda: call(f(2, 3), f(3), 2.0),
        "core::sub_": lambda: call(f(2, 3), f(3), 2.0),
        "core::mul_": lambda: call(f(2, 3), f(2, 1)),
        "core::div_": lambda: call(f(2, 3), pos(3)),
        **{f"core::{n}": compare() for n in ("eq", "ne", "lt", "le", "gt", "ge")},
        **{f"core::{n}_scalar": compare_scalar() for n in ("eq", "ne", "lt", "le", "gt", "ge")},
        **{f"core::logical_{n}": lambda: [call(b(2, 3), b(3)), call(f(2, 1), f(3))]
           for n in ("and", "or", "xor")},
        "core::clamp": lambda: [call(f(2, 3), -1.0, 1.0), call(f(2, 3), None, 0.5), call(i(2, 3), 0.5)],
        "core::gelu": lambda: [call(f(2, 3)), call(f(2, 3), "tanh")],
        "core::softplus": lambda: call(f(2, 3), 2.0, 3.0),
        "core::where": lambda: call(b(2, 3), f(3), f(2, 1)),
        "core::gelu_backward": lambda: call(f(2, 3), f(2, 3), "tanh"),
        "core::silu_backward": lambda: call(f(2, 3), f(2, 3)),
        "core::sigmoid_backward": lambda: call(f(2, 3), f(2, 3)),
        "core::tanh_backward": lambda: call(f(2, 3), f(2, 3)),
        "core::softplus_backward": lambda: call(f(2, 3), f(2, 3), 1.0, 20.0),
        "core::to_dtype": lambda: [call(f(2, 3), s.vt.float64), call(f(2, 3), s.vt.int32),
                                   call(i(2, 3), s.vt.bfloat16)],
        "core::sum_to_size": lambda: call(f(2, 3, 4), [3, 1]),
        # -- copies, fills, factories -------------------------------------------------------------
        "core::contiguous": lambda: [call(f(3, 2).T), call(f(2, 3))],
        "core::copy_": lambda: [call(f(2, 3), f(3)), call(f(2, 3), i(2, 3))],
        "core::fill_": lambda: call(f(2, 3), 1.5),
        "core::zero_": lambda: call(f(2, 3)),
        "core::to_device": lambda: call(f(2, 3), DEV),
        "core::zeros": factory([2, 3]),
        "core::ones": factory([2, 3], dtype=s.vt.int32),
        "core::full": factory([2, 3], 1.5),
        "core::arange": factory(0.0, 5.0, 2.0),
        "core::linspace": factory(0.0, 1.0, 5),
        "core::eye": factory(3, 4, dtype=s.vt.float64),
        "core::normal": factory([2, 3], 0.0, 1.0),
        "core::uniform": factory([2, 3], -1.0, 1.0, dtype=s.vt.float64),
        "core::randint": factory(0, 5, [2, 3]),
        "core::randperm": factory(5),
        "core::normal_": lambda: call(f(2, 3), 0.0, 1.0),
        "core::uniform_": lambda: call(f(2, 3), -1.0, 1.0),
        # -- reductions ---------------------------------------------------------------------------
        "core::sum": lambda: [call(f(2, 3)), call(f(2, 3), [1], True), call(i(2, 3), [0]),
                              call(f(2, 3), [0], False, s.vt.float64)],
        "core::mean": lambda: [call(f(2, 3)), call(f(2, 3, 4), [0, 2], True),
                               call(i(2, 3), [1], False, s.vt.float32)],
        "core::var": lambda: [call(f(2, 3)), call(f(2, 3), [1], 1, True)],
        "core::std": lambda: [call(f(2, 3)), call(f(2, 3), [0], 0, False)],
        "core::norm": lambda: [call(f(2, 3)), call(f(2, 3), 1.0, [1], True)],
        "core::logsumexp": lambda: [call(f(2, 3), [1]), call(f(2, 3), [], True)],
        "core::max": lambda: call(f(2, 3)),
        "core::min": lambda: [call(f(2, 3)), call(i(2, 3))],
        "core::max_dim": lambda: [call(f(2, 3), 1), call(f(2, 3), 0, True)],
        "core::min_dim": lambda: [call(f(2, 3), -1), call(i(2, 3), 0, True)],
        "core::argmax": lambda: [call(f(2, 3)), call(f(2, 3), 1, True)],
        "core::argmin": lambda: [call(f(2, 3)), call(f(2, 3), 0)],
        "core::cumsum": lambda: [call(f(2, 3), 1), call(i(2, 3), 0), call(f(2, 3), 0, s.vt.float64)],
        # -- linear algebra -----------------------------------------------------------------------
        "core::matmul": lambda: [call(f(2, 3, 4), f(4, 5)), call(f(4), f(4)), call(f(3), f(2, 3, 5)),
                                 call(f(2, 1, 3, 4), f(5, 4, 2))],
        "core::bmm": lambda: call(f(2, 3, 4), f(2, 4, 5)),
        "core::addmm": lambda: [call(f(3), f(2, 4), f(4, 3)),
                                call(f(2, 1), f(2, 4), f(4, 3), beta=0.5, alpha=2.0)],
        "core::linear": lambda: [call(f(2, 3, 4), f(5, 4), f(5)), call(f(4), f(5, 4))],
        "core::set_cuda_matmul_flags": lambda: call(False),  # no tensors: a bool in, a bool out
        # -- views and shapes ---------------------------------------------------------------------
        "core::view": lambda: call(f(2, 3, 4), [6, -1]),
        "core::reshape": lambda: [call(f(2, 3), [3, 2]), call(f(3, 2).T, [-1])],
        "core::permute": lambda: call(f(2, 3, 4), [2, 0, 1]),
        "core::transpose": lambda: call(f(2, 3, 4), 0, -1),
        "core::expand": lambda: call(f(3, 1), [2, 3, 4]),
        "core::squeeze": lambda: [call(f(2, 1, 3, 1)), call(f(2, 1, 3), [1])],
        "core::unsqueeze": lambda: call(f(2, 3), -1),
        "core::select": lambda: call(f(2, 3), 1, -1),
        "core::slice": lambda: [call(f(4, 3), 0, 1, 3, 1), call(f(4, 6), 1, None, None, 2)],
        "core::as_strided": lambda: call(f(4, 3), [3, 2], [1, 3], 1),
        "core::select_backward": lambda: call(f(2), [2, 3], 1, 2),
        "core::slice_backward": lambda: call(f(2, 3), [4, 3], 0, 1, 3, 1),
        "core::as_strided_backward": lambda: call(f(3, 2), [4, 3], [3, 2], [1, 3], 1),
        "core::cat": lambda: [call([f(2, 3), f(4, 3)]), call([i(2, 3), i(2, 1), i(2, 0)], -1)],
        "core::tril": lambda: call(f(3, 4), 1),
        "core::triu": lambda: call(f(2, 3, 4), -1),
        # -- indexing (index tensors in range) ----------------------------------------------------
        "core::index": lambda: [call(f(4, 3), [i(2, high=4)]), call(f(4, 3), [i(2, 1, high=4), i(5)])],
        "core::index_put": lambda: call(f(4, 3), [i(2, high=4)], f(3), True),
        "core::index_put_": lambda: call(f(4, 3), [s.vt.tensor(s.np.array([0, 2])), i(2)], f(2), False),
        "core::index_select": lambda: call(f(4, 3), 0, i(5, high=4)),
        "core::index_add": lambda: call(f(4, 3), 0, i(2, high=4), f(2, 3), 2.0),
        "core::gather": lambda: call(f(3, 4), 1, i(3, 2, high=4)),
        "core::scatter_add": lambda: call(f(3, 4), 1, i(3, 2, high=4), f(3, 2)),
        "core::masked_fill": lambda: call(f(2, 3), b(3), 1.0),
        "core::embedding": lambda: call(f(5, 4), i(2, 3, high=5)),
        "core::embedding_backward": lambda: call(f(2, 3, 4), i(2, 3, high=5), 5),
        "core::one_hot": lambda: [call(i(2, 3, high=4), 5)],
        "core::nonzero": lambda: call(b(2, 3)),
        # -- nn -----------------------------------------------------------------------------------
        "core::softmax": lambda: call(f(2, 3), 1),
        "core::log_softmax": lambda: call(f(2, 3, 4), 0),
        "core::softmax_backward": lambda: call(f(2, 3), f(2, 3), 1),
        "core::log_softmax_backward": lambda: call(f(2, 3), f(2, 3), 0),
        "core::layer_norm": lambda: [call(f(2, 3, 4), [4], f(4), f(4)), call(f(2, 3, 4), [3, 4])],
        "core::layer_norm_backward": layer_norm_bw,
        "core::add_layer_norm": lambda: [call(f(2, 3, 4), f(2, 3, 4), [4], f(4), f(4)),
                                         call(f(2, 3, 4), f(2, 3, 4, dtype="bfloat16"), [3, 4], None, None,
                                              1e-5, s.vt.bfloat16)],
        "core::add_layer_norm_backward": add_layer_norm_bw,
        "core::rms_norm": lambda: [call(f(2, 3, 4), [4], f(4)), call(f(2, 4), [4], None, 1e-6)],
        "core::rms_norm_backward": rms_norm_bw,
        "core::dropout": lambda: [call(f(2, 3), 0.5, True), call(f(2, 3), 0.5, False)],
        "core::dropout_backward": lambda: call(f(2, 3), b(2, 3), 2.0),
        "core::cross_entropy": lambda: [call(f(4, 5), i(4, high=5)),
                                        call(f(2, 5, 3), i(2, 3, high=5), -100, 0.1, "none"),
                                        call(f(5), i(high=5), -100, 0.0, "sum")],
        "core::cross_entropy_backward": cross_entropy_bw,
        "core::cross_entropy_fused": lambda: [call(f(4, 5), i(4, high=5)),
                                              call(f(2, 5, 3), i(2, 3, high=5), -100, 0.1, "none"),
                                              call(f(5), i(high=5), -100, 0.0, "sum")],
        "core::cross_entropy_grad_scale": cross_entropy_grad_scale,
        "core::mse_loss": lambda: [call(f(2, 3), f(3)), call(f(2, 3), f(2, 3), "none")],
        "core::adamw_": lambda: call(f(2, 3), f(2, 3), f(2, 3), pos(2, 3), 0.1, 0.9, 0.999, 1e-8,
                                     0.01, 1),
        "core::sgd_": lambda: [call(f(2, 3), f(2, 3), f(2, 3), 0.1, 0.9),
                               call(f(2, 3), f(2, 3), None, 0.1)],
        "core::adamw_multi": lambda: [call([f(2, 3), f(4)], [f(2, 3), f(4)], [f(2, 3), f(4)],
                                           [pos(2, 3), pos(4)], 0.1, 0.9, 0.999, 1e-8, 0.01, 1),
                                      # capturable: lr_t / step_t as 1-element tensors
                                      call([f(3)], [f(3)], [f(3)], [pos(3)], 0.1, 0.9, 0.999, 1e-8, 0.0, 0,
                                           pos(1), pos(1))],
        "core::clip_grad_norm": lambda: [call([f(2, 3), f(4), f(3, 2).t()], 0.5),
                                         call([f(5), f(2, 2)], 100.0, float("inf"))],
    }
