"""Fine-tuning budget sweeps: trials that fine-tune an embedding model on N items and measure retrieval."""

from __future__ import annotations

__version__ = "0.1.0"
