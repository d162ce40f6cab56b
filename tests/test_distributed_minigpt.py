"""The miniGPT example under the launcher on CPU: 2 processes, each on its half of the global batch
through DistributedDataParallel, train like 1 process on the whole batch (losses of 20 steps within
a relative 1e-3), and only rank 0 writes files."""
import csv
import os
import subprocess
import sys

import pydoc_data.topics


def _losses(out):
    return [float(r["loss"]) for r in csv.DictReader(open(out / "minigpt.csv")) if r["kind"] == "train"]


def test_minigpt_2_processes_match_1_process_with_the_global_batch(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))[:60000])
    args = ["-m", "vibetensor.examples.minigpt", "--data", str(text), "--steps", "20", "--n-layer", "1",
            "--n-embd", "32", "--n-head", "2", "--block-size", "32", "--batch-size", "8", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=300, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", "2", *args,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(a) == len(b) == 20
    gap = max(abs(x - y) / abs(x) for x, y in zip(a, b))
    assert gap <= 1e-3, (gap, a, b)
    assert a[-1] < a[0]  # it trained
    assert "2 processes, global batch 8" in two.stdout and two.stdout.count("miniGPT:") == 1  # rank 0 only
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == \
        sorted(p.name for p in (tmp_path / "one").iterdir())
