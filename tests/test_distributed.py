"""vibetensor.distributed and the allreduce pack's shm provider, with real processes: 4 ranks, each a
fresh interpreter started by the launcher (or by the test, where the launcher would stop the ranks
whose behaviour is under test). The rank-side scripts are in tests/distributed/.

This process never loads the allreduce pack itself (the ranks do), so the registry-wide tests
(test_meta, test_cuda_coverage) see the same op set whatever order the tests run in."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vibetensor.distributed import TCPStore
from vibetensor.distributed import run as launcher

HERE = Path(__file__).parent / "distributed"


def launch(script, n=4, *args, timeout=120, env=None):
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", str(n), str(script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_every_rank_ok(p, n=4):
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    for r in range(n):
        assert f"RANK {r} OK" in p.stdout, out[-4000:]


def test_every_collective_4_ranks():
    assert_every_rank_ok(launch(HERE / "collectives.py"))


def test_ddp_equals_one_process_with_the_global_batch():
    assert_every_rank_ok(launch(HERE / "ddp.py"))


def _spawn_ranks(mode, meet, n=4):
    port = launcher._free_port("127.0.0.1")
    procs = []
    for r in range(n):
        env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(n), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(HERE / "failures.py"), mode, str(meet)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _results(procs, survivors, timeout):
    out = {}
    try:
        for r in survivors:
            so, se = procs[r].communicate(timeout=timeout)
            assert procs[r].returncode == 0, se[-3000:]
            out[r] = json.loads(so.strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    return out


def test_a_dead_rank_makes_the_others_raise_at_once(tmp_path):
    procs = _spawn_ranks("dead", tmp_path)
    res = _results(procs, [0, 1, 3], timeout=60)
    assert procs[2].returncode == 3
    for r, o in res.items():
        assert o["error"] == "RuntimeError", o
        assert o["seconds"] < 15, o  # the dead process is noticed, not the 30 s timeout
        assert "[allreduce::all_reduce_]" in o["message"] and "rank 2" in o["message"], o
        assert "exited" in o["message"] or "gave up on the group" in o["message"], o
        assert "unusable" in o["after"], o
    assert any("rank 2 (pid" in o["message"] and "exited" in o["message"] for o in res.values()), res


def test_a_stuck_rank_makes_the_others_raise_after_the_timeout(tmp_path):
    procs = _spawn_ranks("stuck", tmp_path)
    res = _results(procs, [0, 1, 2], timeout=60)
    for r, o in res.items():
        assert o["error"] == "RuntimeError", o
        assert 1.5 < o["seconds"] < 20, o
        assert "timed out after 2.0 s waiting for rank 3" in o["message"] or "gave up" in o["message"], o
    assert any("timed out after 2.0 s waiting for rank 3" in o["message"] for o in res.values()), res


def test_the_launcher_stops_the_other_ranks_when_one_fails(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text("import os, sys, time\n"
                      "if os.environ['RANK'] == '1':\n"
                      "    sys.exit('rank 1 fails on purpose')\n"
                      "time.sleep(120)\n")
    t0 = time.perf_counter()
    p = launch(script, 3, timeout=60, env={})
    assert p.returncode == 1, p.stderr
    assert time.perf_counter() - t0 < 20
    assert "rank 1 (pid" in p.stderr and "failed with exit code 1; stopping the other ranks" in p.stderr


def test_the_launcher_sets_torchruns_variables_and_runs_modules(tmp_path):
    (tmp_path / "envmod.py").write_text(  # one file per rank: their prints would interleave
        "import os\nvals = [os.environ[k] for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', "
        "'MASTER_ADDR')] + [str(os.environ['MASTER_PORT'].isdigit())]\n"
        "open(f'env{os.environ[\"RANK\"]}.txt', 'w').write(' '.join(['ENV'] + vals))\n")
    cmd = [sys.executable, "-m", "vibetensor.distributed.run", "--nproc-per-node", "2", "-m", "envmod"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    lines = [(tmp_path / f"env{r}.txt").read_text() for r in range(2)]
    assert lines == ["ENV 0 0 2 2 127.0.0.1 True", "ENV 1 1 2 2 127.0.0.1 True"]


def test_tcp_store():
    s = TCPStore("127.0.0.1", 0, is_master=True, timeout=5)
    c = TCPStore("127.0.0.1", s.port, timeout=5)
    s.set("k", b"v")
    assert c.get("k") == b"v"
    assert c.add("n", 2) == 2 and s.add("n", 3) == 5
    with pytest.raises(TimeoutError, match="key 'missing' did not appear within 0.2 s"):
        c.get("missing", timeout=0.2)
    c.close()
    s.close()
    with pytest.raises(TimeoutError, match="could not reach the store"):
        TCPStore("127.0.0.1", s.port, timeout=0.3)


def test_init_refuses_what_it_cannot_do(monkeypatch):
    import vibetensor as vt
    import vibetensor.distributed as dist

    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ValueError, match=r"rank not given and \$RANK not set"):
        dist.init_process_group()
    if vt.cuda.device_count() == 0:
        for backend in ("p2p", "nccl"):
            with pytest.raises(RuntimeError, match=f"backend '{backend}' serves cuda tensors, and no CUDA device"):
                dist.init_process_group(backend, rank=0, world_size=1)
    with pytest.raises(ValueError, match="unknown backend 'mpi'"):
        dist.init_process_group("mpi", rank=0, world_size=1)
    with pytest.raises(ValueError, match=r"rank 2 is not in 0..1"):
        dist.init_process_group(rank=2, world_size=2)
    with pytest.raises(RuntimeError, match="not initialised"):
        dist.get_rank()


def test_the_pack_loads_on_demand_with_its_providers():
    """In a fresh process: `import vibetensor` leaves the pack alone, joining a group loads it; shm
    serves cpu, nccl is registered for cuda and says clearly when NCCL is
    missing; a group of one needs no peers."""
    code = """if True:
        import vibetensor as vt, vibetensor.distributed as dist
        assert vt.ops.get("allreduce") is None
        dist.init_process_group(rank=0, world_size=1, init_method="tcp://127.0.0.1:0", timeout=10)
        assert [p.name for p in vt.ops.providers("allreduce::all_reduce_", "cpu")] == ["shm"]
        want = ["p2p", "nccl"] if vt.ops.get("allreduce").manifest.get("cuda_architectures") else ["nccl"]
        assert [p.name for p in vt.ops.providers("allreduce::all_reduce_", "cuda")] == want
        try:
            vt.ops.allreduce.nccl_unique_id("libnccl-not-here.so.2")
            raise AssertionError("no error")
        except RuntimeError as e:
            assert "[allreduce::nccl_unique_id] cannot load libnccl-not-here.so.2" in str(e), e
        x = vt.arange(5.0)
        dist.all_reduce(x, dist.ReduceOp.AVG)
        dist.barrier()
        assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        dist.destroy_process_group()
        print("OK")
    """
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_PORT")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.strip() == "OK", p.stderr[-3000:]


def test_under_torchrun(tmp_path):
    """torchrun's agent serves MASTER_PORT with torch's store; the ranks use that one."""
    pytest.importorskip("torch", reason="torchrun comes with torch")
    script = tmp_path / "tr.py"
    script.write_text("import vibetensor as vt, vibetensor.distributed as dist\n"
                      "dist.init_process_group(timeout=60)\n"
                      "x = vt.full([3], float(dist.get_rank() + 1))\n"
                      "dist.all_reduce(x)\n"
                      "assert x.tolist() == [3.0] * 3, x.tolist()\n"
                      "dist.destroy_process_group()\n"
                      "print('RANK', dist.get_rank() if dist.is_initialized() else 'done', 'OK')\n")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(script)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.count("RANK done OK") == 2, (p.stdout + p.stderr)[-3000:]


def test_exit_with_an_open_p2p_group_waits_for_every_rank(monkeypatch):
    """Without destroy_process_group, the exit hook of a p2p group syncs the GPU and meets the other
    ranks at the close barrier (their kernels may still read this rank's buffers); other backends,
    no group, or a barrier that fails (a dead peer) do not hold the exit."""
    import vibetensor as vt
    import vibetensor.distributed as D

    calls = []

    class Group:
        backend, device, _close_key, _rank, _size, timeout, store = "p2p", "cuda:1", "k/close", 1, 2, 5.0, "S"

    monkeypatch.setattr(vt.cuda, "synchronize", lambda d: calls.append(("sync", d)))
    monkeypatch.setattr(D, "_store_barrier", lambda *a: calls.append(("barrier",) + a))
    monkeypatch.setattr(D, "_world", Group())
    D._finish_at_exit()
    assert calls == [("sync", "cuda:1"), ("barrier", "S", "k/close", 1, 2, 5.0)]

    calls.clear()
    Group.backend = "shm"
    D._finish_at_exit()
    monkeypatch.setattr(D, "_world", None)
    D._finish_at_exit()
    assert calls == []

    def dead_peer(*a):
        raise TimeoutError("the store waited 60 s")
    Group.backend = "p2p"
    monkeypatch.setattr(D, "_world", Group())
    monkeypatch.setattr(D, "_store_barrier", dead_peer)
    D._finish_at_exit()  # returns: the exit goes on
