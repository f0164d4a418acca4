"""``python -m agents`` is the ``churnguard`` command."""

from agents.cli import main

main()
