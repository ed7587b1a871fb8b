"""The whole Jina study on one 8-GPU node, simulated from measured costs (docs/study-plan.md).

Every trial of the 14 sweep files in ``sweeps/configs/jina/`` (cells from the files themselves, via the project's
config loader) gets a duration from measured per-item costs; the trials are then scheduled onto the node's GPUs as
Tune would place them (a trial starts as soon as a GPU, or a fraction of one, is free, in the order it was
submitted). Printed: the wall time, GPU-hours (busy training/evaluating, and held by trials), host memory of the
decoded images, and where the time goes.

    .venv/bin/python benchmarks/study_plan.py --out benchmarks/results/study_plan.json

Every input is in ``MEASURED`` or ``ASSUMED`` below, each with its source; change one with ``--set key=value``
(e.g. ``--set node_cores=48``).
"""

from __future__ import annotations

import argparse
import heapq
import json
from dataclasses import dataclass
from pathlib import Path

from sweeps.config import cells_for
from sweeps.sweepfile import load_sweep_config

JINA = Path(__file__).resolve().parents[1] / "sweeps" / "configs" / "jina"
H200 = "benchmarks/results/h200-2026-11-30 (one NVIDIA H200, torch 2.11, bf16 autocast, eager, the project's loops)"

MEASURED = {
    # training, pairs/s at the reference batch (gpu_throughput.py; session.log of the H200 run)
    "train_pairs_per_s.bert-base-cased": 3067.0,  # B128 L32, joint pair forward
    "train_pairs_per_s.resnet50": 2106.0,  # B128 224 px
    "train_pairs_per_s.clip": 3845.0,  # ViT-B/32, B256
    # torch.compile (reduce-overhead), same loops; the warm-up is paid once per worker (sweeps/compiled.py keeps the
    # compiled model for the worker's next cells): by a sweep's first worker whole, by its later workers in part
    "compiled_pairs_per_s.bert-base-cased": 7368.0,
    "compiled_warmup_s.bert-base-cased": 25.4,
    "compiled_pairs_per_s.resnet50": 3071.0,
    "compiled_warmup_s.resnet50": 35.6,
    # a sweep's later worker compiles with torch's caches warm: on cpu-2 (MiniLM, CLINC150, benchmarks/levers.py runs
    # of RESULTS.md "Levers on the CPU") the first compile cost 87.1 s (first epoch 93.2 s against 6.1 s eager) and a
    # fresh dynamo with inductor's on-disk cache warm 5.0-7.1 s (first epochs 6.5 / 8.7 s against 1.4 / 1.5 s):
    # the upper end, 7.1 / 87.1. A worker's later cells reuse the compiled model (0 s; by test, tests/test_compiled.py)
    "compile_later_worker_fraction": 7.1 / 87.1,
    # evaluation: bert-base, 20,000 items, exact top-20: encode-only 46,071/s, embed+search+metrics 40,512/s
    "encode_items_per_s.bert-base-cased": 46071.0,
    "eval_share_of_encode": 40512.0 / 46071.0,  # 0.88
    # GPU memory per trial at the reference batch (peak MB in the same runs)
    "gpu_peak_gb.bert-base-cased": 5.1,
    "gpu_peak_gb.resnet50": 11.3,
    "gpu_peak_gb.clip": 10.8,
    # packing 4 MiniLM trials at 0.25 GPU: the grid 1.34x faster than 1 worker at 1.0 GPU (gpu_packing.py)
    "packing_4x_grid_speedup": 1.34,
    # per-trial overhead on the CPU (benchmarks/RESULTS.md, "Per-trial overhead": MiniLM, reused actor):
    # wall inside the actor minus train and eval: 0.48-0.53 s; the first trial of an actor 6.3 s (start, imports, load)
    "trial_overhead_s": 0.5,
    "actor_first_trial_overhead_s": 6.3,
    "ray_init_s": 9.5,  # embedded Ray start, same benchmark
    "text_prep_ms_per_text": 7.2e3 / 19500,  # loading, splitting, tokenising CLINC150 on one core, same benchmark
    # decoding one image (224 px crop) on one core: the AT&T faces took 2.0 ms at load ~4 and 7.2 ms under load
    # 19-28 (benchmarks/image_scale.py, RESULTS.md "Decoded images at scale"); larger JPEGs (Flickr) cost more
    "decode_ms_per_image": 3.5,
    "decoded_bytes_per_image": 224 * 224 * 3,
}

ASSUMED = {
    "gpus": 8,
    "gpu_memory_gb": 141.0,
    # A GPU trial's worker process on the host, without the data: torch, CUDA context and libraries (the CPU
    # worker of image_scale.py holds ~0.5 GB of its own; the CUDA context adds a few GB).
    "worker_host_rss_gb": 3.0,
    "node_cores": 96,  # an 8-GPU H200/H100 node has 2 x 48 or more cores; decoding uses all of them
    # Labeled data sends one item per batch row through the tower, pairs two (query and document): the same
    # tower work per row, so labeled items train at twice the pairs rate.
    "tower_passes.labeled": 1.0,
    "tower_passes.pairs": 2.0,
    # Encode rate where no evaluation was measured: forward only ~1/3 of forward+backward, per tower pass. For
    # bert-base this rule gives 18,402/s against 46,071/s measured: pessimistic by 2.5x.
    "encode_vs_train_pass": 3.0,
    # The model load scales with its size: MiniLM (22.7M parameters) took the measured 0.5 s.
    "params_m.minilm": 22.7,
    "params_m.bert-base-cased": 108.3,
    "params_m.resnet50": 25.6,
    "params_m.clip": 151.3,
}

# The Jina study's data sets as the sweep files read them: images decoded, eval index and query counts.
# Sources: dataset cards / docs/datasets.md; eval sizes follow the files' split settings.
DATASETS = {
    "clinc150": {"structure": "labeled", "texts": 19500, "images": 0, "eval_index": 4500, "eval_queries": 0},
    # sentence-transformers/quora-duplicates "pair": 149,263 pairs; 10% of documents held out
    "quoraqa": {"structure": "pairs", "texts": 298526, "images": 0, "eval_index": 14926, "eval_queries": 2000},
    # jxie/flickr8k train split: 6,000 images x 5 captions; 10% of images held out
    "flickr8k": {"structure": "pairs", "texts": 30000, "images": 6000, "eval_index": 600, "eval_queries": 2000},
    # lmms-lab/flickr30k test: 31,783 images x 5 captions; 5% held out
    "flickr30k": {"structure": "pairs", "texts": 158915, "images": 31783, "eval_index": 1589, "eval_queries": 2000},
    # lmms-lab/COCO-Caption2017 val: 5,000 images x ~5 captions; 20% held out
    "coco-captions": {"structure": "pairs", "texts": 25014, "images": 5000, "eval_index": 1000, "eval_queries": 2000},
    # Totally-Looks-Like: 6,016 image pairs; 20% held out (all 1,203 held-out queries are evaluated)
    "totally-looks-like": {"structure": "pairs", "texts": 0, "images": 12032, "eval_index": 1203, "eval_queries": 1203},
    # CelebA: the files keep 120,000 images; 10% of identities held out
    "celeba": {"structure": "labeled", "texts": 0, "images": 120000, "eval_index": 12000, "eval_queries": 0},
}


def arch_of(cfg) -> str:
    """The measured architecture a sweep file trains: ``clip``, or the model name without its hub namespace."""
    if cfg.trial.model.kind == "clip":
        return "clip"
    return cfg.trial.model.name.rsplit("/", 1)[-1]  # google-bert/bert-base-cased -> bert-base-cased


@dataclass(frozen=True)
class Trial:
    sweep: str
    label: str
    arch: str
    train_s: float  # GPU busy training
    eval_s: float  # GPU busy evaluating
    overhead_s: float  # model load: the GPU held, not busy
    compile_s: float = 0.0  # compile warm-up of a worker's first trial of the sweep (0 eager); later trials reuse it

    @property
    def seconds(self) -> float:
        return self.train_s + self.eval_s + self.overhead_s


def param(key: str, values: dict) -> float:
    return values[key]


def trials_of(path: Path, v: dict, *, compile_mode: str) -> tuple[list[Trial], dict]:
    cfg = load_sweep_config(path)
    arch = arch_of(cfg)
    data = DATASETS[cfg.trial.data.name]
    passes = v[f"tower_passes.{data['structure']}"]
    compiled = compile_mode == "reduce-overhead" and f"compiled_pairs_per_s.{arch}" in v
    pairs_per_s = v[f"compiled_pairs_per_s.{arch}"] if compiled else v[f"train_pairs_per_s.{arch}"]
    train_s_per_item = passes / (2.0 * pairs_per_s)  # a pair is two tower passes
    encode = v.get(f"encode_items_per_s.{arch}") or v["encode_vs_train_pass"] * 2.0 * v[f"train_pairs_per_s.{arch}"]
    eval_items = data["eval_index"] + min(data["eval_queries"], cfg.trial.eval.max_queries)
    eval_s = eval_items / (encode * v["eval_share_of_encode"])
    load_s = v["trial_overhead_s"] * v[f"params_m.{arch}"] / v["params_m.minilm"]
    warmup = v[f"compiled_warmup_s.{arch}"] if compiled else 0.0  # every cell compiles in a new worker, baseline too
    out = []
    for cell in cells_for(cfg.sweep):
        evals = 1 if cell.size == 0 or cfg.sweep.experiment == "data_size" else cell.epochs
        train = cell.size * cell.epochs * train_s_per_item
        out.append(
            Trial(
                sweep=cfg.name,
                label=cell.label,
                arch=arch,
                train_s=train,
                eval_s=evals * eval_s,
                overhead_s=load_s,
                compile_s=warmup,
            )
        )
    prep_s = (
        data["texts"] * v["text_prep_ms_per_text"] / 1e3
        + data["images"] * v["decode_ms_per_image"] / 1e3 / v["node_cores"]
    )
    info = {
        "file": path.name,
        "sweep": cfg.name,
        "arch": arch,
        "dataset": cfg.trial.data.name,
        "trials": len(out),
        "gpus_per_trial": float(cfg.resources.gpus) if cfg.resources.gpus != "auto" else 1.0,
        "prep_s": prep_s,
        "decoded_gb": data["images"] * v["decoded_bytes_per_image"] / 1e9,
        "train_items_per_s": 1.0 / train_s_per_item,
        "eval_s": eval_s,
        "gpu_busy_s": sum(t.train_s + t.eval_s for t in out),
        "gpu_held_s": sum(t.seconds for t in out),
        "largest_trial": max(out, key=lambda t: t.seconds).label,
        "largest_trial_s": max(t.seconds for t in out),
        "compiled": compiled,
    }
    return out, info


def schedule(sweeps: list[tuple[list[Trial], dict]], v: dict, *, mode: str, per_gpu: int, largest_first: bool) -> dict:
    """List scheduling of trials onto ``gpus * per_gpu`` slots; returns the makespan and a timeline summary.

    mode "sequential": the files run one after another (``roi sweep`` per file, each with its own embedded Ray:
    Ray start and data preparation on the critical path, GPUs idle in each file's tail).
    mode "concurrent": one Ray for the node; every file's driver starts at once, prepares its data, and submits
    its trials; a trial takes the next free slot in submission order (Ray grants resources first come, first served).
    With ``per_gpu`` > 1 trials share a GPU (resources.gpus = 1/per_gpu): each runs slower by
    per_gpu / packing speedup (the measured grid speedup of 4 MiniLM trials per GPU).
    """
    slots = int(v["gpus"]) * per_gpu
    slowdown = 1.0 if per_gpu == 1 else per_gpu / v["packing_4x_grid_speedup"]
    free = [(0.0, i) for i in range(slots)]  # (free at, slot)
    heapq.heapify(free)
    last_sweep = {i: None for i in range(slots)}
    compiled: set[str] = set()  # sweeps whose first worker compiled (its cache artifacts exist)
    clock = 0.0
    timeline = []
    ready_queue = []
    prep: dict[str, float] = {}  # each file's preparation in this schedule
    for order, (trials, info) in enumerate(sweeps):
        # One after another, a later file on a dataset an earlier file prepared reads the prepared-data cache
        # (sweeps/data/cache.py); all at once, every file's driver prepares before any entry exists.
        seen = mode == "sequential" and any(i.get("dataset") == info.get("dataset") for _, i in sweeps[:order])
        prep[info["sweep"]] = info["prep_s"] * (v.get("prepared_cache_hit_fraction", 1.0) if seen else 1.0)
        if mode == "sequential":
            ready = clock + v["ray_init_s"] + prep[info["sweep"]]
        else:
            ready = v["ray_init_s"] + info["prep_s"]
        todo = sorted(trials, key=lambda t: -t.seconds) if largest_first else trials
        if mode == "sequential":
            free = [(max(t, ready), s) for t, s in free]
            heapq.heapify(free)
            end = ready
            for trial in todo:
                start, slot = heapq.heappop(free)
                duration = _duration(trial, slot, last_sweep, v, slowdown, compiled)
                last_sweep[slot] = trial.sweep
                heapq.heappush(free, (start + duration, slot))
                end = max(end, start + duration)
                timeline.append((trial.sweep, trial.label, start, start + duration))
            clock = end
        else:
            ready_queue.extend((ready, order, i, t) for i, t in enumerate(todo))
    if mode == "concurrent":
        ready_queue.sort(key=lambda r: (r[0], r[1], r[2]))
        for ready, _, _, trial in ready_queue:
            at, slot = heapq.heappop(free)
            start = max(at, ready)
            duration = _duration(trial, slot, last_sweep, v, slowdown, compiled)
            last_sweep[slot] = trial.sweep
            heapq.heappush(free, (start + duration, slot))
            timeline.append((trial.sweep, trial.label, start, start + duration))
    makespan = max(end for *_, end in timeline)
    held = sum(end - start for *_, start, end in timeline) / per_gpu
    startup = sum(v["ray_init_s"] + prep[info["sweep"]] for _, info in sweeps) if mode == "sequential" else 0.0
    peaks = [v[f"gpu_peak_gb.{trials[0].arch}"] for trials, _ in sweeps]
    finish: dict[str, float] = {}
    for sweep, _, _, end in timeline:
        finish[sweep] = max(finish.get(sweep, 0.0), end)
    return {
        "wall_s": makespan,
        "last_to_finish": max(finish, key=finish.get),
        "ready_s_of_last": v["ray_init_s"]
        + next(i["prep_s"] for _, i in sweeps if i["sweep"] == max(finish, key=finish.get))
        if mode == "concurrent"
        else None,
        "gpu_hours_held": held / 3600,
        # sequential: Ray start and data preparation of every file, GPUs idle meanwhile
        "startup_on_critical_path_s": startup,
        "gpu_memory_per_gpu_gb": per_gpu * max(peaks),
        "timeline": timeline,
    }


def _duration(trial: Trial, slot: int, last_sweep: dict, v: dict, slowdown: float, compiled: set) -> float:
    # Tune reuses a sweep's actor for its next trial: only a slot's first trial of a sweep starts an actor, and
    # only that trial compiles (sweeps/compiled.py). The sweep's first worker compiles from scratch; a later one
    # loads the cache artifacts and pays the measured fraction (benchmarks/compile_once.py).
    new_actor = last_sweep[slot] != trial.sweep
    start_actor = v["actor_first_trial_overhead_s"] if new_actor else 0.0
    compile_s = 0.0
    if new_actor and trial.compile_s:
        compile_s = trial.compile_s * (v.get("compile_later_worker_fraction", 1.0) if trial.sweep in compiled else 1.0)
        compiled.add(trial.sweep)
    return start_actor + compile_s + trial.overhead_s + (trial.train_s + trial.eval_s) * slowdown


def host_memory_gb(sweeps, timeline, v: dict, *, shared: bool) -> float:
    """Peak host memory of the decoded images while their sweeps run: the driver's copy and the object store's
    (shared) or one more private copy in every running trial of the sweep (before: torch tensors)."""
    spans: dict[str, tuple[float, float]] = {}
    for sweep, _, start, end in timeline:
        lo, hi = spans.get(sweep, (start, end))
        spans[sweep] = (min(lo, start), max(hi, end))
    gb = {info["sweep"]: info["decoded_gb"] for _, info in sweeps}
    events = sorted({t for span in spans.values() for t in span})
    peak = 0.0
    for t in events:
        running = [s for s, (lo, hi) in spans.items() if lo <= t < hi]
        trials = {s: sum(1 for sw, _, a, b in timeline if sw == s and a <= t < b) for s in running}
        copies = sum(gb[s] * (2 + (0 if shared else trials[s])) for s in running)
        peak = max(peak, copies + sum(trials.values()) * v["worker_host_rss_gb"])
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override an input")
    parser.add_argument("--out", type=Path, help="write the plan as JSON here")
    args = parser.parse_args()
    v = {**MEASURED, **ASSUMED}
    for item in args.set:
        key, value = item.split("=", 1)
        if key not in v:
            raise SystemExit(f"unknown input {key!r}; known: {', '.join(sorted(v))}")
        v[key] = float(value)

    files = sorted(JINA.glob("*.yaml"))
    plans = {}
    for compile_mode in ("off", "reduce-overhead"):
        sweeps = [trials_of(f, v, compile_mode=compile_mode) for f in files]
        for mode in ("sequential", "concurrent"):
            for per_gpu in (1, 4):
                for largest_first in (False, True):
                    key = f"{mode}, {per_gpu} per GPU, {'largest first' if largest_first else 'grid order'}, compile {compile_mode}"
                    plan = schedule(sweeps, v, mode=mode, per_gpu=per_gpu, largest_first=largest_first)
                    plan["host_memory_gb"] = host_memory_gb(sweeps, plan["timeline"], v, shared=True)
                    plan["host_memory_gb_torch_before"] = host_memory_gb(sweeps, plan["timeline"], v, shared=False)
                    plans[key] = plan
        if compile_mode == "off":
            eager = sweeps

    busy = sum(info["gpu_busy_s"] for _, info in eager)
    held = sum(info["gpu_held_s"] for _, info in eager)
    print(f"{len(files)} sweep files, {sum(info['trials'] for _, info in eager)} trials; inputs: {H200}")
    print(
        f"{'file':<26}{'arch':<17}{'trials':>7}{'items/s':>9}{'eval s':>8}{'GPU busy s':>11}{'largest trial':>22}{'prep s':>8}{'images GB':>10}"
    )
    for _, info in eager:
        print(
            f"{info['file']:<26}{info['arch']:<17}{info['trials']:>7}{info['train_items_per_s']:>9,.0f}{info['eval_s']:>8.2f}"
            f"{info['gpu_busy_s']:>11.1f}{info['largest_trial']:>16} {info['largest_trial_s']:>5.1f}s{info['prep_s']:>8.1f}{info['decoded_gb']:>10.1f}"
        )
    print(
        f"GPU busy (train + eval) {busy:.0f} s = {busy / 3600:.3f} GPU-h; held by trials (with model loads) {held:.0f} s"
    )
    print(
        f"{'schedule':<75}{'wall':>9}{'GPU-h held':>11}{'startup s':>10}{'GPU GB':>8}{'host GB':>9}{'before':>8}  last to finish"
    )
    for key, plan in plans.items():
        print(
            f"{key:<75}{plan['wall_s'] / 60:>7.1f}m{plan['gpu_hours_held']:>11.2f}{plan['startup_on_critical_path_s']:>10.0f}"
            f"{plan['gpu_memory_per_gpu_gb']:>8.0f}{plan['host_memory_gb']:>9.0f}{plan['host_memory_gb_torch_before']:>8.0f}"
            f"  {plan['last_to_finish']}"
            + (f" (ready at {plan['ready_s_of_last']:.0f}s)" if plan["ready_s_of_last"] else "")
        )
    if args.out:
        result = {
            "inputs": v,
            "source": H200,
            "files": [info for _, info in eager],
            "gpu_busy_s": busy,
            "gpu_held_s": held,
            "plans": {k: {kk: vv for kk, vv in p.items() if kk != "timeline"} for k, p in plans.items()},
        }
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
