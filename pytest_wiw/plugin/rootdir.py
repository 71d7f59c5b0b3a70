"""Catch pytest taking a path option's value for a test path when it picks its rootdir (pytest issue 8846).

pytest picks its rootdir and ini file in ``Config.parse`` from the arguments it does not know yet,
before it loads any plugin installed through an entry point: ``pytest --wm wan21 --ckpt-path /ckpts/x``
hands ``/ckpts/x`` to that search as if it were a test path, so pytest looks for the ini file from
``/ckpts/x`` upwards, and the project's pytest.ini / pyproject.toml (``wm_expected_failures``,
``addopts``) is never read. ``--ckpt-path=/ckpts/x`` is parsed whole and does not do it. No hook of
this plugin runs before that search, and pytest offers no public way to redo it in the same process
(only its private ``_rootpath``/``_inicfg``, with ``addopts``, ``-p`` plugins and ``confcutdir``
already applied from the wrong file). So when pytest was started from a command line, the plugin
starts it again, in the same process (``os.execv``), with the options written in the ``=`` form:
pytest then reads the project's ini file as it would have. Where that cannot be done (pytest called
from Python, or the restarted run still misplaced), it stops with a usage error that says how to write
the option.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

#: The plugin's options whose value is a path pytest may mistake for a test path.
PATH_OPTIONS = ("--ckpt-path", "--base-ckpt-path", "--wm-report", "--wm-baseline-cache", "--wm-worker-python")


def space_form_values(args: Sequence[str]) -> list[tuple[str, str]]:
    """``(option, value)`` of every PATH_OPTIONS option written as two arguments."""
    args = list(args)
    return [(flag, value) for flag, value in zip(args, args[1:]) if flag in PATH_OPTIONS]


#: Set in the environment of a restarted pytest, so that a restart happens at most once.
RESTARTED_ENV = "PYTEST_WIW_RESTARTED_FOR_ROOTDIR"


def equals_form(args: Sequence[str]) -> list[str]:
    """``args`` with every space-form PATH_OPTIONS pair joined into one ``--option=value`` argument."""
    joined, rest = [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg in PATH_OPTIONS and rest:
            arg = f"{arg}={rest.pop(0)}"
        joined.append(arg)
    return joined


def restart_command(config) -> list[str] | None:
    """The interpreter's command line with the path options in the ``=`` form, to start pytest again; None
    when pytest was not started from a command line (``pytest.main([...])``, pytester in process) or
    already was restarted once."""
    args = list(config.invocation_params.args)
    orig = list(getattr(sys, "orig_argv", []))
    if os.environ.get(RESTARTED_ENV) or not args or sys.argv[1:] != args or orig[-len(args):] != args:
        return None
    return [sys.executable, *orig[1:-len(args)], *equals_form(args)]


def restart_in_equals_form(config) -> None:
    """Replace this process with pytest started again in the ``=`` form, after saying why on stderr; returns
    only when that cannot be done (see restart_command)."""
    command = restart_command(config)
    if command is None:
        return
    # pytest's fd capture is already on: without this the restarted pytest would write into its temp files.
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.stop_global_capturing()
    pairs = space_form_values(config.invocation_params.args)
    written = ", ".join(f"{flag}={value}" for flag, value in pairs)
    print(f"pytest-wiw: pytest took a path option's value for a test path and would have ignored your "
          f"project's ini file (pytest issue 8846); starting pytest again with {written}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, {**os.environ, RESTARTED_ENV: "1"})


def misplaced_rootdir(config) -> str | None:
    """A usage message when a space-form path option made pytest miss the project's ini file, or put its
    rootdir (and .pytest_cache) into the checkpoint or report folder; else None."""
    pairs = space_form_values(config.invocation_params.args)
    if not pairs:
        return None
    ns = config.known_args_namespace
    positional = list(getattr(ns, "file_or_dir", None) or [])
    for _, value in pairs:
        if value in positional:
            positional.remove(value)
    try:
        from _pytest.config.findpaths import determine_setup

        where = dict(inifile=ns.inifilename, args=positional, rootdir_cmd_arg=ns.rootdir or None,
                     invocation_dir=Path(config.invocation_params.dir))
        try:
            rootpath, inipath, *_ = determine_setup(override_ini=ns.override_ini, **where)
        except TypeError:  # pytest before 8.1 takes no override_ini
            rootpath, inipath, *_ = determine_setup(**where)
    except (ImportError, TypeError):  # another pytest: assume the worst, the '=' form is always right
        rootpath, inipath = None, None
    if rootpath is not None and not _harmed(config, rootpath, inipath, pairs):
        return None
    flag, value = pairs[0]
    chosen = f"rootdir {config.rootpath}, " + (f"ini file {config.inipath}" if config.inipath else "no ini file")
    meant = (f" instead of rootdir {rootpath}, " + (f"ini file {inipath}" if inipath else "no ini file")
             if rootpath is not None else "")
    return (f"pytest took the value of '{flag} {value}' for a test path when it looked for its ini file and chose "
            f"{chosen}{meant}: your project's wm_expected_failures and addopts would be ignored (pytest issue "
            f"8846). Write the option with '=': {flag}={value}")


def _harmed(config, rootpath: Path, inipath: Path | None, pairs: list[tuple[str, str]]) -> bool:
    """Whether the space form changed the ini file, or moved the rootdir (and its .pytest_cache) into one
    of the option values, away from the project folder.

    A rootdir moved elsewhere with no ini file either way (a common parent folder, or a checkpoint folder
    that holds the project) changes nothing a user set, so it passes.
    """
    if inipath != config.inipath:
        return True
    base, chosen = Path(config.invocation_params.dir).resolve(), config.rootpath.resolve()
    if rootpath == config.rootpath or _at_or_above(chosen, base):
        return False  # the same rootdir, or one that still holds the project folder
    return any(_at_or_above((base / value).resolve(), chosen) for _, value in pairs)


def _at_or_above(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents
