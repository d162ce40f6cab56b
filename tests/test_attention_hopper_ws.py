"""The warp-specialised hopper backward's synchronisation (ops/attention_hopper/bwd_ws.cuh,
VT_HOPPER_BWD=ws), emulated on the host: no GPU, no pack.

The kernel's actors — the producer warp, the dQ writer warp, the two consumer warp groups, and the
asynchronous engines (TMA loads, the bulk reduce-add's read) — run as generators under random
schedules, on mbarriers with PTX's phase semantics (a phase completes when its pending arrivals
reach zero and its transaction count is zero; try_wait.parity(P) succeeds once the current phase's
parity differs from P) and the consumers' named barrier. The parities, counts and byte counts are
the kernel's, written as it writes them. Checked: every schedule finishes (no deadlock) and no
buffer is overwritten while read — a consumer reads stage n % 2 only when it holds block n, the
producer refills a stage only after both groups released it, a dS buffer is rewritten only after
both groups' dQ products of it, the dQ tile only after the copy engine read it, and the bulk add
reads each step's tile once, complete. A protocol with a parity off by one is caught (the check
bites). GPU correctness: tests/test_attention_hopper.py::test_hopper_backward_choices[ws].
"""
from __future__ import annotations

import random

import pytest

CONSUMERS = 256  # two warp groups of 128 threads (the kernel's kConsumers)
GROUP = 128


class MBarrier:
    """one mbarrier: arrival count, pending arrivals and transaction bytes of the current phase"""

    def __init__(self, count):
        self.count, self.pending, self.tx, self.completed = count, count, 0, 0

    def _maybe_complete(self):
        if self.pending == 0 and self.tx == 0:
            self.completed += 1
            self.pending = self.count

    def arrive(self, n=1, expect_tx=0):
        assert self.pending >= n, "more arrivals than the phase expects"
        self.tx += expect_tx
        self.pending -= n
        self._maybe_complete()

    def expect_tx(self, nbytes):
        self.tx += nbytes

    def complete_tx(self, nbytes):
        self.tx -= nbytes
        self._maybe_complete()

    def try_wait(self, parity):
        return (self.completed & 1) != parity


class Hazard(AssertionError):
    pass


def run_cta(steps, seed, parity_bug=False, Br=64, D=128, elem=2, overlap=True):
    """one CTA of bwd_ws.cuh's protocol for `steps` query blocks under a random schedule; returns the
    blocks the dQ writer added, in order. Waits are `yield predicate`; the scheduler runs any actor
    whose predicate holds (and the engines' pending completions) in random order. overlap: the
    kernel's default order (dK's wgmma, which reads the stage, still runs while the dQ tile is written,
    so the stage is released after it); False: ws1's (every product done, the stage released, then
    the dQ tile)."""
    rng = random.Random(seed)
    q_bytes, kv_bytes = Br * D * elem, 128 * D * elem
    full = [MBarrier(32), MBarrier(32)]
    empty = [MBarrier(CONSUMERS), MBarrier(CONSUMERS)]
    kv_full, dq_full, dq_empty = MBarrier(1), MBarrier(CONSUMERS), MBarrier(1)
    stage = [None, None]            # the block whose Q/dO/LSE/Dsum a stage holds (None: being written)
    stage_readers = [set(), set()]  # groups that read a stage and have not released it
    dS = [dict(), dict()]           # buffer -> {group: step} written, and the step being read
    dS_readers = [set(), set()]
    dq_tile = {}                    # group -> step whose share it holds
    dq_reading = [None]             # step the copy engine is reading
    added = []
    engine = []                     # pending asynchronous completions (callables)
    named = {"arrived": 0, "generation": 0}

    def tma_load(s, block):
        stage[s] = None
        def land():
            stage[s] = block
            full[s].complete_tx(2 * q_bytes)
        engine.append(land)

    def split_lanes():
        # the 32 lanes' arrivals in a random number of groups (they need not arrive together)
        cuts = sorted(rng.sample(range(1, 32), rng.randrange(0, 4)))
        return [b - a for a, b in zip([0] + cuts, cuts + [32])]

    def producer():
        # the producer warp as one actor. No block to walk: no load, no wait (the kernel's steps > 0)
        if steps == 0:
            return
        kv_full.arrive(1, expect_tx=2 * kv_bytes)
        engine.append(lambda: kv_full.complete_tx(2 * kv_bytes))
        for n in range(steps):
            s = n & 1
            if n >= 2:
                par = ((n >> 1) - 1) & 1
                yield lambda s=s, par=par: empty[s].try_wait(par)
                if stage_readers[s]:
                    raise Hazard(f"producer refills stage {s} while {stage_readers[s]} read it")
            # lane 0: expect_tx (no arrival) and the TMA copies; then every lane stores its LSE/Dsum
            # rows and arrives (count 32), in any order relative to the copies landing
            full[s].expect_tx(2 * q_bytes)
            tma_load(s, n)
            for lanes in split_lanes():
                yield None
                full[s].arrive(lanes)

    def writer():
        for n in range(steps):
            yield lambda n=n: dq_full.try_wait(n & 1)
            if set(dq_tile.values()) != {n} or len(dq_tile) != 2:
                raise Hazard(f"bulk add of step {n} reads the tile holding {dq_tile}")
            dq_reading[0] = n
            read_done = {"v": False}
            def read(n=n, read_done=read_done):
                if set(dq_tile.values()) != {n}:
                    raise Hazard(f"dQ tile overwritten while the bulk add of step {n} reads it")
                added.append(n)
                dq_reading[0] = None
                read_done["v"] = True
            engine.append(read)
            yield lambda read_done=read_done: read_done["v"]  # cp.async.bulk.wait_group.read 0
            dq_empty.arrive(1)

    def consumer(g):
        if steps == 0:
            return
        yield lambda: kv_full.try_wait(0)
        for n in range(steps):
            s = n & 1
            par = (n >> 1) & 1
            if parity_bug:
                par ^= 1
            yield lambda s=s, par=par: full[s].try_wait(par)
            if stage[s] != n:
                raise Hazard(f"group {g} computes block {n} from stage {s} holding {stage[s]}")
            stage_readers[s].add(g)
            yield None  # S^T, dP^T, softmax, dV, dK: time passes
            b = n & 1
            if dS_readers[b]:
                raise Hazard(f"group {g} writes dS buffer {b} while {dS_readers[b]} read it")
            dS[b][g] = n
            # named barrier of the 256 consumer threads (bar.sync 1, 256)
            gen = named["generation"]
            named["arrived"] += 1
            if named["arrived"] == 2:
                named["arrived"], named["generation"] = 0, gen + 1
            yield lambda gen=gen: named["generation"] > gen
            if dS[b] != {0: n, 1: n}:
                raise Hazard(f"group {g}'s dQ of step {n} reads dS buffer {b} = {dS[b]}")
            dS_readers[b].add(g)
            yield None  # dQ wgmma in flight (overlap: dK's issued after it)
            dS_readers[b].discard(g)

            def release(s=s, n=n):
                if stage[s] != n:
                    raise Hazard(f"stage {s} changed under group {g}'s step {n}")
                stage_readers[s].discard(g)
                empty[s].arrive(GROUP)

            if not overlap:
                release()
            if n > 0:
                yield lambda n=n: dq_empty.try_wait((n - 1) & 1)
            if dq_reading[0] is not None:
                raise Hazard(f"group {g} writes the dQ tile while step {dq_reading[0]} is read")
            dq_tile[g] = n
            dq_full.arrive(GROUP)
            if overlap:
                yield None  # dK's wgmma (Q^T of stage s) finishing: warpgroup_wait<0>
                release()

    actors = {"producer": producer(), "writer": writer(), "consumer0": consumer(0), "consumer1": consumer(1)}
    waiting = {name: None for name in actors}
    for _ in range(100000):
        runnable = [n for n, w in waiting.items() if w is None or w()]
        choices = runnable + (["engine"] if engine else [])
        if not choices:
            if not actors:
                return added
            raise Hazard(f"deadlock at steps={steps}: waiting {sorted(actors)}")
        pick = rng.choice(choices)
        if pick == "engine":
            engine.pop(rng.randrange(len(engine)))()
            continue
        try:
            waiting[pick] = next(actors[pick])
        except StopIteration:
            del actors[pick], waiting[pick]
    raise AssertionError("schedule did not finish")


@pytest.mark.parametrize("overlap", [True, False], ids=["ws", "ws1"])
@pytest.mark.parametrize("steps", [0, 1, 2, 3, 4, 7])
def test_ws_protocol_finishes_without_hazards(steps, overlap):
    """bwd_ws.cuh's barriers, counts and parities, in both orders of a step's products: every random
    schedule finishes, every buffer is read only when it holds the step that reads it, and the dQ
    writer adds each step's tile once, in order"""
    for seed in range(300):
        assert run_cta(steps, seed, overlap=overlap) == list(range(steps))


def test_ws_protocol_check_bites():
    """a consumer parity off by one is caught (a hazard or a deadlock) in some schedule"""
    caught = 0
    for seed in range(200):
        try:
            run_cta(4, seed, parity_bug=True)
        except Hazard:
            caught += 1
    assert caught > 0



def ws_walk(kb, nq, Br, Bc, causal, heads, first_head):
    """bwd_ws.cuh's walk as written there: step n -> (query head, query block)"""
    i_first = (kb * Bc) // Br if causal else 0
    blocks = max(nq - i_first, 0)
    return [(first_head + n // blocks, i_first + n % blocks) for n in range(heads * blocks)], i_first


def test_ws_walk_visits_each_query_block_once():
    """the walk visits every (query head, query block) a key block sees exactly once, each head's blocks
    consecutively (dK and dV sum over the group in registers; the dQ writer's tile is the step's own).
    A walk started at each key block's own offset (kb % blocks, so that one head's key blocks add into
    different dQ tiles at any moment) was measured on the H200 (2026-12-02 13:55) and gained nothing."""
    for D, Br in ((64, 128), (128, 64)):
        for Tq, Tk in ((2048, 2048), (256, 256), (300, 100), (65, 65), (128, 384), (1, 130)):
            nq, nk = -(-Tq // Br), -(-Tk // 128)
            for causal in (False, True):
                for heads in (1, 4):
                    for kb in range(nk):
                        walk, i_first = ws_walk(kb, nq, Br, 128, causal, heads, 8)
                        want = [(8 + g, i) for g in range(heads) for i in range(i_first, nq)]
                        assert walk == want, (D, Tq, Tk, causal, heads, kb)


def tile_of(L, nkb, ny, nb, section):
    """bwd_ws.cuh's tile_of as written there: the linear launch index -> (kb, y, b)"""
    pairs = ny * nb
    per = section * nkb
    sec, r = L // per, L % per
    width = min(section, pairs - sec * section)
    pair = sec * section + r % width
    return r // width, pair % ny, pair // ny


@pytest.mark.parametrize("section", [1, 3, 8, 32])
def test_ws_causal_order_is_a_heaviest_first_permutation(section):
    """tile_of maps the launch order onto every (key block, y, b) once; with section 1 it is the launch
    order itself; with sections, the key blocks ascend (their causal work descends) within each section of
    pairs, so the CTAs that start last are the lightest"""
    for nkb, ny, nb in ((16, 16, 8), (16, 16, 1), (3, 5, 7), (1, 4, 2), (64, 16, 2)):
        tiles = [tile_of(L, nkb, ny, nb, section) for L in range(nkb * ny * nb)]
        assert sorted(tiles) == sorted((kb, y, b) for kb in range(nkb) for y in range(ny) for b in range(nb))
        if section == 1:
            assert tiles == [(L % nkb, L // nkb % ny, L // (nkb * ny)) for L in range(nkb * ny * nb)]
        per = section * nkb
        for start in range(0, len(tiles), per):
            kbs = [kb for kb, _, _ in tiles[start:start + per]]
            assert kbs == sorted(kbs)
        if section > 1:  # the last section's pairs (it may hold fewer) end with their lightest key block
            pairs = ny * nb
            width = min(pairs, pairs % section or section)
            assert all(kb == nkb - 1 for kb, _, _ in tiles[-width:])
