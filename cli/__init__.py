"""The `gptflow` command (cli/main.py): the flows from the command line, the deployments, the local stack and
sampling from registered models."""
