"""The ``pytest-wiw`` command: ``list`` the registry, ``make-tiny`` a reference checkpoint, ``card``, ``report``,
``import-habitat`` (reference episodes from WIW's Habitat collection)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_wiw.errors import UsageError, WiwError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-wiw", description="World-in-World world-model conformance tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered wm_types as a table")
    tiny = sub.add_parser("make-tiny", help="write a tiny random checkpoint of a wm_type (an FT type's card "
                                            "names its tiny base, built into the cache)")
    tiny.add_argument("wm_type")
    tiny.add_argument("out_dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    card = sub.add_parser("card", help="write (or complete) the model card README.md beside a checkpoint")
    card.add_argument("folder", type=Path)
    card.add_argument("--datasets", nargs="+", help="the data it was post-trained on")
    card.add_argument("--training-steps", type=int)
    card.add_argument("--license")
    card.add_argument("--base-model", help="local path of the zero-shot base checkpoint")
    report = sub.add_parser("report", help="merge report folders (shards, machines) and render report.md; "
                                           "exit 1 when any verdict failed")
    report.add_argument("dirs", nargs="+", type=Path)
    report.add_argument("--out", type=Path, help="folder for the merged JSON and report.md (default: print)")
    _add_import_habitat(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            from pytest_wiw.plugin.listing import registry_table

            print(registry_table())
        elif args.command == "make-tiny":
            print(make_tiny(args.wm_type, args.out_dir, args.seed))
        elif args.command == "card":
            from pytest_wiw.checkpoints.card import card_problems, write_card_template
            from pytest_wiw.checkpoints.files import read_card

            if not args.folder.is_dir():
                raise UsageError(f"{args.folder} is not a folder (give the folder that holds the checkpoint)")
            path = write_card_template(args.folder, datasets=args.datasets, training_steps=args.training_steps,
                                       license=args.license, base_model=args.base_model)
            left = card_problems(read_card(args.folder))
            print(f"wrote {path}" + (": still to fill in:\n  " + "\n  ".join(left) if left else ""))
        elif args.command == "report":
            return merge_reports(args.dirs, args.out)
        elif args.command == "import-habitat":
            from pytest_wiw.reference.habitat_import import import_habitat

            written = import_habitat(args.root, args.out, frames=args.frames, stride=args.stride,
                                     max_episodes=args.max_episodes, view_hw=args.view_size, hfov=args.hfov,
                                     panorama=args.panorama)
            print(f"wrote {len(written)} episode(s) into {args.out}")
    except WiwError as exc:
        print(f"pytest-wiw: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _add_import_habitat(sub) -> None:
    from pytest_wiw.reference.habitat_import import DEFAULT_FRAMES, DEFAULT_HFOV, DEFAULT_VIEW, IMPORT_ASSUMPTIONS

    cmd = sub.add_parser("import-habitat", formatter_class=argparse.RawDescriptionHelpFormatter,
                         help="convert WIW's Habitat collection (metadata.json + step-N_type-rgb.png) into "
                              "reference episodes for --wm-reference",
                         description="Write reference episodes (docs/ground-truth.md) from the output of WIW's "
                                     "scripts/data_collect.sh.", epilog=IMPORT_ASSUMPTIONS)
    cmd.add_argument("root", type=Path, help="the collection: ROOT/<scene>/traj-<n>/waypoint-<k>/")
    cmd.add_argument("out", type=Path, help="a new or empty folder for the episodes")
    cmd.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                     help=f"frames per episode, the start included (default {DEFAULT_FRAMES})")
    cmd.add_argument("--stride", type=int, default=None, help="steps between episode starts (default: --frames)")
    cmd.add_argument("--max-episodes", type=int, default=None, help="stop after this many episodes")
    cmd.add_argument("--view-size", type=_size, default=DEFAULT_VIEW, metavar="HxW",
                     help=f"perspective view of a panorama (default {DEFAULT_VIEW[0]}x{DEFAULT_VIEW[1]})")
    cmd.add_argument("--hfov", type=float, default=DEFAULT_HFOV,
                     help=f"its horizontal field of view in degrees (default {DEFAULT_HFOV:g})")
    cmd.add_argument("--panorama", choices=("auto", "yes", "no"), default="auto",
                     help="frames are equirectangular panoramas: auto (width = 2 x height), yes, or no (kept as they are)")


def _size(value: str) -> tuple[int, int]:
    h, sep, w = value.lower().partition("x")
    if not (sep and h.isdigit() and w.isdigit() and int(h) >= 8 and int(w) >= 8):
        raise argparse.ArgumentTypeError(f"{value!r}: expected HEIGHTxWIDTH, each at least 8, e.g. 480x480")
    return int(h), int(w)


def merge_reports(dirs: list[Path], out: Path | None) -> int:
    """Merge report folders; write or print the Markdown; 1 when a verdict failed, 0 otherwise."""
    from pytest_wiw.report.writer import merge_report_dirs, render_markdown, write_reports

    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise UsageError(f"not a folder: {', '.join(map(str, missing))}")
    reports = merge_report_dirs(dirs)
    if not reports:
        raise UsageError(f"no pytest-wiw report JSON in {', '.join(map(str, dirs))}")
    if out is not None:
        write_reports(reports, out)
        print(f"merged {len(reports)} wm_type(s) into {out}")
    else:
        print(render_markdown(list(reports.values())))
    failed = sorted(name for name, r in reports.items() if r["verdict"] == "failed")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def make_tiny(wm_type: str, out_dir: Path, seed: int) -> Path:
    """Build the tiny checkpoint of ``wm_type`` into ``out_dir`` (its base, if any, into the cache)."""
    from pytest_wiw.api.registry import get_spec
    from pytest_wiw.checkpoints.cache_dir import default_cache_dir
    from pytest_wiw.runtime.tiny import ensure_one, made_checkpoint
    from pytest_wiw.runtime.wrapper_class import load_wrapper_class

    spec = get_spec(wm_type)
    if not spec.runnable:
        raise UsageError(f"{wm_type} is not runnable here: {spec.unavailable}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} is not empty; give a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = ensure_one(get_spec(spec.base), default_cache_dir(), seed) if spec.is_ft else None
    cls = load_wrapper_class(spec.wrapper)
    return made_checkpoint(cls, wm_type, out_dir, cls.make_tiny(wm_type, out_dir, base=base, seed=seed))


if __name__ == "__main__":
    sys.exit(main())
