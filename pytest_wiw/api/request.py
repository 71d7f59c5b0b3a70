"""GenerationRequest: WIW's generation payload, typed and validated when built, plus its prompt templates."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pytest_wiw.errors import RequestError

TASK_TYPES = ("navigation", "manipulation", "freetext")

# WIW navigation ids. 0 is a placeholder, 4 (stop) opens every WIW row and is dropped.
NAVIGATION_ACTIONS = {
    0: None,
    1: "move forward 0.2 m",
    2: "turn left 22.5 degrees",
    3: "turn right 22.5 degrees",
    4: "stop",
}
STOP_ID = 4
MAX_SEED = 2**63 - 1
MAX_INSTRUCTION_CHARS = 2000


def navigation_prompt(ids: Sequence[int]) -> str:
    """WIW's navigation template: the ids (first one dropped when it is the row-opening stop) as camera motions."""
    ids = list(ids)
    if ids and ids[0] == STOP_ID:
        ids = ids[1:]
    motions = [NAVIGATION_ACTIONS[i] for i in ids if NAVIGATION_ACTIONS[i] is not None]
    return "Follow this sequence of camera motions: [" + ", ".join(motions) + "]"


def manipulation_prompt(instruction: str) -> str:
    """WIW's manipulation template: a robot arm carrying out the instruction."""
    return f"A robot arm performs the task: {instruction.strip()}"


def freetext_prompt(text: str) -> str:
    """Free text is passed through unchanged."""
    return text


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """One generation call: a start image per batch item plus its actions or instruction.

    Validated when built: every error is a RequestError whose message names the field and what
    was expected. ``seed`` is one int that every item uses, or one int per item; each item
    draws its noise from a generator of its own, so a batch equals its items run one by one.
    """

    images: np.ndarray
    actions: list
    task_type: str
    seed: int | list[int]
    request_model_name: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    @property
    def seeds(self) -> list[int]:
        """One seed per batch item."""
        if isinstance(self.seed, list):
            return list(self.seed)
        return [int(self.seed)] * self.batch_size

    def prompts(self) -> list[str]:
        """The text prompt of each item, built with WIW's template for ``task_type``."""
        if self.task_type == "navigation":
            return [navigation_prompt(a) for a in self.actions]
        if self.task_type == "manipulation":
            return [manipulation_prompt(a) for a in self.actions]
        return [freetext_prompt(a) for a in self.actions]

    def item(self, i: int, *, seed: int | None = None) -> "GenerationRequest":
        """Batch item ``i`` as a request of its own (with its own seed, or ``seed``)."""
        return GenerationRequest(
            images=self.images[i : i + 1],
            actions=[self.actions[i]],
            task_type=self.task_type,
            seed=self.seeds[i] if seed is None else seed,
            request_model_name=self.request_model_name,
            extra=dict(self.extra),
        )

    def with_seed(self, seed: int | list[int]) -> "GenerationRequest":
        return GenerationRequest(self.images, list(self.actions), self.task_type, seed,
                                 self.request_model_name, dict(self.extra))

    def content_digest(self) -> str:
        """sha256 of everything but the seed: images, actions, task type and extra fields."""
        h = hashlib.sha256()
        h.update(str(self.images.shape).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(json.dumps([self._wire_actions(), self.task_type, self.extra], sort_keys=True).encode())
        return h.hexdigest()

    # -- wire form (see pytest_wiw.wire.frames) -------------------------------------------
    def to_wire(self) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "actions": self._wire_actions(),
            "task_type": self.task_type,
            "seed": [int(s) for s in self.seed] if isinstance(self.seed, list) else int(self.seed),
            "request_model_name": self.request_model_name,
            "extra": self.extra,
        }
        return header, {"images": self.images}

    def _wire_actions(self) -> list:
        """Actions as JSON-able values: id sequences as lists of int, instructions as str."""
        return [a if isinstance(a, str) else [int(i) for i in a] for a in self.actions]

    @classmethod
    def from_wire(cls, header: dict, arrays: dict[str, np.ndarray]) -> "GenerationRequest":
        """Rebuild (and so re-validate) a request received from the wire."""
        if "images" not in arrays:
            raise RequestError("images", "missing: the request carries no image array")
        for name in ("actions", "task_type", "seed", "request_model_name"):
            if name not in header:
                raise RequestError(name, "missing from the request")
        return cls(
            images=arrays["images"],
            actions=header["actions"],
            task_type=header["task_type"],
            seed=header["seed"],
            request_model_name=header["request_model_name"],
            extra=header.get("extra") or {},
        )


def _validate(req: GenerationRequest) -> None:
    images = req.images
    if not isinstance(images, np.ndarray):
        raise RequestError("images", f"expected a numpy uint8 array (B, 3, H, W), got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise RequestError("images", f"expected dtype uint8 (0..255 pixel values), got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise RequestError("images", f"expected shape (B, 3, H, W), got {tuple(images.shape)}")
    batch = images.shape[0]
    if batch == 0:
        raise RequestError("images", "empty batch: at least one start image is needed")
    if images.shape[2] < 8 or images.shape[3] < 8:
        raise RequestError("images", f"image of {images.shape[2]}x{images.shape[3]} is too small (at least 8x8)")

    if req.task_type not in TASK_TYPES:
        raise RequestError("task_type", f"expected one of {', '.join(TASK_TYPES)}, got {req.task_type!r}")
    actions = req.actions
    if not isinstance(actions, list):
        raise RequestError("actions", f"expected a list with one entry per batch item, got {type(actions).__name__}")
    if len(actions) != batch:
        raise RequestError("actions", f"{len(actions)} entries for a batch of {batch} images")
    for i, a in enumerate(actions):
        _validate_action(req.task_type, i, a)

    seeds = req.seed if isinstance(req.seed, list) else [req.seed]
    if isinstance(req.seed, list) and len(seeds) != batch:
        raise RequestError("seed", f"{len(seeds)} seeds for a batch of {batch}; give one int or one per item")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise RequestError("seed", f"expected an int, got {type(s).__name__} {s!r}")
        if not 0 <= int(s) <= MAX_SEED:
            raise RequestError("seed", f"{s} is outside 0..2**63-1")

    if not isinstance(req.request_model_name, str) or not req.request_model_name:
        raise RequestError("request_model_name", "expected the worker's wm_type as a non-empty string")
    if not isinstance(req.extra, dict):
        raise RequestError("extra", f"expected a mapping, got {type(req.extra).__name__}")


def _validate_action(task_type: str, i: int, action: Any) -> None:
    where = f"actions[{i}]"
    if task_type == "navigation":
        if isinstance(action, str) or not isinstance(action, (list, tuple, np.ndarray)):
            raise RequestError(where, f"navigation expects a sequence of action ids, got {type(action).__name__}")
        if len(action) == 0:
            raise RequestError(where, "empty action sequence")
        for a in action:
            if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or int(a) not in NAVIGATION_ACTIONS:
                raise RequestError(where, f"unknown action id {a!r}; navigation ids are 0-4 "
                                          "(0 placeholder, 1 forward, 2 left, 3 right, 4 stop)")
    else:
        if not isinstance(action, str):
            raise RequestError(where, f"{task_type} expects an instruction string, got {type(action).__name__}")
        if not action.strip():
            raise RequestError(where, "empty instruction")
        if len(action) > MAX_INSTRUCTION_CHARS:
            raise RequestError(where, f"instruction of {len(action)} characters (at most {MAX_INSTRUCTION_CHARS})")
