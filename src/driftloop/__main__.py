"""``python -m driftloop`` is the ``driftloop`` command."""

from driftloop.cli.main import main

main()
