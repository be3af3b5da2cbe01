"""The Prefect flows: build_corpus, pretrain, continue_training. They only compose the tasks of tasks/; the
`gptflow` command (cli/) runs them from a shell, deployments run them from a Prefect server."""
