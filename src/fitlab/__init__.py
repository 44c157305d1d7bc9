"""FIT Trial Design Lab: the study layer (replicates, diagnosands, batches) and the CLI."""

__version__ = "0.1.0"

from simulate.errors import FitlabError  # noqa: E402,F401  (the base of every user mistake)
