"""Test-wide settings: caches and config folders point into a temporary directory; no network."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="fairdistill-tests-"))
for var, sub in (("MPLCONFIGDIR", "mpl"), ("HF_HOME", "hf"), ("FAIRDISTILL_CACHE", "cache")):
    os.environ[var] = str(_SCRATCH / sub)
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
