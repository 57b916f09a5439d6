"""Prefect flows: thin entry points over `tasks/`.

Importing this package points Prefect's home at ``$RALLY_HOME/prefect`` (unless PREFECT_HOME
is set), so running a Rally flow never writes to ``~/.prefect`` by surprise.
"""

from config.settings import use_rally_prefect_home

use_rally_prefect_home()
