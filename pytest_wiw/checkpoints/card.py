"""Checkpoint cards: what WIW's post-training guide asks a checkpoint to say, and a template to fill in.

A card is the ``README.md`` beside the checkpoint with YAML front matter, as Hugging Face model
cards have: ``datasets`` (training data), ``training_steps`` and ``license`` are required;
``base_model`` names the zero-shot base.
"""

from __future__ import annotations

from pathlib import Path

from pytest_wiw.checkpoints.files import CARD_NAME, read_card

PLACEHOLDER = "FILL-IN"
# Keys a card may use for the number of training steps (the first is what `pytest-wiw card` writes).
STEP_KEYS = ("training_steps", "train_steps", "steps")


def card_problems(card: dict) -> list[str]:
    """What a card lacks, each as the line to write."""
    problems = []
    datasets = card.get("datasets")
    if not datasets or not isinstance(datasets, list) or any(PLACEHOLDER in str(d) for d in datasets):
        problems.append("datasets: [<the data it was post-trained on, e.g. habitat-nav-episodes>]")
    steps = next((card[k] for k in STEP_KEYS if k in card), None)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        problems.append("training_steps: <number of optimizer steps, e.g. 5000>")
    license_ = card.get("license")
    if not license_ or PLACEHOLDER in str(license_):
        problems.append("license: <an SPDX id, e.g. apache-2.0>")
    return problems


def write_card_template(folder: Path, *, datasets: list[str] | None = None, training_steps: int | None = None,
                        license: str | None = None, base_model: str | None = None) -> Path:
    """Write (or complete) ``folder/README.md``: fields given here win, fields already there are kept,
    the rest are FILL-IN placeholders. The body of an existing card is kept."""
    import yaml

    path = Path(folder) / CARD_NAME
    meta = read_card(folder) if path.exists() else {}
    body = _body(path.read_text(encoding="utf-8")) if path.exists() else (
        "\n# Post-trained checkpoint\n\nDescribe the post-training: task, data, recipe and evaluation.\n")
    meta.setdefault("datasets", [f"{PLACEHOLDER}: training data"])
    meta.setdefault("training_steps", PLACEHOLDER)
    meta.setdefault("license", PLACEHOLDER)
    if datasets:
        meta["datasets"] = list(datasets)
    if training_steps is not None:
        meta["training_steps"] = training_steps
    if license:
        meta["license"] = license
    if base_model:
        meta["base_model"] = base_model
    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body, encoding="utf-8")
    return path


def _body(text: str) -> str:
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end >= 0:
            return text[end + 4:]
    return "\n" + text
