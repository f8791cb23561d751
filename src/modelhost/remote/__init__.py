"""A modelhost server over HTTP: ``modelhost.Client("http://host:8000", api_key=...)``.

:class:`RemoteClient` holds the connection; its ``registry``, ``rollouts`` and ``jobs``
answer with the same names, arguments and objects as a local ``Client``'s registry,
rollout service and job routes, so code (and the CLI's ``--server``) written against
one works with the other.
"""

from modelhost.remote.client import RemoteClient
from modelhost.remote.jobs import RemoteJobs
from modelhost.remote.registry import RemoteRegistry
from modelhost.remote.rollouts import RemoteRollouts

__all__ = ["RemoteClient", "RemoteJobs", "RemoteRegistry", "RemoteRollouts"]
