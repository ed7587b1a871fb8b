"""``python -m roi report RUN_DIR``, ``python -m roi backtest RUN_DIR``."""

from __future__ import annotations

from roi.cli import main

raise SystemExit(main())
