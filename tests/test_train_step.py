"""The examples' TrainStep: eager steps (float32, bf16 autocast, fp16 with loss scaling) train;
the whole-step CUDA graph replays the same losses as eager steps with the same weights and data;
misuse is refused with a clear message."""
import numpy as np
import pytest

import vibetensor as vt
from vibetensor.examples._step import TrainStep
from vibetensor.examples.minigpt import GPT, GPTConfig

from conftest import DEVICES

CFG = GPTConfig(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


def _batches(device, n=6):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x = rng.integers(0, CFG.vocab_size, size=(4, CFG.block_size))
        out.append((vt.from_numpy(x).to(device), vt.from_numpy((x * 3 + 1) % CFG.vocab_size).to(device)))
    return out


def _losses(device, amp=None, graph=False, steps=12, cfg=CFG):
    vt.manual_seed(0)
    model = GPT(cfg).to(device)
    opt = vt.optim.AdamW(model.parameters(), lr=1e-2, **({"capturable": True} if graph else {}))
    step = TrainStep(lambda x, y: model(x, y)[1], opt, model.parameters(), device=device, amp=amp,
                     clip=1.0, cuda_graph=graph)
    data = _batches(device)
    return [step(*data[i % len(data)]).item() for i in range(steps)]


@pytest.mark.parametrize("amp", [None, "bf16", "fp16"])
def test_eager_steps_train(device, amp):
    losses = _losses(device, amp)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_amp_follows_float32(device):
    full, low = _losses(device), _losses(device, "bf16")
    np.testing.assert_allclose(low, full, rtol=5e-2)


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_whole_step_graph_replays_eager_losses(amp):
    eager = _losses("cuda", amp)
    graphed = _losses("cuda", amp, graph=True)
    np.testing.assert_allclose(graphed, eager, rtol=1e-5 if amp is None else 2e-2)


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA GPU")
def test_whole_step_graph_with_dropout_trains():
    """Dropout in the embedding, the attention (attention::dropout_draw records its seed on the
    device, the backward reads it there) and the MLP, captured whole: nothing waits for the host,
    each replay draws fresh masks, and the model still learns."""
    cfg = GPTConfig(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.2)
    graphed = _losses("cuda", graph=True, steps=24, cfg=cfg)
    plain = _losses("cuda", graph=True, steps=24)
    assert np.isfinite(graphed).all()
    assert np.mean(graphed[-6:]) < np.mean(graphed[:6])
    assert not np.allclose(graphed, plain)  # the masks did something


def test_misuse_is_refused():
    model = GPT(CFG)
    opt = vt.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="--cuda-graph needs --device cuda"):
        TrainStep(lambda x, y: model(x, y)[1], opt, model.parameters(), cuda_graph=True)
    with pytest.raises(ValueError, match="amp must be one of"):
        TrainStep(lambda x, y: model(x, y)[1], opt, model.parameters(), amp="fp8")
