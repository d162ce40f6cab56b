"""`python -m vibetensor.cli ...` is the same as `vt-ops ...`."""
from . import main

main(prog_name="vt-ops")
