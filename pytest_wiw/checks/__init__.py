"""Everything a conformance check (``conformance/``) imports from pytest-wiw, and nothing else.

A check is tied to its declaration (pytest_wiw.api.checklist) by ``@check("its name")`` (``marker``). The checks'
own pieces live beside this module: ``assertions`` (clean failures, blocked checks, recorded
figures), ``judgements`` (verdicts other checks depend on), ``dependencies`` (which check blocks which),
``compare`` (two videos) and ``ground_truth`` (scores against reference frames). What a check needs of the
rest of the suite (requests, checkpoints, fingerprints, worker errors, episodes) is named here, so that a
check never reaches into the session, the pool or the wire.
"""

from pytest_wiw.api.registry import registry_problems
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.checkpoints.card import card_problems
from pytest_wiw.checkpoints.files import CARD_NAME, open_checkpoint
from pytest_wiw.checkpoints.fingerprint import Fingerprint
from pytest_wiw.checkpoints.fingerprint import compare as compare_fingerprints
from pytest_wiw.checkpoints.pipeline_diff import SWAPPED_COMPONENT, identical_weight_files
from pytest_wiw.checks import ground_truth, judgements
from pytest_wiw.checks.assertions import (
    blocked,
    checkpoint_of,
    diff_of,
    fail,
    frames_of,
    record,
    require,
    require_upstream,
)
from pytest_wiw.checks.marker import check
from pytest_wiw.errors import CheckpointError, EpisodeError, RequestRejected, WorkerDied, WorkerError
from pytest_wiw.reference.episodes import episode_folders, load_episode

__all__ = [
    "CARD_NAME", "SWAPPED_COMPONENT", "CheckpointError", "EpisodeError", "Fingerprint", "GenerationRequest",
    "RequestRejected", "WorkerDied", "WorkerError", "blocked", "card_problems", "check", "checkpoint_of",
    "compare_fingerprints", "diff_of", "episode_folders", "fail", "frames_of",
    "ground_truth", "identical_weight_files", "judgements", "load_episode", "open_checkpoint",
    "record", "registry_problems", "require", "require_upstream",
]
