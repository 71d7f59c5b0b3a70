"""The stable public surface for wrapper authors: everything a wrapper module imports from pytest-wiw."""

from .checkpoint import Checkpoint, card_generation, open_checkpoint, read_card, write_card
from .errors import CheckpointError, RequestError, SpecError
from .fingerprint import Fingerprint, fingerprint_tensor
from .registry import GenerationDefaults, Tolerances, WMSpec, register_wm
from .request import GenerationRequest
from .worldmodel import (
    OFFLOAD_MODES,
    OFFLOAD_OPTION,
    WorldModel,
    frame_indices,
    lookup_tensor,
    saved_state_dict,
)

__all__ = [
    "OFFLOAD_MODES", "OFFLOAD_OPTION",
    "Checkpoint", "CheckpointError", "Fingerprint", "GenerationDefaults", "GenerationRequest",
    "RequestError", "SpecError", "Tolerances", "WMSpec", "WorldModel", "card_generation",
    "fingerprint_tensor", "frame_indices", "lookup_tensor", "open_checkpoint", "read_card", "register_wm",
    "saved_state_dict", "write_card",
]
