"""The suite keeps compiled code: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines),
each of a run's Python processes (the workers, the `rally` runs and servers the tests start)
compiled Rally's modules and the tests' anew, about a tenth of the run's CPU. They are kept
in `.pytest_cache/pycache`, out of the source tree, unless PYTHONPYCACHEPREFIX says where."""

import os
import sys
from pathlib import Path

_KEPT = Path(__file__).resolve().parent.parent / ".pytest_cache" / "pycache"
os.environ.setdefault("PYTHONPYCACHEPREFIX", str(_KEPT))
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]
sys.dont_write_bytecode = False
