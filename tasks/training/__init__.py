"""The training flows' work: presets (presets and run config, tracking settings), launch (the torchrun child),
tracking (MLflow runs, metrics, registry), run (plan, open, train, status), evaluate (models on one text) and
publish (register, promote)."""
