"""compile: auto: the break-even decision on designed costs, steps per worker from the cells, and ids that do not
depend on how the towers ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.compile_plan import MEASURED, CompileCost, decide_compile, plan_compile, planned_steps, with_compile
from sweeps.config import cells_for
from sweeps.results import execution_neutral, portable_config, trial_id
from sweeps.sweepfile import sweep_from_dict

# 10 s to compile; a step of 10 pairs takes 0.1 s eager and 0.05 s compiled: 0.05 s saved, break-even 200 steps.
COST = CompileCost(compile_s=10.0, eager_per_s=100.0, compiled_per_s=200.0, batch=10, source="designed")


def _sweep(**sweep):
    raw = {
        "name": "plan",
        "task": "text-to-text",
        "model": {"kind": "hf-text", "name": "m"},
        "data": {"format": "clinc150", "name": "d", "path": "x.json"},
        "train": {"batch_size": 32},
        "sweep": {"experiment": "data_size", "seeds": [0], "train_to": "epochs", **sweep},
    }
    return sweep_from_dict(raw, where="t", base_dir=Path("/tmp"), default_name="plan")


def test_break_even_on_designed_costs():
    assert COST.saved_per_step(10) == pytest.approx(0.05) and COST.saved_per_step(20) == pytest.approx(0.1)
    below = decide_compile(requested="auto", cuda=True, steps_per_worker=199, batch_size=10, cost=COST)
    above = decide_compile(requested="auto", cuda=True, steps_per_worker=200, batch_size=10, cost=COST)
    assert (below.mode, above.mode) == ("off", "reduce-overhead")
    assert below.break_even_steps == pytest.approx(200.0)
    # Twice the batch saves twice per step: half the steps repay it.
    assert decide_compile(requested="auto", cuda=True, steps_per_worker=100, batch_size=20, cost=COST).mode != "off"
    assert "break-even of 200" in below.line() and below.line().startswith("train.compile off")


def test_cpu_is_eager_and_a_set_mode_is_kept():
    assert decide_compile(requested="auto", cuda=False, steps_per_worker=1e9, batch_size=10, cost=COST).mode == "off"
    kept = decide_compile(requested="default", cuda=False, steps_per_worker=0, batch_size=10, cost=COST)
    assert kept.mode == "default" and "sweep file" in kept.reason


def test_measured_bert_base_break_even_is_about_1000_steps():
    # RESULTS.md: "bert-base ~1,000 steps": 25.4 s / (128 x (1/3067 - 1/7368)) s per step = 1,042.6 steps
    d = decide_compile(requested="auto", cuda=True, steps_per_worker=0, batch_size=128, cost=MEASURED["text"])
    assert d.break_even_steps == pytest.approx(1042.6, abs=0.1)


def test_plan_spreads_the_cells_steps_over_the_workers():
    cfg = _sweep(sizes=[320, 640], epochs=2)
    cells = cells_for(cfg.sweep)  # the baseline (0 steps), 320 items (10 steps x 2), 640 items (20 x 2)
    assert [planned_steps(cfg, c) for c in cells] == [0, 20, 40]
    two = plan_compile(cfg, cells, gpus_per_trial=1.0, cluster_gpus=2.0)
    assert two.steps_per_worker == pytest.approx(30.0) and two.mode == "off"  # 60 steps over 2 workers
    packed = plan_compile(cfg, cells, gpus_per_trial=0.25, cluster_gpus=1.0)  # 4 slots, 3 cells: 3 workers
    assert packed.steps_per_worker == pytest.approx(20.0)
    assert plan_compile(cfg, cells, gpus_per_trial=0.0, cluster_gpus=0.0).reason.startswith("eager on the CPU")
    long = _sweep(sizes=[128_000], epochs=3)  # 4,000 steps per epoch x 3 on one GPU: well past bert-base's 1,043
    assert plan_compile(long, cells_for(long.sweep), gpus_per_trial=1.0, cluster_gpus=1.0).mode == "reduce-overhead"


def test_compile_mode_is_not_part_of_a_trial():
    cfg = _sweep(sizes=[100])
    assert cfg.trial.train.compile == "auto"
    cell = cells_for(cfg.sweep)[1]
    ids = {trial_id(with_compile(cfg, m).trial, cell, data_id="d") for m in ("auto", "off", "reduce-overhead")}
    assert len(ids) == 1
    assert portable_config(with_compile(cfg, "reduce-overhead").trial)["train"]["compile"] == "off"
    saved = {"train": {"compile": "reduce-overhead", "lr": 1.0}}
    assert execution_neutral(saved) == {"train": {"compile": "off", "lr": 1.0}} and saved["train"]["compile"] != "off"
