"""The suite keeps compiled code: where PYTHONDONTWRITEBYTECODE is set (as on the CI machines),
each of a run's Python processes (the workers, the `rally` runs and servers the tests start)
compiled Rally's modules and the tests' anew, about a tenth of the run's CPU. They are kept
where Python keeps them by default, in `__pycache__` folders beside the sources (git ignores
them), so the installed packages' compiled code, made when they were installed, is read as it
is: a folder of its own for compiled code (PYTHONPYCACHEPREFIX) had a fresh clone compile every
package again, about 6 CPU-seconds in each process that imported them first."""

import os
import sys

os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False
