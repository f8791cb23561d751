"""Monitoring use cases: the prediction log and the feedback joined to it (drift,
live metrics and alerts build on them). Never imports ``rollout``: monitoring emits
decisions, rollouts act on them."""

from modelhost.monitoring.feedback import FeedbackResult, FeedbackService, Rejected
from modelhost.monitoring.log import LogOptions, PredictionLog

__all__ = ["FeedbackResult", "FeedbackService", "LogOptions", "PredictionLog", "Rejected"]
