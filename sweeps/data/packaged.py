"""Labeled data that a pip package ships, for the default run on a fresh machine with no data folder.

``home-assistant-intents`` holds Home Assistant's English voice-command templates for 42 intents
("turn off the {name} in the {area}"), written and reviewed by people; 32 remain after the filters below.
``hassil`` expands a template's alternatives and optional words into sentences; the slots a real home would
fill ({area}, {name}, {floor}) come from the short fixed lists below, so the sentences are real templates with
made-up rooms and device names. Relevance = same intent, as for CLINC150.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

import numpy as np

from sweeps.config import DataConfig
from sweeps.data.items import LabeledItems
from sweeps.errors import DataError

# Slot values a home would supply; everything else in the sentences comes from the templates.
AREAS = ("kitchen", "living room", "bedroom", "garage", "office", "bathroom", "hallway", "basement", "nursery", "patio")
NAMES = (
    "ceiling light",
    "front door",
    "desk lamp",
    "thermostat",
    "garage door",
    "coffee maker",
    "tv",
    "porch light",
    "blinds",
    "speaker",
)
FLOORS = ("first floor", "upstairs", "downstairs", "attic")

ENUMERATE_PER_INTENT = 3000  # expansions enumerated per intent before sampling (hassil enumerates in order)
PER_INTENT = 80  # sentences kept per intent (seeded sample of the distinct expansions)
MIN_PER_INTENT = 12  # intents with fewer distinct sentences are left out (too few to split and train on)


def load_home_assistant_intents(cfg: DataConfig, *, seed: int = 0, language: str = "en") -> LabeledItems:
    """Distinct sentences per intent, a seeded sample of ``PER_INTENT`` each."""
    try:
        import home_assistant_intents
        from hassil import Intents
        from hassil.intents import TextSlotList
        from hassil.sample import sample_intents
    except ImportError:
        raise DataError(
            "the packages home-assistant-intents and hassil are not installed",
            field="data.format",
            fix="pip install 'finetuning-budget[offline]' (or pip install home-assistant-intents hassil)",
        ) from None
    intents = Intents.from_dict(home_assistant_intents.get_intents(language))
    lists = {
        "area": TextSlotList.from_strings(list(AREAS)),
        "name": TextSlotList.from_strings(list(NAMES)),
        "floor": TextSlotList.from_strings(list(FLOORS)),
    }
    sentences: dict[str, set[str]] = defaultdict(set)
    # hassil logs a warning per number slot it cannot spell out; the digits are fine for us.
    hassil_log = logging.getLogger("hassil")
    level = hassil_log.level
    hassil_log.setLevel(logging.ERROR)
    try:
        for intent, text in sample_intents(intents, slot_lists=lists, max_sentences_per_intent=ENUMERATE_PER_INTENT):
            sentences[intent].add(" ".join(text.split()))
    finally:
        hassil_log.setLevel(level)
    # A sentence that several intents produce (the generic device names fill the vacuum and the lawn-mower
    # templates alike: "return the blinds to base") has no one right label; training would push identical
    # inputs apart. Such sentences are left out.
    owners = Counter(text for texts in sentences.values() for text in texts)
    rng = np.random.default_rng(seed)
    items, labels = [], []
    for intent in sorted(sentences):
        texts = sorted(text for text in sentences[intent] if owners[text] == 1)
        if len(texts) < MIN_PER_INTENT:
            continue
        keep = sorted(rng.choice(len(texts), size=min(PER_INTENT, len(texts)), replace=False))
        items.extend(texts[i] for i in keep)
        labels.extend([intent] * len(keep))
    return LabeledItems(
        items=tuple(items), labels=tuple(labels), modality="text", source=f"home-assistant-intents ({language})"
    )
