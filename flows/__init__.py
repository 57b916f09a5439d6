"""Prefect flows: thin entry points over `tasks/`, one module per part of the sprint.

`flows.schedule.RECURRING` lists the flows that run on a timer and how often; `prefect.yaml`
deploys every flow (module-path entry points, so a worker imports the installed package).

Importing this package points Prefect's home at ``$RALLY_HOME/prefect`` when the user has
configured no Prefect of their own (`config.settings.prefect_choice`), so a Rally
flow never writes to ``~/.prefect`` by surprise and a configured server or Cloud is used.
"""

from config.settings import use_rally_prefect_home

use_rally_prefect_home()
