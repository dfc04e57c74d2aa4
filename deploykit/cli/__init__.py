"""The ``deploykit`` command: ``demo``, ``info MODEL``, ``run MODEL``, ``bench MODEL``,
``backends``, ``probe [MODEL]``, ``tune MODEL...``.

One module per command (each exports a ``COMMAND``: name, help, its arguments, what it runs), the
options several commands share in :mod:`.options`, and :func:`main` in :mod:`.app`, dispatching
through the one table of commands there (``COMMANDS``). See docs/cli.md.
"""

from __future__ import annotations

from .app import COMMANDS, build_parser, main
from .command import Command

__all__ = ["COMMANDS", "Command", "build_parser", "main"]
