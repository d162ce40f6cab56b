"""The three training workloads, run as a user runs them (in-process through their main()).
The sequence-reversal and digits runs are the real default runs and must reach their targets."""
import csv
import pickle

import numpy as np
import pytest

from vibetensor.examples import minigpt, reverse, vit


def test_sequence_reversal_default_run_reaches_99_percent(tmp_path):
    acc = reverse.main(["--out", str(tmp_path), "--quiet"])
    assert acc >= 0.99
    rows = list(csv.DictReader(open(tmp_path / "reverse.csv")))
    assert rows[0]["kind"] == "train" and any(r["kind"] == "eval" for r in rows)
    assert (tmp_path / "reverse.safetensors").stat().st_size > 0


def test_vit_digits_default_run_reaches_95_percent(tmp_path):
    pytest.importorskip("sklearn", reason="the digits data set ships with scikit-learn "
                                          "(pip install 'vibetensor[examples]')")
    acc = vit.main(["--out", str(tmp_path), "--quiet"])
    assert acc >= 0.95


def test_vit_reads_cifar10_pickle_batches(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        # two classes a model learns in a few steps (dark and bright images), so the accuracy
        # says whether images and labels were read and paired right
        labels = rng.integers(0, 2, 20)
        data = np.where(labels[:, None] == 1, 230, 20).astype(np.uint8) + \
            rng.integers(0, 20, (20, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": list(labels)}, f)
    acc = vit.main(["--data", str(folder), "--steps", "30", "--batch-size", "8", "--dim", "32",
                    "--depth", "1", "--out", str(tmp_path / "run"), "--quiet"])
    assert acc >= 0.9
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit, match="not a CIFAR-10 python batch"):
        vit.main(["--data", str(folder), "--steps", "1", "--out", str(tmp_path / "run")])


def test_minigpt_trains_checkpoints_and_samples(tmp_path, capsys):
    text = tmp_path / "tiny.txt"
    text.write_text("to be or not to be, that is the question. " * 200)
    best = minigpt.main(["--data", str(text), "--steps", "30", "--n-layer", "1", "--n-embd", "32",
                         "--n-head", "2", "--block-size", "16", "--batch-size", "8",
                         "--eval-every", "15", "--out", str(tmp_path), "--quiet"])
    assert best < 0.9 * np.log(15)  # learned something: below the uniform loss over 15 characters
    assert (tmp_path / "minigpt.safetensors").exists()
    capsys.readouterr()
    minigpt.main(["--sample", "--out", str(tmp_path), "--prompt", "to be", "--tokens", "20"])
    out = capsys.readouterr().out
    assert out.startswith("to be") and len(out.strip()) >= 20


def test_minigpt_refuses_bad_data_and_foreign_checkpoints(tmp_path):
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(SystemExit, match="not a UTF-8 text file"):
        minigpt.main(["--data", str(binary), "--steps", "1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="cannot read"):
        minigpt.main(["--data", str(tmp_path / "missing.txt"), "--steps", "1"])
    reverse.main(["--steps", "2", "--out", str(tmp_path / "rev"), "--quiet"])
    (tmp_path / "rev" / "reverse.safetensors").rename(tmp_path / "rev" / "minigpt.safetensors")
    with pytest.raises(SystemExit, match="not a miniGPT checkpoint"):
        minigpt.main(["--sample", "--out", str(tmp_path / "rev")])
