"""``python -m modelhost.cli``: the ``modelhost`` command (what the server runs for
pipeline alerts, with its own interpreter)."""

from modelhost.cli import main

main()
