"""Shared helpers: metrics, config, losses, checkpoints, image I/O, the evaluation loop."""
