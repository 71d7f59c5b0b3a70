"""The ``pytest-wiw`` command: ``list`` the registry, ``make-tiny`` a reference checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UsageError, WiwError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-wiw", description="World-in-World world-model conformance tools")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print the registered wm_types as a table")
    tiny = sub.add_parser("make-tiny", help="write a tiny random checkpoint of a wm_type (an FT type's card "
                                            "names its tiny base, built into the cache)")
    tiny.add_argument("wm_type")
    tiny.add_argument("out_dir", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            from .listing import registry_table

            print(registry_table())
        elif args.command == "make-tiny":
            print(make_tiny(args.wm_type, args.out_dir, args.seed))
    except WiwError as exc:
        print(f"pytest-wiw: error: {exc}", file=sys.stderr)
        return 2
    return 0


def make_tiny(wm_type: str, out_dir: Path, seed: int) -> Path:
    """Build the tiny checkpoint of ``wm_type`` into ``out_dir`` (its base, if any, into the cache)."""
    from .registry import get_spec
    from .tiny import default_cache_dir, ensure_one
    from .worker.server import load_wrapper_class

    spec = get_spec(wm_type)
    if not spec.runnable:
        raise UsageError(f"{wm_type} is not runnable here: {spec.unavailable}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} is not empty; give a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    base = ensure_one(get_spec(spec.base), default_cache_dir(), seed) if spec.is_ft else None
    cls = load_wrapper_class(spec.wrapper)
    return Path(cls.make_tiny(wm_type, out_dir, base=base, seed=seed))


if __name__ == "__main__":
    sys.exit(main())
