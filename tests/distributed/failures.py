"""One rank of tests/test_distributed.py's failure tests (started by the test itself, not by the
launcher, which would stop the other ranks as soon as one fails):
  dead:  rank 2 exits after one good call; the others must raise naming it, at once.
  stuck: rank 3 lives but never calls; the others must raise when the timeout (2 s) passes.
Each surviving rank prints one JSON line: the error's type and message and how long it took."""
import json
import os
import sys
import time

import vibetensor as vt
import vibetensor.distributed as dist

mode, meet = sys.argv[1], sys.argv[2]
# every rank has imported vibetensor before any starts the (short) timeout: a loaded machine may
# take seconds to start 4 interpreters
open(os.path.join(meet, os.environ["RANK"]), "w").close()
while len(os.listdir(meet)) < int(os.environ["WORLD_SIZE"]):
    time.sleep(0.01)
dist.init_process_group(timeout=2.0 if mode == "stuck" else 30.0)
R = dist.get_rank()
x = vt.ones(1000)
dist.all_reduce(x)
if mode == "dead" and R == 2:
    os._exit(3)
if mode == "stuck" and R == 3:
    time.sleep(60)
    os._exit(0)
t0 = time.perf_counter()
out = {"rank": R}
try:
    for _ in range(3):
        dist.all_reduce(vt.ones(100_000))
    out["error"] = None
except RuntimeError as e:
    out["error"], out["message"] = type(e).__name__, str(e)
out["seconds"] = time.perf_counter() - t0
try:  # the group is unusable now, and says so
    dist.all_reduce(vt.ones(3))
except RuntimeError as e:
    out["after"] = str(e)
print(json.dumps(out), flush=True)
