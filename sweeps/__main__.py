from __future__ import annotations

from sweeps.cli import main

raise SystemExit(main())
