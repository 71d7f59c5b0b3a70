"""The wm_type registry: ``register_wm`` and the specs it holds, loaded from entry points.

Registering never imports a model library: the wrapper class is named as a ``"module:Class"``
string and imported only inside the worker process.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Mapping

# CHECK_NAMES, the conformance checks by name as expected_failures and reports spell them, is derived from their
# declaration (pytest_wiw.api.checklist) and stays importable from here.
from pytest_wiw.api.checklist import CHECK_NAMES, undeclared_checks  # noqa: F401
from pytest_wiw.errors import SpecError, UsageError

ENTRY_POINT_GROUP = "pytest_wiw.wms"
CATEGORIES = ("text", "FTtext", "camera", "action", "GTsim")
FINETUNE_KINDS = ("lora", "transformer", "unet", "full")
TASKS = ("navigation", "manipulation", "freetext")
_WRAPPER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class GenerationDefaults:
    """Sizes and step counts a wm_type generates at (a checkpoint card may override them)."""

    height: int
    width: int
    out_height: int
    out_width: int
    num_frames: int
    num_output_frames: int = 14
    steps: int = 30
    guidance_scale: float = 1.0

    def updated(self, overrides: Mapping[str, object] | None) -> "GenerationDefaults":
        """A copy with ``overrides`` (from a card or ``--wm-opt``) applied; unknown keys are an error."""
        if not overrides:
            return self
        known = {f.name: f.type for f in dataclasses.fields(self)}
        values = {}
        for key, value in overrides.items():
            if key not in known:
                raise SpecError(f"generation setting {key!r} is unknown; known: {', '.join(known)}")
            try:
                values[key] = float(value) if key == "guidance_scale" else int(value)
            except (TypeError, ValueError):
                raise SpecError(f"generation setting {key!r}: expected a number, got {value!r}") from None
        return dataclasses.replace(self, **values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Tolerances:
    """How far outputs may differ where bitwise equality is not promised, in uint8 levels (0..255).

    batch: item i of a batch against item i alone. Batched kernels sum in another order than a
    batch of one, which can move a float by an ulp and a pixel by a level after rounding.
    determinism: the same request and seed twice in one worker (0: bitwise).
    """

    batch_max_abs: float = 2.0
    batch_mean_abs: float = 0.05
    determinism_max_abs: float = 0.0


@dataclass(frozen=True)
class WMSpec:
    """Everything the suite knows of one wm_type. Build it with ``register_wm``."""

    name: str
    wrapper: str | None
    category: str
    base: str | None = None
    finetune: str | None = None
    tasks: tuple[str, ...] = ("navigation",)
    defaults: GenerationDefaults | None = None
    env: str | None = None
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    unavailable: str | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    max_batch: int = 2
    #: Longest side, in pixels, of a start image the model accepts (it is resized to the generation size;
    #: larger ones are refused before generating, with the field named).
    max_image_side: int = 4096
    #: Longest navigation action sequence (ids) one request item may carry.
    max_actions: int = 64
    notes: str = ""
    #: The file whose register_wm call made this entry (for --wm-changed).
    registered_in: str | None = field(default=None, compare=False)

    @property
    def is_ft(self) -> bool:
        """A post-trained type: it applies a checkpoint on top of its zero-shot ``base``."""
        return self.base is not None

    @property
    def family(self) -> str:
        """The zero-shot base's name: an FT type and its base share one family (and xdist group)."""
        return self.base or self.name

    @property
    def runnable(self) -> bool:
        return self.unavailable is None and self.wrapper is not None

    def env_path(self) -> Path | None:
        """The pinned requirements file of this type's worker environment, resolved."""
        if not self.env:
            return None
        path = Path(self.env)
        if path.is_absolute():
            return path
        module = (self.wrapper or "wrappers:x").split(":")[0].split(".")[0]
        try:
            import importlib.util

            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0]) / path
        return path

    def to_dict(self) -> dict:
        """Plain data for the worker's config and the report."""
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        d["expected_failures"] = dict(self.expected_failures)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "WMSpec":
        d = dict(d)
        d["tasks"] = tuple(d.get("tasks") or ())
        if d.get("defaults"):
            d["defaults"] = GenerationDefaults(**d["defaults"])
        d["tolerances"] = Tolerances(**(d.get("tolerances") or {}))
        return cls(**d)


_REGISTRY: dict[str, WMSpec] = {}
_LOADED = False


def register_wm(
    name: str,
    *,
    wrapper: str | None,
    category: str,
    base: str | None = None,
    finetune: str | None = None,
    tasks: tuple[str, ...] = ("navigation",),
    defaults: GenerationDefaults | None = None,
    env: str | None = None,
    expected_failures: Mapping[str, str] | None = None,
    unavailable: str | None = None,
    tolerances: Tolerances | None = None,
    max_batch: int = 2,
    max_image_side: int = 4096,
    max_actions: int = 64,
    notes: str = "",
) -> WMSpec:
    """Register a wm_type. Call it from the module your ``pytest_wiw.wms`` entry point names.

    Example::

        register_wm("FTwan21", wrapper="wrappers.wan:WanImageToVideo", category="FTtext",
                    base="wan21", finetune="lora", tasks=("navigation",),
                    defaults=GenerationDefaults(height=480, width=832, out_height=480,
                                                out_width=832, num_frames=33, steps=30),
                    env="envs/diffusers.txt")

    A type that cannot run here (a remote API, another framework) is registered with
    ``wrapper=None`` and ``unavailable="why"``: it is listed, and its checks skip with that reason.
    """
    spec = WMSpec(
        name=name, wrapper=wrapper, category=category, base=base, finetune=finetune,
        tasks=tuple(tasks), defaults=defaults, env=env,
        expected_failures=dict(expected_failures or {}), unavailable=unavailable,
        tolerances=tolerances or Tolerances(), max_batch=max_batch, max_image_side=max_image_side,
        max_actions=max_actions, notes=notes,
        registered_in=_caller_file(),
    )
    _check_spec(spec)
    existing = _REGISTRY.get(name)
    if existing is not None and existing != spec:
        raise SpecError(f"wm_type {name!r} is registered twice with different settings "
                        f"({existing.wrapper} and {spec.wrapper}); pick another name")
    _REGISTRY[name] = spec
    return spec


def _caller_file() -> str | None:
    """The source file of the first caller outside this module (the one calling register_wm)."""
    import sys

    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else None


def _check_spec(spec: WMSpec) -> None:
    where = f"register_wm({spec.name!r})"
    if not spec.name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", spec.name):
        raise SpecError(f"{where}: name must be letters, digits, '_', '.', '-' (it becomes a test id)")
    if spec.category not in CATEGORIES:
        raise SpecError(f"{where}: category must be one of {', '.join(CATEGORIES)}, got {spec.category!r}")
    if spec.category == "FTtext" and not spec.base:
        raise SpecError(f"{where}: an FT type needs base='<zero-shot wm_type>', e.g. base='wan21'")
    bad_tasks = [t for t in spec.tasks if t not in TASKS]
    if not spec.tasks or bad_tasks:
        raise SpecError(f"{where}: tasks must be a non-empty subset of {TASKS}, got {spec.tasks!r}")
    if spec.wrapper is None:
        if not spec.unavailable:
            raise SpecError(f"{where}: without a wrapper, give unavailable='why it cannot run here'")
        return
    if not _WRAPPER_RE.match(spec.wrapper):
        raise SpecError(f"{where}: wrapper must be 'module:Class', e.g. 'wrappers.wan:WanImageToVideo', "
                        f"got {spec.wrapper!r}")
    if spec.defaults is None:
        raise SpecError(f"{where}: defaults=GenerationDefaults(height=..., width=..., out_height=..., "
                        "out_width=..., num_frames=..., steps=...) is required")
    if spec.base and spec.finetune not in FINETUNE_KINDS:
        raise SpecError(f"{where}: finetune must say how the checkpoint applies: one of "
                        f"{', '.join(FINETUNE_KINDS)}, got {spec.finetune!r}")
    unknown = undeclared_checks(spec.expected_failures)
    if unknown:
        raise SpecError(f"{where}: expected_failures: {unknown}")
    if spec.max_batch < 1:
        raise SpecError(f"{where}: max_batch must be at least 1")
    if spec.max_image_side < 8:
        raise SpecError(f"{where}: max_image_side must be at least 8 (pixels)")
    if spec.max_actions < 1:
        raise SpecError(f"{where}: max_actions must be at least 1")


def load_registry() -> dict[str, WMSpec]:
    """Import every ``pytest_wiw.wms`` entry point once and return the registry (name -> spec)."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            try:
                ep.load()
            except SpecError:
                raise
            except Exception as exc:  # a broken third-party package must not look like ours
                raise UsageError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP} "
                                 f"failed to import: {type(exc).__name__}: {exc}") from exc
    return dict(_REGISTRY)


def get_spec(name: str) -> WMSpec:
    registry = load_registry()
    if name not in registry:
        raise UsageError(f"unknown wm_type {name!r}; registered: {', '.join(sorted(registry))}")
    return registry[name]


def registry_problems(spec: WMSpec, registry: Mapping[str, WMSpec]) -> list[str]:
    """What makes a registered spec incomplete in context (used by the 'registered' check)."""
    problems = []
    if spec.base and spec.base not in registry:
        problems.append(f"base {spec.base!r} is not a registered wm_type")
    elif spec.base and registry[spec.base].base:
        problems.append(f"base {spec.base!r} is itself an FT type; name the zero-shot type")
    env = spec.env_path()
    if env is None:
        problems.append("no env= requirements file: name the pinned environment its worker runs in")
    elif not env.is_file():
        problems.append(f"env file {env} does not exist")
    else:
        problems.extend(f"{env.name}: {p}" for p in unpinned_requirements(env.read_text()))
    return problems


def unpinned_requirements(text: str) -> list[str]:
    """Lines of a requirements file that do not pin one exact version with '=='."""
    problems = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith(("-", "--")):
            continue
        if "==" not in line or any(op in line for op in (">", "<", "~=", "!=", "*", ",")):
            problems.append(f"line {n} {line!r} is not an exact '==' pin")
    return problems
