"""``python -m fastbp``: the command line."""

from .cli import main

raise SystemExit(main())
