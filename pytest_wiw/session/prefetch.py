"""Work the pytest process does on the checkpoint while its worker imports and loads.

``checkpoint applied`` compares the running model's fingerprints with the checkpoint's own, read from its files,
and, for a whole pipeline folder given to a type that runs one component of it (WIW's FTltx), compares the
folder's other components with the base's, file by file. Done after the worker is ready, those reads (and the
pytest process's first imports of torch and hypothesis) would keep the worker idle before its first generation:
on a real pipeline folder, gigabytes. Done while it loads, they cost nothing the user waits for.

What is read ahead is a guess the check verifies: the fingerprints are cast to the session's ``--wm-dtype``
(a tensor the model runs in another dtype is read again once the worker has said so), and the base is the one
the card or ``--base-ckpt-path`` names (the check compares against the base the worker reports; another one is
compared then). A read ahead that fails is forgotten: the check reads again and reports what is wrong.
"""

from __future__ import annotations

import threading

from pytest_wiw.checkpoints.files import Checkpoint
from pytest_wiw.checkpoints.fingerprint import Fingerprint, file_fingerprints
from pytest_wiw.checkpoints.pipeline_diff import ComponentDifference, differing_components
from pytest_wiw.errors import CheckpointError


class CheckpointPrefetch:
    """One daemon thread reading, in this order: the imports of torch and hypothesis, the checkpoint's fingerprints
    in the session dtype, and the differing components of an FT pipeline folder against ``base`` (when
    ``component`` is the one the type runs of it). With no checkpoint known yet (the embedded default), only the
    imports."""

    def __init__(self, ckpt: Checkpoint | None, dtype: str, *, base: Checkpoint | None = None,
                 component: str | None = None):
        self._ckpt, self._dtype, self._base, self._component = ckpt, dtype, base, component
        self._fingerprints: dict[str, Fingerprint] = {}
        self._differences: list[ComponentDifference] | CheckpointError | None = None
        self._thread = threading.Thread(target=self._run, name="wiw-checkpoint-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            # Modules this process imports later anyway, seconds each: torch for the fingerprints, hypothesis for
            # the property check (and its pytest plugin's summary at the end of every session).
            import hypothesis  # noqa: F401
            import torch  # noqa: F401

            if self._ckpt is None:
                return
            keys = self._ckpt.fingerprint_keys()
            self._fingerprints = file_fingerprints(self._ckpt, keys, dict.fromkeys(keys, self._dtype))
        except Exception:  # noqa: BLE001 - the check reads the files again and reports what is wrong
            self._fingerprints = {}
        if self._base is not None and self._component is not None:
            try:
                self._differences = differing_components(self._ckpt, self._base, skip=(self._component,))
            except CheckpointError as exc:  # the check reports it, as it would have found it itself
                self._differences = exc
            except Exception:  # noqa: BLE001 - read again by the check
                self._differences = None

    def _same_files(self, mine: Checkpoint | None, theirs: Checkpoint) -> bool:
        return mine is not None and list(mine.files) == list(theirs.files)

    def fingerprints(self, ckpt: Checkpoint, keys: list[str], dtypes: dict[str, str]) -> dict[str, Fingerprint]:
        """Fingerprints of ``keys`` in their running ``dtypes``: those read ahead where they were read from the same
        files in the same dtype, the rest read now."""
        self._thread.join()
        found = {}
        if self._same_files(self._ckpt, ckpt):
            found = {k: fp for k, fp in self._fingerprints.items() if k in dtypes and fp.dtype == dtypes[k]}
        rest = [k for k in keys if k not in found]
        if rest:
            found.update(file_fingerprints(ckpt, rest, dtypes))
        return {k: found[k] for k in keys}

    def differing_components(self, ft: Checkpoint, base: Checkpoint,
                             skip: tuple[str, ...]) -> list[ComponentDifference]:
        """``pipeline_diff.differing_components(ft, base, skip=skip)``: as read ahead when it compared the same
        folders, else compared now. A CheckpointError found ahead is raised here."""
        self._thread.join()
        ahead = self._differences
        if (ahead is not None and skip == (self._component,) and self._same_files(self._ckpt, ft)
                and self._same_files(self._base, base)):
            if isinstance(ahead, CheckpointError):
                raise ahead
            return ahead
        return differing_components(ft, base, skip=skip)
