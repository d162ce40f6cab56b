"""Parity with PyTorch, the correctness anchor: the same miniGPT and ViT built in torch and in
vibetensor, identical initial weights (copied across), identical batches, dropout off — the losses
of 20 AdamW steps must agree (float32, relative difference < 1e-4 on cpu; on cuda, with TF32 off
on both sides, < 1e-3: cuBLAS and the reductions sum in other orders than the CPU)."""
import math

import numpy as np
import pytest

import vibetensor as vt
from vibetensor.examples.minigpt import GPT, GPTConfig
from vibetensor.examples.vit import ViT

torch = pytest.importorskip("torch", reason="parity needs torch (pip install 'vibetensor[compare]')")
tnn = torch.nn
tF = torch.nn.functional

STEPS = 20


from vibetensor.examples.torch_reference import TGPT, TViT  # noqa: E402

from conftest import DEVICES  # noqa: E402

RTOL = {"cpu": 1e-4, "cuda": 1e-3}


@pytest.fixture(params=DEVICES)
def pdevice(request):
    """A device both vibetensor and torch can run on (torch's CUDA build on the GPU machine)."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("torch here has no CUDA: no reference to compare with on cuda")
    if request.param == "cuda":
        prev = (torch.backends.cuda.matmul.allow_tf32, vt.backends.cuda.matmul.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = vt.backends.cuda.matmul.allow_tf32 = False
        yield "cuda"
        torch.backends.cuda.matmul.allow_tf32, vt.backends.cuda.matmul.allow_tf32 = prev
    else:
        yield request.param


# -- helpers ------------------------------------------------------------------------------------

def copy_weights(vt_model, torch_model):
    """vibetensor's initial weights into the torch model, through numpy (zero-copy on our side)."""
    src = {k: v.numpy() for k, v in vt_model.state_dict().items()}
    dst = torch_model.state_dict()
    assert sorted(src) == sorted(dst), (sorted(set(src) ^ set(dst)))
    for k in dst:
        assert tuple(src[k].shape) == tuple(dst[k].shape), k
    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in src.items()})


def assert_losses_agree(vt_losses, t_losses, rtol=1e-4):
    for step, (a, b) in enumerate(zip(vt_losses, t_losses), 1):
        assert math.isfinite(a) and math.isfinite(b)
        assert abs(a - b) <= rtol * abs(b), f"step {step}: vibetensor {a:.7f} vs torch {b:.7f}"
    assert vt_losses[-1] < vt_losses[0]  # and it actually trained


@pytest.fixture(autouse=True)
def one_thread_torch():
    prev = torch.get_num_threads()
    torch.set_num_threads(vt.get_num_threads())
    yield
    torch.set_num_threads(prev)


@pytest.mark.parametrize("nanogpt", [False, True], ids=["biases", "nanogpt"])
def test_minigpt_matches_torch_for_20_adamw_steps(pdevice, nanogpt):
    """nanogpt: the shakespeare_char preset's model options (no biases, lm_head tied to wte)."""
    dev = pdevice
    vt.manual_seed(0)
    cfg = GPTConfig(vocab_size=29, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0,
                    bias=not nanogpt, tie_weights=nanogpt)
    model = GPT(cfg)
    if nanogpt:  # one parameter object, counted once
        assert model.lm_head.weight is model.wte.weight
        assert sum(p is model.wte.weight for p in model.parameters()) == 1
    ref = TGPT(cfg)
    copy_weights(model, ref)
    model.to(dev)
    ref.to(dev)
    opt = vt.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    topt = torch.optim.AdamW(ref.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for _ in range(STEPS):
        x = rng.integers(0, cfg.vocab_size, size=(4, cfg.block_size))
        y = (x * 7 + 3) % cfg.vocab_size  # a learnable mapping, so the loss must fall
        _, loss = model(vt.from_numpy(x).to(dev), vt.from_numpy(y).to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.append(loss.item())
        tloss = ref(torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        theirs.append(tloss.item())
    assert_losses_agree(ours, theirs, RTOL[dev])


def test_vit_matches_torch_for_20_adamw_steps(pdevice):
    dev = pdevice
    vt.manual_seed(0)
    shape = dict(image=8, channels=1, patch=2, classes=10, dim=32, depth=2, heads=4)
    model = ViT(**shape)
    ref = TViT(**shape)
    copy_weights(model, ref)
    model.to(dev)
    ref.to(dev)
    opt = vt.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    topt = torch.optim.AdamW(ref.parameters(), lr=2e-3, weight_decay=0.05)
    rng = np.random.default_rng(1)
    ours, theirs = [], []
    for _ in range(STEPS):
        x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
        y = rng.integers(0, 10, size=8)
        loss = vt.nn.functional.cross_entropy(model(vt.from_numpy(x).to(dev)),
                                              vt.from_numpy(y).to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ours.append(loss.item())
        tloss = tF.cross_entropy(ref(torch.from_numpy(x).to(dev)), torch.from_numpy(y).to(dev))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        theirs.append(tloss.item())
    assert_losses_agree(ours, theirs, RTOL[dev])


def test_checkpoint_of_another_model_is_refused(tmp_path):
    """A safetensors checkpoint of the ViT loaded into the GPT: a clear error naming the keys."""
    vt.manual_seed(0)
    vit = ViT(image=8, channels=1, patch=2, classes=10, dim=32, depth=1, heads=4)
    path = tmp_path / "vit.safetensors"
    vt.safetensors.save_file(vit.state_dict(), str(path))
    gpt = GPT(GPTConfig(vocab_size=29, block_size=16, n_layer=1, n_head=2, n_embd=32))
    with pytest.raises(RuntimeError, match="Missing key|missing|Unexpected key|unexpected"):
        gpt.load_state_dict(vt.safetensors.load_file(str(path)))
