"""The stable public surface for wrapper authors: everything a wrapper module imports from pytest-wiw."""

from pytest_wiw.api.registry import GenerationDefaults, Tolerances, WMSpec, register_wm
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.api.worldmodel import (
    OFFLOAD_MODES,
    OFFLOAD_OPTION,
    WorldModel,
    frame_indices,
    lookup_tensor,
    saved_state_dict,
)
from pytest_wiw.checkpoints.files import Checkpoint, card_generation, open_checkpoint, read_card, write_card
from pytest_wiw.checkpoints.fingerprint import Fingerprint, fingerprint_tensor
from pytest_wiw.errors import CheckpointError, RequestError, SpecError

__all__ = [
    "OFFLOAD_MODES", "OFFLOAD_OPTION",
    "Checkpoint", "CheckpointError", "Fingerprint", "GenerationDefaults", "GenerationRequest",
    "RequestError", "SpecError", "Tolerances", "WMSpec", "WorldModel", "card_generation",
    "fingerprint_tensor", "frame_indices", "lookup_tensor", "open_checkpoint", "read_card", "register_wm",
    "saved_state_dict", "write_card",
]
