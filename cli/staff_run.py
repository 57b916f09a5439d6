"""`python -m cli.staff_run RUN_ID ARGS...`: `rally ARGS...` run as a piece of work staff
started from the console (`web.staff_runs`), which then records how it ended on its row
(`tasks.staff.runs.record_end`), so every web process can show it."""

import sys

from cli.main import main
from config.settings import get_settings
from store.db import open_store, transaction
from store.types import utcnow
from tasks.staff.runs import record_end


def run_command(run_id: str, args: list[str]) -> int:
    """Run `rally ARGS` (its output goes wherever this process's goes: the run's file), then
    record how it ended. The exit code is the command's."""
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        with transaction(open_store(get_settings())) as session:
            record_end(session, run_id, code=code, now=utcnow())
    except Exception as exc:  # the command's own result stands; the page will show "vanished"
        print(f"error: how this run ended was not recorded ({type(exc).__name__})", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(run_command(sys.argv[1], sys.argv[2:]))
