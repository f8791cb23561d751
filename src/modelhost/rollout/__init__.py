"""Deployments: the pure router here; the rollout service in ``rollout.service``, its
options in ``rollout.options``."""

from modelhost.rollout.router import (
    Arm,
    ArmRole,
    Routing,
    Shadow,
    WindowedDraw,
    bucket,
    choose,
    shadowed,
)

__all__ = ["Arm", "ArmRole", "Routing", "Shadow", "WindowedDraw", "bucket", "choose",
           "shadowed"]
