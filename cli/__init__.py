"""The `rally` command line. Store commands never import Prefect, so they answer fast."""
