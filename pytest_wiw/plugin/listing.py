"""The registry as a table, for ``pytest-wiw list`` and ``pytest --wm-list``."""

from __future__ import annotations

from pytest_wiw.api.registry import load_registry
from pytest_wiw.session.wiw_scripts import wiw_script_rows

COLUMNS = ("wm_type", "category", "base", "fine-tune", "runnable here")


def registry_rows() -> list[tuple[str, ...]]:
    rows = []
    for name, spec in sorted(load_registry().items(), key=lambda kv: (kv[1].category, kv[0])):
        runnable = "yes" if spec.runnable else f"no: {spec.unavailable}"
        rows.append((name, spec.category, spec.base or "-", spec.finetune or "-", runnable))
    return rows


def registry_table() -> str:
    rows = [COLUMNS, *registry_rows()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(COLUMNS[-1]))
    lines.append(f"\n{len(rows) - 1} wm_types registered "
                 f"({sum(1 for r in rows[1:] if r[-1] == 'yes')} runnable here)")
    lines += ["", "WIW's own worker scripts (pytest --wm WM --wm-worker-cmd=\"COMMAND\", from a WIW checkout):"]
    for name, command, known in wiw_script_rows():
        lines.append(f"  {name}: {command}")
        if known:
            lines.append(f"      {known}")
    return "\n".join(lines)
