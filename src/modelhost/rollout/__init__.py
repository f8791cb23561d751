"""Deployments: the pure router (strategies, analysis and the rollout service follow)."""

from modelhost.rollout.router import Arm, ArmRole, Routing, Shadow, bucket, choose, shadowed

__all__ = ["Arm", "ArmRole", "Routing", "Shadow", "bucket", "choose", "shadowed"]
