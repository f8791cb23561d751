"""Experiments, runs, params, metrics, artifacts and dataset versions."""

from modelhost.tracking.datasets import Datasets, profile
from modelhost.tracking.runs import ActiveRun, Tracker

__all__ = ["ActiveRun", "Datasets", "Tracker", "profile"]
