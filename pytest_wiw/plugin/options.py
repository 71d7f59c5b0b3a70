"""pytest-wiw's command-line options and ini values: their names, defaults and help, in one place.

``selection`` turns what they hold into a Selection; nothing else reads ``config.option.wm_*`` for meaning.
"""

from __future__ import annotations

import pytest

from pytest_wiw.api.worldmodel import OFFLOAD_MODES
from pytest_wiw.plugin.selection import DTYPES

#: Reference episodes the ground-truth check generates for by default (two generations each).
DEFAULT_REFERENCE_EPISODES = 4


def add_options(parser: pytest.Parser) -> None:
    """Every pytest-wiw command-line option and ini value, in one group of ``pytest --help``."""
    group = parser.getgroup("wiw", "pytest-wiw: world-model conformance")
    group.addoption("--wm", action="append", default=[], metavar="WM",
                    help="wm_type(s) to check: repeatable, comma lists, or 'all' (see --wm-list)")
    group.addoption("--ckpt-path", action="append", default=[], metavar="[WM=]PATH",
                    help="checkpoint of the wm_type under test (with several --wm: WM=PATH); "
                         "default: a tiny random checkpoint built offline")
    group.addoption("--base-ckpt-path", action="append", default=[], metavar="[WM=]PATH",
                    help="zero-shot base checkpoint of an FT type (default: the card's base_model)")
    group.addoption("--wm-device", default="auto", metavar="DEV",
                    help="auto (a GPU if one is visible), cpu, cuda, or cuda:N (default: auto)")
    group.addoption("--wm-dtype", default="float32", metavar="DTYPE", help=f"one of {', '.join(DTYPES)}")
    group.addoption("--wm-seed", default="0", metavar="INT", help="seed s of the reference request (default 0)")
    group.addoption("--wm-timeout", default="1800", metavar="SECONDS", help="per-request timeout (default 1800)")
    group.addoption("--wm-load-timeout", default="1800", metavar="SECONDS",
                    help="time a worker gets to load its checkpoint (default 1800)")
    group.addoption("--wm-worker-python", default=None, metavar="PYTHON",
                    help="interpreter that runs the worker processes (the WM's own environment)")
    group.addoption("--wm-worker-cmd", action="append", default=[], metavar="[WM=]COMMAND",
                    help="run an unmodified WIW worker script for the wm_type through the legacy adapter, "
                         "e.g. \"python downstream/api_models/nwm_model.py --ckpt_path ...\"")
    group.addoption("--wm-threads", default="1", metavar="N",
                    help="torch threads in each worker, pinned for reproducibility (default 1)")
    group.addoption("--wm-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="wrapper option, repeatable; generation settings (steps, height, ...) override defaults")
    group.addoption("--wm-offload", default=OFFLOAD_MODES[0], choices=OFFLOAD_MODES,
                    help="FT types that swap a component into their base (FTcosmos, FTltx, igen): keep the idle "
                         "one in pinned host memory and swap it in for zero-shot calls (pinned, the default), or "
                         "keep both on the device (none)")
    group.addoption("--wm-preset", default=None, metavar="NAME",
                    help="run every wm_type at a named set of generation settings: 'wiw' is World-in-World's own "
                         "(sizes, frames, steps, guidance; docs/checkpoints.md); --wm-opt values still win")
    group.addoption("--wm-min-diff", default="1.0", metavar="LEVELS",
                    help="smallest mean |FT - zero-shot| in uint8 levels that counts as a change (default 1)")
    group.addoption("--wm-max-batch", default="2", metavar="N",
                    help="largest batch sent to a worker; 1 for models too big for a batch of two")
    group.addoption("--wm-nondeterministic", action="store_true",
                    help="do not force torch's deterministic algorithms in the workers")
    group.addoption("--wm-shard", default=None, metavar="K/N",
                    help="run shard K of N: a stable split of the selected wm_types by family (FT types stay "
                         "with their base)")
    group.addoption("--wm-changed", default=None, metavar="GIT_REF",
                    help="keep only wm_types whose wrapper module (or a module of its package it imports), registry "
                         "entry or environment file changed since GIT_REF")
    group.addoption("--wm-max-examples", default=None, metavar="N",
                    help="requests the property check draws per wm_type (default: the hypothesis profile's "
                         "with --hypothesis-profile dev|ci|gpu, else 3 on the tiny defaults and 1 on a real "
                         "checkpoint, where a generation takes minutes)")
    group.addoption("--wm-baseline-cache", default=None, metavar="DIR",
                    help="keep zero-shot outputs of FT types in DIR and reuse them on later runs "
                         "(keyed by base checkpoint, request, seed, wrapper and library versions, device)")
    group.addoption("--wm-allow-pickle", action="store_true",
                    help="convert pickle weights (.bin .pt .pth .ckpt) to safetensors with "
                         "torch.load(weights_only=True) instead of refusing them; a pickle that holds anything "
                         "but tensors is still refused")
    group.addoption("--wm-reference", default=None, metavar="DIR",
                    help="reference episodes (docs/ground-truth.md): FT types are checked to be closer to their "
                         "ground-truth frames than the zero-shot base is ('closer to ground truth')")
    group.addoption("--wm-reference-episodes", default=str(DEFAULT_REFERENCE_EPISODES), metavar="N",
                    help="episodes of --wm-reference to generate for, two generations each (default "
                         f"{DEFAULT_REFERENCE_EPISODES}: the fewest a bootstrap interval says something on, and 8 "
                         "generations of minutes each on a real checkpoint)")
    group.addoption("--wm-reference-margin", default="0", metavar="M|psnr=M,ssim=M",
                    help="fail 'closer to ground truth' only when a metric's 95%% interval lies wholly below minus "
                         "this margin (PSNR in dB, SSIM in its own units); default 0: fail only when the FT is "
                         "reliably worse than zero-shot")
    group.addoption("--wm-report", default=None, metavar="DIR",
                    help="write <wm_type>.json, report.md and a contact sheet per wm_type into DIR")
    group.addoption("--wm-list", action="store_true", help="print the registered wm_types and exit")
    parser.addini("wm_expected_failures", type="linelist", default=[],
                  help="known failing checks, one per line: 'WM_TYPE: check name: reason' (strict xfail)")
