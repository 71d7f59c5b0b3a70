"""The pytest plugin (entry point ``pytest11: wiw = pytest_wiw.plugin``): options, selection, parametrization,
fixtures, the terminal and the xdist scheduling. The hooks and fixtures live in ``hooks``; this module is what
pytest registers, so it names them.
"""

from pytest_wiw.plugin.hooks import (
    pytest_addoption,
    pytest_cmdline_main,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_generate_tests,
    pytest_itemcollected,
    pytest_load_initial_conftests,
    pytest_report_header,
    pytest_runtest_teardown,
    pytest_sessionfinish,
    pytest_terminal_summary,
    pytest_testnodedown,
    pytest_xdist_make_scheduler,
    wiw_record,
    wiw_session,
    wm,
)

__all__ = [
    "pytest_addoption", "pytest_cmdline_main", "pytest_collection_finish", "pytest_collection_modifyitems",
    "pytest_configure", "pytest_generate_tests",
    "pytest_itemcollected", "pytest_load_initial_conftests", "pytest_report_header", "pytest_runtest_teardown",
    "pytest_sessionfinish",
    "pytest_terminal_summary", "pytest_testnodedown", "pytest_xdist_make_scheduler", "wiw_record", "wiw_session",
    "wm",
]
