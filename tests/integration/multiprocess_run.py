"""Runs ``fairdistill`` as one of the processes ``torchrun`` starts, recording what every process holds after
each epoch (used by test_multiprocess.py); nothing in the package knows about it: the recording is patched in.

Usage: torchrun ... multiprocess_run.py DIGESTS KILL_AFTER -- fairdistill arguments...
After every epoch of every model, process r appends one JSON line to ``DIGESTS/rank<r>.jsonl``: the model,
the epoch, a SHA-256 of the student's weights and buffers and one of the method's state (readout head and weight
table, GroupDRO's q, the adversary), and GroupDRO's q itself when the method has one. With KILL_AFTER > 0,
process 0 kills itself (SIGKILL) after that many epochs of the whole run, its checkpoint written (the launcher
then stops the others).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import torch


def state_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def main() -> None:
    digests, kill_after, separator, *arguments = sys.argv[1:]
    assert separator == "--", "usage: multiprocess_run.py DIGESTS KILL_AFTER -- fairdistill arguments"
    rank = int(os.environ.get("RANK", "0"))
    out = Path(digests) / f"rank{rank}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)

    from fairdistill.train import engine

    original = engine._Training.end_epoch
    epochs_done = 0

    def end_epoch(self, epoch, record):
        nonlocal epochs_done
        original(self, epoch, record)
        weighting = getattr(self.method, "weighting", None)
        q = getattr(weighting, "q", None)
        line = {
            "model": self.desc,
            "epoch": epoch + 1,
            "weights": state_digest(self.raw_model),
            "method": state_digest(self.method),
            "q": None if q is None else q.tolist(),
        }
        with out.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
        epochs_done += 1
        if rank == 0 and int(kill_after) > 0 and epochs_done >= int(kill_after):
            os.kill(os.getpid(), signal.SIGKILL)

    engine._Training.end_epoch = end_epoch
    from fairdistill.cli import main as fairdistill_main

    sys.argv = ["fairdistill", *arguments]
    fairdistill_main()


if __name__ == "__main__":
    main()
