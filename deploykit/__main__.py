"""``python -m deploykit ...`` is the ``deploykit`` command."""

from .cli import main

raise SystemExit(main())
