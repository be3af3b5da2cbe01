"""Prefect flows that compose the tasks in tasks/, and the `gptflow` command (flows/cli.py)."""
