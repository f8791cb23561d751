"""The feature store: one definition of each feature for training and serving.

``definitions.py`` reads entities, feature views and feature services (YAML or
Python, in the shape a Feast user knows) and checks them as a whole; ``offline.py``
builds point-in-time-correct training frames from a view's source.
"""

from modelhost.features.definitions import (
    Entity,
    FeatureField,
    FeatureRepo,
    FeatureService,
    FeatureView,
    FileSource,
    TableSource,
    parse_repo,
    parse_ttl,
)
from modelhost.features.offline import point_in_time_join, training_frame

__all__ = ["Entity", "FeatureField", "FeatureRepo", "FeatureService", "FeatureView",
           "FileSource", "TableSource", "parse_repo", "parse_ttl", "point_in_time_join",
           "training_frame"]
