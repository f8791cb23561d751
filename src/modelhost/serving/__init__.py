"""The only package that knows HTTP: create_app(), the v1, Open Inference v2 and MLflow
scoring routes, batching, the model pool, the prediction cache, errors and metrics."""

from modelhost.serving.app import ModelhostApp, create_app
from modelhost.serving.observers import Observation, Observer
from modelhost.serving.pool import ModelPool, PoolOptions
from modelhost.serving.predictor import Limits
from modelhost.serving.server import MonitorOptions, ServerOptions

__all__ = ["Limits", "ModelPool", "ModelhostApp", "MonitorOptions", "Observation", "Observer",
           "PoolOptions", "ServerOptions", "create_app"]
