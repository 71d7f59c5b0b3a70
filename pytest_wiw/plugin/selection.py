"""Turning the command line into a Selection: which wm_types, which checkpoints, which settings.

Every wrong value raises UsageError saying what is accepted; the plugin turns it into a pytest
usage error (exit status 4) before anything starts.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pytest_wiw.api.registry import WMSpec, load_registry
from pytest_wiw.api.worldmodel import OFFLOAD_MODES, OFFLOAD_OPTION
from pytest_wiw.checkpoints.cache_dir import default_cache_dir
from pytest_wiw.checkpoints.epochs import split_path_list
from pytest_wiw.errors import CheckpointError, UsageError
from pytest_wiw.runtime.presets import preset_options
from pytest_wiw.session.pool import PoolSettings, visible_gpus, xdist_worker_index

DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class Selection:
    wm_types: list[str]
    registry: dict[str, WMSpec]
    ckpt: dict[str, str] = field(default_factory=dict)
    base_ckpt: dict[str, str] = field(default_factory=dict)
    settings: PoolSettings = field(default_factory=PoolSettings)
    seed: int = 0
    min_diff: float = 1.0
    max_batch: int = 2
    #: (wm_type, check name) -> reason, from the ini option wm_expected_failures
    expected_failures: dict = field(default_factory=dict)
    baseline_cache: str | None = None
    #: --wm-max-examples, or None for the default (see WiwSession.max_examples)
    max_examples: int | None = None
    #: --wm-allow-pickle: convert pickle weights (weights_only) instead of refusing them
    allow_pickle: bool = False
    #: --wm-preset: the named generation settings the types run at (None: the registry's and cards')
    preset: str | None = None
    #: --wm-reference: the folder of reference episodes (None: the ground-truth check skips)
    reference: str | None = None
    #: --wm-reference-episodes: how many of its episodes the ground-truth check generates for
    reference_episodes: int = 4
    #: --wm-reference-margin, per metric: how far below zero an improvement's interval may lie and still pass
    reference_margins: dict = field(default_factory=dict)

    def preset_settings(self, wm_type: str) -> dict[str, str]:
        """The preset's settings of ``wm_type`` as they resolve: the preset's values under --wm-opt's."""
        preset = self.settings.preset_options.get(wm_type, {})
        return {k: self.settings.options.get(k, v) for k, v in preset.items()}


def parse_selection(option, ini_expected_failures: list[str] = ()) -> Selection:
    """Build the Selection from pytest's parsed options (``config.option``) and ini lines."""
    registry = load_registry()
    names = parse_wm_list(option.wm, registry)
    if option.wm_changed:
        from pytest_wiw.plugin.changes import changed_wm_types

        names = [n for n in names if n in changed_wm_types(option.wm_changed, [registry[n] for n in names])]
    if option.wm_shard:
        names = shard(names, registry, option.wm_shard)
    ckpt = parse_paths("--ckpt-path", option.ckpt_path, names, registry)
    base = parse_paths("--base-ckpt-path", option.base_ckpt_path, names, registry)
    worker_cmds = parse_targeted("--wm-worker-cmd", option.wm_worker_cmd, names, registry)
    for name in base:
        if not registry[name].is_ft:
            raise UsageError(f"--base-ckpt-path {name}=...: {name} is a zero-shot type; only FT types take a base")
    preset = getattr(option, "wm_preset", None)
    dtype = option.wm_dtype
    if dtype not in DTYPES:
        raise UsageError(f"--wm-dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    settings = PoolSettings(
        device=parse_device(option.wm_device), dtype=dtype,
        threads=parse_int("--wm-threads", option.wm_threads, minimum=1),
        deterministic=not option.wm_nondeterministic,
        load_timeout=parse_float("--wm-load-timeout", option.wm_load_timeout),
        request_timeout=parse_float("--wm-timeout", option.wm_timeout),
        python=parse_python(option.wm_worker_python),
        tiny_cache=str(default_cache_dir()),
        options=with_offload(parse_options(option.wm_opt), getattr(option, "wm_offload", OFFLOAD_MODES[0])),
        worker_index=xdist_worker_index(), worker_cmds=worker_cmds,
        preset_options={name: preset_options(preset, name) for name in names} if preset else {},
    )
    return Selection(
        wm_types=names, registry=registry, ckpt=ckpt, base_ckpt=base, settings=settings,
        seed=parse_int("--wm-seed", option.wm_seed, minimum=0),
        min_diff=parse_float("--wm-min-diff", option.wm_min_diff, positive=False),
        max_batch=parse_int("--wm-max-batch", option.wm_max_batch, minimum=1),
        expected_failures=parse_expected_failures(ini_expected_failures, registry),
        baseline_cache=str(Path(option.wm_baseline_cache).expanduser().absolute()) if option.wm_baseline_cache else None,
        allow_pickle=bool(getattr(option, "wm_allow_pickle", False)), preset=preset,
        max_examples=(parse_int("--wm-max-examples", option.wm_max_examples, minimum=0)
                      if option.wm_max_examples is not None else None),
        **parse_reference(option),
    )


def parse_reference(option) -> dict:
    """The ground-truth check's options: the reference folder (absolute), episodes and margins."""
    from pytest_wiw.checks.ground_truth import parse_margins

    folder = getattr(option, "wm_reference", None)
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise UsageError(f"--wm-reference {folder!r}: not a folder (give the folder holding <episode>/episode.json "
                         "folders; `pytest-wiw import-habitat ROOT OUT` makes one from WIW's Habitat collection)")
    return {"reference": str(Path(folder).expanduser().absolute()) if folder is not None else None,
            "reference_episodes": parse_int("--wm-reference-episodes",
                                            getattr(option, "wm_reference_episodes", "4"), minimum=1),
            "reference_margins": parse_margins(getattr(option, "wm_reference_margin", "0"))}


def parse_expected_failures(lines: list[str], registry: dict[str, WMSpec]) -> dict[tuple[str, str], str]:
    """``WM_TYPE: check name: reason`` lines of the ini option wm_expected_failures."""
    from pytest_wiw.api.checklist import undeclared_checks

    out = {}
    for line in lines:
        parts = [p.strip() for p in line.split(":", 2)]
        if len(parts) != 3 or not all(parts):
            raise UsageError(f"wm_expected_failures line {line!r}: expected 'WM_TYPE: check name: reason'")
        wm_type, check, reason = parts
        if wm_type not in registry:
            raise UsageError(f"wm_expected_failures line {line!r}: {wm_type!r} is not a registered wm_type")
        unknown = undeclared_checks([check])
        if unknown:
            raise UsageError(f"wm_expected_failures line {line!r}: {unknown}")
        out[(wm_type, check)] = reason
    return out


def parse_wm_list(values: list[str], registry: dict[str, WMSpec]) -> list[str]:
    names: list[str] = []
    for value in values:
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            wanted = sorted(registry) if item == "all" else [item]
            for name in wanted:
                if name not in registry:
                    raise UsageError(f"--wm {name!r}: not a registered wm_type; registered: "
                                     f"{', '.join(sorted(registry))} (or 'all'); see pytest --wm-list")
                if name not in names:
                    names.append(name)
    return names


def shard(names: list[str], registry: dict[str, WMSpec], value: str) -> list[str]:
    """The wm_types of shard K of N: families are hashed (sha256 of the name), so the split does not
    depend on which other types are selected, and an FT type always lands with its base."""
    import hashlib

    k, sep, n = value.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise UsageError(f"--wm-shard {value!r}: expected K/N with 1 <= K <= N, e.g. 1/4")
    k, n = int(k), int(n)

    def bucket(name: str) -> int:
        return int(hashlib.sha256(registry[name].family.encode()).hexdigest(), 16) % n

    return [name for name in names if bucket(name) == k - 1]


def parse_paths(flag: str, values: list[str], names: list[str], registry: dict[str, WMSpec]) -> dict[str, str]:
    """``PATH`` (one --wm selected) or ``WM=PATH`` entries, as absolute path strings by wm_type.

    ``PATH`` may be a comma list ``A,B`` (FTwan22-14B's two expert LoRAs): each member is made absolute.
    A path that exists as written stays one path, commas included (``pytest_wiw.checkpoints.epochs.split_path_list``).
    """
    targeted = parse_targeted(flag, values, names, registry)
    out = {}
    for name, path in targeted.items():
        try:
            members = split_path_list(path) or [path]
        except CheckpointError as exc:
            raise UsageError(f"{flag} {name}={path}: {exc}") from None
        out[name] = ",".join(str(Path(m).expanduser().absolute()) for m in members)
    return out


def parse_targeted(flag: str, values: list[str], names: list[str], registry: dict[str, WMSpec]) -> dict[str, str]:
    """``VALUE`` (one --wm selected) or ``WM=VALUE`` entries, by wm_type."""
    paths: dict[str, str] = {}
    for value in values:
        head, sep, tail = value.partition("=")
        if sep and head in registry:
            name, path = head, tail
        elif len(names) == 1:
            name, path = names[0], value
        else:
            raise UsageError(f"{flag} {value!r}: with {len(names)} wm_types selected, say which one: "
                             f"{flag} WM=PATH (WM one of {', '.join(names)})")
        if name not in names:
            raise UsageError(f"{flag} {name}=...: {name} is not selected; add --wm {name}")
        if not path:
            raise UsageError(f"{flag} {value!r}: empty value")
        paths[name] = path
    return paths


def parse_device(value: str) -> str:
    if value == "auto":
        return "cuda" if visible_gpus() else "cpu"
    if value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise UsageError(f"--wm-device {value!r}: expected auto, cpu, cuda or cuda:N")


def parse_int(flag: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected an integer") from None
    if number < minimum:
        raise UsageError(f"{flag} {value!r}: expected an integer of at least {minimum}")
    return number


def parse_float(flag: str, value: str, positive: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected a number") from None
    if number < 0 or (positive and number == 0):
        raise UsageError(f"{flag} {value!r}: expected a {'positive' if positive else 'non-negative'} number")
    return number


def parse_python(value: str | None) -> str:
    if value is None:
        return sys.executable
    if not (os.path.isfile(value) and os.access(value, os.X_OK)):
        raise UsageError(f"--wm-worker-python {value!r}: not an executable file")
    return value


def with_offload(options: dict[str, str], offload: str) -> dict[str, str]:
    """The wrapper options with ``--wm-offload`` under OFFLOAD_OPTION (``--wm-opt offload=`` wins)."""
    out = {OFFLOAD_OPTION: offload, **options}
    if out[OFFLOAD_OPTION] not in OFFLOAD_MODES:
        raise UsageError(f"--wm-opt {OFFLOAD_OPTION}={out[OFFLOAD_OPTION]!r}: expected one of "
                         f"{', '.join(OFFLOAD_MODES)}")
    return out


def parse_options(values: list[str]) -> dict[str, str]:
    options = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--wm-opt {value!r}: expected KEY=VALUE")
        options[key] = val
    return options
