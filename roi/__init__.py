"""ROI analysis of fine-tuning sweeps: reads the results table only (see docs/results-schema.md).

The Python API for notebooks (docs/roi.md, "Python API")::

    import roi
    analysis = roi.analyse(roi.load_results("runs/clinc150-data"))   # numbers only: pandas, no plotly
    analysis.answers[0].text                                          # the answer, in words
    figures = roi.figures(analysis)                                   # name -> plotly figure

The names are imported on first use: ``import roi`` stays cheap for ``roi --help`` and for the submodules
(``roi.errors``, ``roi.load``) that ``sweeps`` reads, and ``roi.figures`` alone needs plotly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "analyse": "roi.analysis",
    "Analysis": "roi.analysis",
    "Answer": "roi.answer",
    "load_results": "roi.load",
    "figures": "roi.plots",
    "write_report": "roi.report",
}
__all__ = ["Analysis", "Answer", "__version__", "analyse", "figures", "load_results", "write_report"]

if TYPE_CHECKING:
    from roi.analysis import Analysis, analyse
    from roi.answer import Answer
    from roi.load import load_results
    from roi.plots import figures
    from roi.report import write_report


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'roi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
