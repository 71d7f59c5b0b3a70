"""Check: the checkpoint's card names its training data, steps and licence (WIW's post-training guide)."""

import pytest

from pytest_wiw.checks import CARD_NAME, card_problems, check, checkpoint_of, fail, require_upstream


@check("checkpoint card")
def test_checkpoint_card(wm, wiw_record):
    """A README.md beside the post-trained checkpoint with datasets, training_steps and license."""
    if wm.legacy_command:
        pytest.skip(f"{wm.spec.name} runs a WIW worker script (--wm-worker-cmd): its checkpoint is inside the command")
    require_upstream(wm, "checkpoint card")
    ckpt = checkpoint_of(wm, "the checkpoint card")
    card_path = ckpt.root / CARD_NAME
    if not card_path.is_file():
        fail(f"no model card: {card_path} does not exist. Write one with YAML front matter naming datasets, "
             f"training_steps and license, e.g. `pytest-wiw card {ckpt.root} --datasets DATA "
             "--training-steps N --license apache-2.0`")
    problems = card_problems(ckpt.card)
    if problems:
        fail(f"{card_path} does not say what WIW's post-training guide asks; add to its front matter:\n  "
             + "\n  ".join(problems))
