"""FIT Trial Design Lab: the study layer (replicates, diagnosands, batches) and the CLI."""

__version__ = "0.1.0"
