"""ROI analysis of fine-tuning sweeps: reads the results table only (see docs/results-schema.md)."""

from __future__ import annotations

__version__ = "0.1.0"
