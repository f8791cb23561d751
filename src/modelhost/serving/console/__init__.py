"""The web console at ``/ui``: the registry, deployments, monitoring, runs, the audit log
and keys on pages served by the same server, through the same services as the API.

Server-rendered Jinja2 templates (autoescaped), htmx (vendored, 0BSD) for the parts that
refresh themselves, and inline SVG charts drawn in Python: no build step, no CDN, no
inline script or style (see ``pages.py`` for sessions, roles and CSRF).
"""

from modelhost.serving.console.pages import ConsoleServices, install

__all__ = ["ConsoleServices", "install"]
