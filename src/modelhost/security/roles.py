"""Roles and what they may do (PRODUCT.md §6).

Routes are mapped to one :class:`Permission` each (serving/routes.py, checked by
serving/guard.py); a role grants a set of permissions, and a ``predictor`` key may be
limited to named models.
"""

from __future__ import annotations

import enum

from modelhost.errors import InvalidInputError


class Role(str, enum.Enum):
    ADMIN = "admin"
    DEPLOYER = "deployer"
    PREDICTOR = "predictor"
    VIEWER = "viewer"


class Permission(str, enum.Enum):
    PREDICT = "predict"  # prediction routes of every protocol, feedback
    READ = "read"        # metadata, cards, runs, datasets, OpenAPI
    DEPLOY = "deploy"    # register, stage, alias, deprecate, deploy, rollback
    ADMIN = "admin"      # keys and the audit log
    METRICS = "metrics"  # /metrics (when not public)


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.DEPLOYER: frozenset({Permission.READ, Permission.DEPLOY, Permission.METRICS}),
    Role.PREDICTOR: frozenset({Permission.PREDICT}),
    Role.VIEWER: frozenset({Permission.READ, Permission.METRICS}),
}

PRIVILEGED = frozenset({Permission.DEPLOY, Permission.ADMIN})
"""Denied attempts at these are written to the audit log."""


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise InvalidInputError(f"unknown role {value!r}; use one of "
                                + ", ".join(r.value for r in Role)) from None


def allows(role: Role, permission: Permission, *, model: str | None = None,
           models: tuple[str, ...] | None = None) -> bool:
    """Whether ``role`` (limited to ``models`` when given) may do ``permission``."""
    if permission not in GRANTS[role]:
        return False
    if permission is Permission.PREDICT and models is not None:
        return model is not None and model in models
    return True
