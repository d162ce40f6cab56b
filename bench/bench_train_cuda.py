"""Training-step time on one GPU, vibetensor vs torch in the same run: the miniGPT of nanoGPT's
shakespeare_char config (B64 T256, 6L 6H 384C, 10.7M parameters) and the ViT (32px, patch 4,
D256, L6, B128), each with AdamW (+ clipping for the GPT), same weights and batches, dropout off.

Modes: eager float32, eager bf16 autocast, whole-step CUDA graph (bf16), against torch eager
float32, torch bf16 autocast and torch.compile(mode="reduce-overhead") bf16; the graph is also
timed against torch's own whole-step graph (torch.cuda.graph around forward, backward and the
capturable fused AdamW: the recipe of torch's CUDA-graph docs, no compiler), a peer that still
stands where torch.compile fails (it does on this ViT on the H200).
Goals (issue 9): eager <= 0.8x torch eager; with the whole-step graph <= 1.0x torch.compile.

    python bench/bench_train_cuda.py [--model gpt|vit|both] [--steps 30] [--no-compile] [--modes fp32,bf16,graph]

Packs named by VT_CUTLASS_PACK / VT_ATTN_HOPPER_PACK (built pack folders, as bench/gpu_session.sh
exports them) are loaded first, so their providers serve by priority; the header says which.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import vibetensor as vt
from vibetensor.examples._step import TrainStep
from vibetensor.examples.minigpt import GPT, GPTConfig, PRESETS
from vibetensor.examples.vit import ViT


def gpt_case():
    cfg = GPTConfig(vocab_size=65, **{**PRESETS["shakespeare_char"], "dropout": 0.0})
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 65, (64, 256)), rng.integers(0, 65, (64, 256))) for _ in range(4)]
    from vibetensor.examples.torch_reference import TGPT
    return dict(name="miniGPT shakespeare_char B64 T256", vt_model=lambda: GPT(cfg),
                torch_model=lambda: TGPT(cfg), batches=batches, clip=1.0,
                vt_loss=lambda m: (lambda x, y: m(x, y)[1]), torch_loss=lambda m: m)


def vit_case():
    shape = dict(image=32, channels=3, patch=4, classes=10, dim=256, depth=6, heads=8)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((128, 3, 32, 32)).astype(np.float32),
                rng.integers(0, 10, 128)) for _ in range(4)]
    from vibetensor.examples.torch_reference import TViT
    import torch.nn.functional as tF
    return dict(name="ViT 32px p4 D256 L6 B128", vt_model=lambda: ViT(**shape),
                torch_model=lambda: TViT(**shape), batches=batches, clip=None,
                vt_loss=lambda m: (lambda x, y: vt.nn.functional.cross_entropy(m(x), y)),
                torch_loss=lambda m: (lambda x, y: tF.cross_entropy(m(x), y)))


def load_optional_packs():
    """Load the packs VT_CUTLASS_PACK / VT_ATTN_HOPPER_PACK name; returns a line saying which
    providers serve matmul and attention on cuda."""
    import os

    for var in ("VT_CUTLASS_PACK", "VT_ATTN_HOPPER_PACK"):
        if os.environ.get(var):
            vt.ops.load(os.environ[var])
    names = lambda op: ",".join(p.name for p in vt.ops.providers(op, "cuda"))  # noqa: E731
    return f"providers on cuda: matmul [{names('core::matmul')}], sdpa [{names('attention::sdpa')}]"


def time_steps(step, batches, n, sync):
    for i in range(5):  # warm-up (and, for graphs, the capture)
        step(*batches[i % len(batches)])
    sync()
    t0 = time.perf_counter()
    for i in range(n):
        step(*batches[i % len(batches)])
    sync()
    return (time.perf_counter() - t0) / n * 1e3


def vt_step(case, amp, graph):
    """vibetensor's training step for the case: (step, device batches, synchronize)."""
    vt.manual_seed(0)
    model = case["vt_model"]().to("cuda")
    opt = vt.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1,
                         **({"capturable": True} if graph else {}))
    step = TrainStep(case["vt_loss"](model), opt, model.parameters(), device="cuda", amp=amp,
                     clip=case["clip"], cuda_graph=graph)
    b = [(vt.from_numpy(x).to("cuda"), vt.from_numpy(y).to("cuda")) for x, y in case["batches"]]
    return step, b, vt.cuda.synchronize


def torch_step(case, amp, mode):
    """torch's training step for the case (fused AdamW) run as mode says: "eager", "compile"
    (torch.compile reduce-overhead) or "graph" (the whole step captured with torch.cuda.graph and
    replayed on static inputs): (step, device batches, synchronize)."""
    import torch

    torch.manual_seed(0)
    model = case["torch_model"]().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True,
                            capturable=mode == "graph")
    loss_fn, clip = case["torch_loss"](model), case["clip"]

    def step(x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(x, y)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    b = [(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()) for x, y in case["batches"]]
    if mode == "compile":
        step = torch.compile(step, mode="reduce-overhead")
    elif mode == "graph":
        step = torch_graphed(torch, step, b[0])
    return step, b, torch.cuda.synchronize


def torch_graphed(torch, step, example):
    """step captured whole in a CUDA graph (torch's docs' recipe: warm up on a side stream, then
    capture forward, backward and the optimizer step; the gradients live in the graph's pool),
    called with new batches copied into the captured inputs."""
    static = [t.clone() for t in example]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step(*static)

    def replay(x, y):
        static[0].copy_(x)
        static[1].copy_(y)
        graph.replay()
        return loss

    return replay


def vt_mode(case, amp, graph, n):
    step, batches, sync = vt_step(case, amp, graph)
    return time_steps(step, batches, n, sync)


NOTES = []  # footnotes printed after a case's table


def torch_mode(case, amp, mode, n):
    import torch

    try:
        step, batches, sync = torch_step(case, amp, mode)
        return time_steps(step, batches, n, sync)
    except Exception as e:  # noqa: BLE001 - only Inductor's own failure is retried
        if mode != "compile" or type(e).__name__ != "InductorError":
            raise
        # torch 2.11's Inductor asserts in its coalescing analysis on the ViT's step (get_pw_red_splits,
        # pytorch/pytorch#197077); compiled again with that tiling heuristic off, and said so
        import traceback
        traceback.print_exc()
        NOTES.append(f"{case['name']}: torch.compile raised InductorError; its time is of a compile with "
                     "torch._inductor.config.triton.coalesce_tiling_analysis = False (pytorch/pytorch#197077)")
        torch._dynamo.reset()
        with torch._inductor.config.patch({"triton.coalesce_tiling_analysis": False}):
            step, batches, sync = torch_step(case, amp, mode)
            return time_steps(step, batches, n, sync)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("gpt", "vit", "both"), default="both")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to build)")
    ap.add_argument("--modes", default="fp32,bf16,graph",
                    help="which of the rows: fp32 (eager), bf16 (eager autocast), graph (both graph rows)")
    args = ap.parse_args(argv)
    if not vt.cuda.is_available():
        print("bench_train_cuda: no CUDA GPU here (vt.cuda.is_available() is False); nothing to "
              "measure")
        return 0
    try:
        import torch

        assert torch.cuda.is_available()
        torch.backends.cuda.matmul.allow_tf32 = False
    except (ImportError, AssertionError):
        print("bench_train_cuda: needs torch with CUDA as the peer")
        return 0
    print(f"# {vt.cuda.get_device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"TF32 off, dropout off, ms per step (mean of {args.steps} after 5 warm-up steps)")
    print(f"# {load_optional_packs()}")
    cases = {"gpt": [gpt_case], "vit": [vit_case], "both": [gpt_case, vit_case]}[args.model]
    for make in cases:
        case = make()
        print(f"\n## {case['name']}\n")
        print("| mode | vibetensor (ms) | torch (ms) | vt / torch | goal |")
        print("|---|---:|---:|---:|---|")
        graph_ms = []  # vt's graph step, timed once for both of its rows

        def vt_graph(case=case):
            if not graph_ms:
                graph_ms.append(vt_mode(case, "bf16", True, args.steps))
            return graph_ms[0]

        rows = [("eager fp32", lambda: vt_mode(case, None, False, args.steps),
                 lambda: torch_mode(case, None, "eager", args.steps), "<= 0.8x"),
                ("eager bf16 autocast", lambda: vt_mode(case, "bf16", False, args.steps),
                 lambda: torch_mode(case, "bf16", "eager", args.steps), "<= 0.8x"),
                ("vt whole-step graph bf16 vs torch.compile reduce-overhead bf16", vt_graph,
                 None if args.no_compile else lambda: torch_mode(case, "bf16", "compile", args.steps),
                 "<= 1.0x"),
                ("vt whole-step graph bf16 vs torch's whole-step CUDA graph bf16", vt_graph,
                 lambda: torch_mode(case, "bf16", "graph", args.steps), "(same class as compile's)")]
        keep = [m in args.modes.split(",") for m in ("fp32", "bf16", "graph", "graph")]
        for label, ours, theirs, goal in (r for r, k in zip(rows, keep) if k):
            try:
                a = ours()
            except Exception as e:  # noqa: BLE001 - report and go on with the other rows
                print(f"| {label} | failed: {type(e).__name__}: {str(e)[:160]} | | | {goal} |")
                continue
            b = None
            if theirs is not None:
                try:
                    b = theirs()
                except Exception as e:  # noqa: BLE001
                    import traceback
                    traceback.print_exc()  # the whole of it to stderr: what failed inside torch
                    print(f"| {label} | {a:.2f} | torch failed: {type(e).__name__}: {str(e)[:120]} | | {goal} |")
                    continue
            print(f"| {label} | {a:.2f} | {'-' if b is None else f'{b:.2f}'} | "
                  f"{'-' if b is None else f'{a / b:.2f}x'} | {goal} |")
            sys.stdout.flush()
        for note in NOTES:
            print(f"\nNote: {note}")
        NOTES.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
