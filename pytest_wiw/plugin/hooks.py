"""The pytest plugin: options, selection, parametrization, fixtures, header and teardown.

Sections: 1. options  2. selection (configure)  3. xdist defaults and --wm-list  4. collection and
parametrization  5. fixtures  6. header  7. teardown. Nothing here imports torch or diffusers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_wiw.errors import UsageError
from pytest_wiw.plugin.options import add_options
from pytest_wiw.plugin.selection import Selection, parse_selection
from pytest_wiw.plugin.worker_order import ChecksLeft, order_checks, wm_type_of
from pytest_wiw.report.contact_sheet import write_subject_sheet
from pytest_wiw.session.wiw_session import WiwSession

CONFORMANCE_DIR = Path(__file__).resolve().parents[2] / "conformance"
_SESSION_KEY = pytest.StashKey[WiwSession]()
_SELECTION_KEY = pytest.StashKey[Selection]()
_CHECKS_LEFT_KEY = pytest.StashKey[ChecksLeft]()


# 1. options ------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


# 2. selection ------------------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before any conftest loads, when a ``--ckpt-path PATH`` (space form) moved the rootdir (pytest issue
    8846): start pytest again with ``--ckpt-path=PATH``, or stop with a usage error where that cannot be
    done (see pytest_wiw.plugin.rootdir)."""
    from pytest_wiw.plugin.rootdir import misplaced_rootdir, restart_in_equals_form

    message = misplaced_rootdir(early_config)
    if message:
        restart_in_equals_form(early_config)
        raise pytest.UsageError(message)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "wm_check(name): the conformance check a test implements")
    if config.option.wm_list or not config.option.wm:
        return
    if config.getoption("hypothesis_profile", None):  # hypothesis is imported only when a profile is named
        _register_hypothesis_profiles()
    try:
        selection = parse_selection(config.option, config.getini("wm_expected_failures"))
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_SELECTION_KEY] = selection
    if config.option.wm_report and _controller(config):
        from pytest_wiw.report.writer import ReportCollector

        collector = ReportCollector(selection)
        config.stash[_REPORT_KEY] = collector
        config.pluginmanager.register(_ReportHooks(collector), "wiw-report")
    conformance = str(CONFORMANCE_DIR)
    if conformance not in config.args:
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            config.args[:] = []  # `pytest --wm X` alone runs the checks, not the tests under cwd
        config.args.append(conformance)


# 3. --wm-list and xdist defaults ---------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config):
    if not config.option.wm_list:
        return None
    from pytest_wiw.plugin.listing import registry_table

    try:
        print(registry_table())
    except UsageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 4
    return 0


def _register_hypothesis_profiles() -> None:
    """Budgets of the property check: ``--hypothesis-profile dev|ci|gpu`` (``--wm-max-examples`` wins)."""
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    for name, examples in (("dev", 10), ("ci", 3), ("gpu", 2)):
        try:
            settings.get_profile(name)  # the user's own profile of that name wins
        except InvalidArgument:
            settings.register_profile(name, max_examples=examples, deadline=None)


def _groups_by_family(config: pytest.Config) -> bool:
    """Whether this xdist controller hands out checks by family: with -n and no --dist of the user's."""
    explicit = any(a in ("--dist", "-d") or a.startswith("--dist=") for a in config.invocation_params.args)
    return (not explicit and not hasattr(config, "workerinput") and _SELECTION_KEY in config.stash
            and bool(getattr(config.option, "numprocesses", None)) and config.option.dist == "load")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under -n, every check of one family runs on one worker (see pytest_wiw.plugin.xdist_family)."""
    if not _groups_by_family(config):
        return None
    from pytest_wiw.plugin.xdist_family import FamilyScheduling

    selection = config.stash[_SELECTION_KEY]
    families = {name: selection.registry[name].family for name in selection.wm_types}
    return FamilyScheduling(config, log, families=families)


# 4. collection and parametrization -------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    check = metafunc.definition.get_closest_marker("wm_check")
    if check is None or "wm_type" not in metafunc.fixturenames:
        return  # only conformance checks (marked wm_check) are parametrized over wm_types
    selection = metafunc.config.stash.get(_SELECTION_KEY, None)
    names = selection.wm_types if selection else []
    check_name = check.args[0]
    ft_only = bool(check.kwargs.get("ft_only"))
    params = []
    for name in names:
        spec = selection.registry[name]
        marks = [pytest.mark.xdist_group(spec.family)]
        if not spec.runnable and name not in selection.settings.worker_cmds:
            marks.append(pytest.mark.skip(reason=f"{name} is not runnable here: {spec.unavailable}"))
        elif ft_only and not spec.is_ft:
            marks.append(pytest.mark.skip(reason=f"{name} is a zero-shot type: '{check_name}' applies to FT types"))
        reason = spec.expected_failures.get(check_name) or selection.expected_failures.get((name, check_name))
        if reason:
            marks.append(pytest.mark.xfail(reason=f"expected failure declared by {name}: {reason}", strict=True))
        params.append(pytest.param(name, marks=marks, id=name))
    metafunc.parametrize("wm_type", params)


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every check's junit test case carries its wm_type, skipped ones too."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and item.get_closest_marker("wm_check") and "wm_type" in callspec.params:
        item.user_properties.append(("wm_type", callspec.params["wm_type"]))


@pytest.hookimpl(trylast=True)  # after any plugin that reorders tests: a wm_type's checks must stay together
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The checks of one wm_type run together, a family's zero-shot types first (pytest_wiw.plugin.worker_order)."""
    selection = config.stash.get(_SELECTION_KEY, None)
    if selection is not None:
        order_checks(items, selection.wm_types, selection.registry)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Count the checks each wm_type has to run here (its worker exits after the last). In a run without xdist,
    start the worker of the first wm_type whose checks were collected now, before the first check: it imports
    and loads while pytest runs the static checks. Only the first: started all at once, several workers' loads
    would compete for the CPU, the disk and the GPU's memory, each against its own load timeout; each of the
    others starts when the one before it is released (``pytest_runtest_teardown``). With -n, each xdist worker
    starts its family's first worker at its first check, as it learns which families it runs."""
    config = session.config
    if _SELECTION_KEY not in config.stash or config.option.collectonly:
        return
    config.stash[_CHECKS_LEFT_KEY] = ChecksLeft(session.items)
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None):
        return
    for item in session.items:
        if _needs_a_worker(item):
            _start_worker_early(config, wm_type_of(item))
            break


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After the last check of a wm_type in this process, its worker exits, and the next wm_type's worker starts
    while pytest runs that type's static checks."""
    checks_left = item.config.stash.get(_CHECKS_LEFT_KEY, None)
    wiw = item.config.stash.get(_SESSION_KEY, None)
    finished = checks_left.ran(item) if checks_left is not None else None
    if finished is None or wiw is None:
        return
    wiw.release(finished)
    upcoming = nextitem and wm_type_of(nextitem)
    if upcoming and upcoming != finished and any(
            _needs_a_worker(i) for i in _checks_of(item.session.items, upcoming)):
        _start_worker_early(item.config, upcoming)


def _start_worker_early(config: pytest.Config, wm_type: str) -> None:
    """Start ``wm_type``'s worker before its first check needs it, after the same guards as its checks: the
    wrapper is found, the checkpoint's files open here."""
    from pytest_wiw.checks.judgements import readable, wrapper_found

    wm = _wiw_session(config).subject(wm_type)
    try:
        if not wm.spec.runnable or wrapper_found(wm) is not None:
            return  # its checks say why; nothing is loaded
        if wm.ckpt_arg is None or readable(wm) is None:  # never a worker on files that do not open here
            wm.start_worker_early()
    except (UsageError, OSError, ValueError):
        return  # the checks meet the same problem and report it


def _checks_of(items: list[pytest.Item], wm_type: str) -> list[pytest.Item]:
    return [item for item in items if wm_type_of(item) == wm_type]


def _needs_a_worker(item: pytest.Item) -> bool:
    """Whether ``item`` is a conformance check that is neither static nor skipped."""
    from pytest_wiw.api.checklist import CHECKS

    marker = item.get_closest_marker("wm_check")
    if wm_type_of(item) is None or item.get_closest_marker("skip") or not marker.args:
        return False
    return marker.args[0] not in {c.name for c in CHECKS if c.static}


# 5. fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def wiw_session(request: pytest.FixtureRequest) -> WiwSession:
    """The session's worker pool, result store and wm_type subjects."""
    return _wiw_session(request.config)


def _wiw_session(config: pytest.Config) -> WiwSession:
    if _SESSION_KEY not in config.stash:
        profile = config.getoption("hypothesis_profile", None)
        config.stash[_SESSION_KEY] = WiwSession(config.stash[_SELECTION_KEY], _progress_display(config), profile)
    return config.stash[_SESSION_KEY]


def _progress_display(config: pytest.Config):
    """Where worker progress goes: an updating line on a tty, plain lines otherwise, nothing with -q
    or in an xdist worker (it has no terminal)."""
    from pytest_wiw.plugin.terminal import ProgressDisplay

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.option.verbose < 0 or not _controller(config):
        return None
    isatty = reporter.isatty  # a method since pytest 8.1, a plain bool before
    return ProgressDisplay(reporter, live=isatty() if callable(isatty) else bool(isatty),
                           capture_manager=config.pluginmanager.get_plugin("capturemanager"))


@pytest.fixture
def wm(wm_type: str, wiw_session: WiwSession):
    """The wm_type under test (a ``WMSubject``): its spec, checkpoint, worker and floor generations."""
    return wiw_session.subject(wm_type)


@pytest.fixture
def wiw_record(request: pytest.FixtureRequest):
    """Record a figure on the check's report: a junit property and a report metric.

    Unlike pytest's ``record_property`` it does not warn under junit_family xunit2.
    """
    return lambda name, value: request.node.user_properties.append((name, value))


# 6. header -----------------------------------------------------------------------------------------
def pytest_report_header(config: pytest.Config) -> list[str] | None:
    selection = config.stash.get(_SELECTION_KEY, None)
    if selection is None:
        return None
    s = selection.settings
    lines = [f"wiw: wm_types {', '.join(selection.wm_types)}"]
    for name in selection.wm_types:
        ckpt = selection.ckpt.get(name) or "embedded tiny default"
        if name in s.worker_cmds:
            ckpt = f"legacy WIW worker: {s.worker_cmds[name]}"
        base = selection.base_ckpt.get(name)
        lines.append(f"wiw:   {name}: checkpoint {ckpt}" + (f", base {base}" if base else ""))
    lines.append(f"wiw: device {s.device}, dtype {s.dtype}, seed {selection.seed}, threads {s.threads}, "
                 f"deterministic algorithms {'on' if s.deterministic else 'off'}, max batch {selection.max_batch}")
    lines.append(f"wiw: worker python {s.python}; tiny cache {s.tiny_cache}")
    if selection.preset:
        lines += _preset_lines(selection)
    return lines


def _preset_lines(selection: Selection) -> list[str]:
    """The preset and, per wm_type, the settings it resolves to (--wm-opt values over the preset's)."""
    from pytest_wiw.runtime.presets import preset_note

    lines = [f"wiw: preset {selection.preset} (--wm-opt values win)"]
    for name in selection.wm_types:
        if not selection.registry[name].runnable:
            continue
        settings = selection.preset_settings(name)
        shown = ", ".join(f"{k}={v}" for k, v in settings.items()) or "registry defaults"
        lines.append(f"wiw:   {name}: {shown} ({preset_note(selection.preset, name)})")
    return lines


# 7. teardown, the cost summary and the report ---------------------------------------------------------
_SUMMARIES_KEY = pytest.StashKey[dict]()
_REPORT_KEY = pytest.StashKey[object]()
_REPORT_PATHS_KEY = pytest.StashKey[list]()


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workeroutput")


@pytest.hookimpl(trylast=True)  # after xdist has taken its workers down (their summaries are in)
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    wiw = config.stash.get(_SESSION_KEY, None)
    if wiw is not None:
        report_dir = config.option.wm_report
        wiw.request_stop()  # the workers free their memory while the contact sheets are drawn
        if report_dir:  # this process's contact sheets
            for name, subject in wiw.subjects.items():
                write_subject_sheet(subject, Path(report_dir) / f"{name}.png")
        wiw.close()
        summaries = wiw.summaries()
        if _controller(config):
            _merge_summaries(config, summaries)
        else:  # an xdist worker: the controller merges what every worker sends
            config.workeroutput["wiw_summaries"] = summaries
    collector = config.stash.get(_REPORT_KEY, None)
    if collector is not None and _controller(config):
        collector.add_workers(config.stash.get(_SUMMARIES_KEY, {}))
        config.stash[_REPORT_PATHS_KEY] = collector.write(Path(config.option.wm_report))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    _merge_summaries(node.config, getattr(node, "workeroutput", {}).get("wiw_summaries", {}))


def _merge_summaries(config: pytest.Config, summaries: dict) -> None:
    from pytest_wiw.session.wiw_session import COUNTS

    total = config.stash.setdefault(_SUMMARIES_KEY, {})
    for wm_type, summary in summaries.items():
        mine = total.setdefault(wm_type, dict.fromkeys(COUNTS, 0))
        for key, value in summary.items():
            mine[key] = mine[key] + value if key in COUNTS else value


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    summaries = config.stash.get(_SUMMARIES_KEY, None)
    if summaries:
        terminalreporter.section("wiw: loads and generation calls")
        for wm_type, entry in sorted(summaries.items()):
            reference = (f", {entry['reference_generations']} reference generation(s)"
                         if entry.get("reference_generations") or entry.get("ground_truth") else "")
            terminalreporter.write_line(f"{wm_type}: {entry['loads']} load(s), {entry['generations']} "
                                        f"generation call(s), {entry['property_examples']} property example(s)"
                                        + reference)
            if entry.get("timeline"):
                terminalreporter.write_line(f"{wm_type}: {_time_line(entry['timeline'])}")
            if entry.get("ground_truth"):
                terminalreporter.write_line(f"{wm_type}: closer to ground truth: {entry['ground_truth']['summary']}")
            for why in entry.get("restarts") or []:
                terminalreporter.write_line(f"{wm_type}: worker started again after it {why}")
    causes = _root_causes(terminalreporter)
    if causes:
        terminalreporter.section("wiw: root causes (blocked checks follow from these)")
        for line in causes:
            terminalreporter.write_line(line)
    paths = config.stash.get(_REPORT_PATHS_KEY, None)
    if paths:
        terminalreporter.write_line(f"wiw: report written to {Path(paths[-1]).parent} "
                                    f"({', '.join(p.name for p in paths)})")


def _time_line(timeline: dict) -> str:
    """Where the session's time went for one worker, in a line (pytest_wiw.session.timeline)."""
    startup, released = timeline.get("worker_startup_seconds"), timeline.get("released_seconds")
    gaps = ", ".join(f"{g['seconds']:.1f} s before {g['before']}" for g in timeline["idle_gaps"][:2])
    return (f"{timeline['before_worker_seconds']:.1f} s before its worker started, "
            + (f"{startup:.1f} s its start-up, " if startup is not None else "")
            + f"{timeline['call_seconds']:.1f} s in {timeline['calls']} call(s), "
            f"{timeline['idle_seconds']:.1f} s idle between them" + (f" ({gaps})" if gaps else "")
            + f", {timeline['after_last_call_seconds']:.1f} s after the last"
            + (f" (released at {released:.1f} s, after its last check)" if released is not None else ""))


def _root_causes(terminalreporter) -> list[str]:
    """One line per failed conformance check: ``wm_type / check: first line of its message``."""
    from pytest_wiw.report.writer import _TEST_ID

    lines = []
    for report in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", []):
        match = _TEST_ID.search(getattr(report, "nodeid", ""))
        if not match or not any(key == "wm_type" for key, _ in getattr(report, "user_properties", ())):
            continue  # not a conformance check (pytest_itemcollected tags those with their wm_type)
        crash = getattr(report.longrepr, "reprcrash", None)
        text = (crash.message if crash else str(report.longrepr)).strip()
        first = text.splitlines()[0].removeprefix("Failed: ") if text else "failed"
        lines.append(f"{match['wm']} / {match['test'][len('test_'):].replace('_', ' ')}: {first}")
    return lines


class _ReportHooks:
    """Registered in the controller when --wm-report is given: feeds every check's phases to the report."""

    def __init__(self, collector):
        self.collector = collector

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.collector.add_logreport(report)
