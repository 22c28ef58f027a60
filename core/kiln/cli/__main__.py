"""``python -m kiln.cli`` is ``kiln``."""

from __future__ import annotations

from kiln.cli.main import main

raise SystemExit(main())
