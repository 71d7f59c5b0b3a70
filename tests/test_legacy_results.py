"""Result pickles as WIW's workers write them (protocol 5, numpy 1.x or 2), and what the adapter refuses."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from pytest_wiw.session.legacy import command_settings, command_task, plan_launch, read_result


def test_protocol_5_result_from_numpy_2():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 3, 8, 8), dtype=np.uint8)
    body = pickle.dumps((0, 7, {"pred_frames": frames, "save_dirs": ["a", "b"]}), protocol=5)
    assert b"_frombuffer" in body  # the form WIW's HIGHEST_PROTOCOL results take under numpy 2
    client, task, result = read_result(body)
    assert (client, task) == (0, 7) and result["save_dirs"] == ["a", "b"]
    assert result["pred_frames"].dtype == np.uint8 and np.array_equal(result["pred_frames"], frames)


@pytest.mark.parametrize("value", [np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::2], np.float32(1.5),
                                   np.dtype("uint8"), {"n": np.int64(3)}, (1, [2.0, "x"], {"k": None})])
def test_reconstruct_scalars_dtypes_and_containers(value):
    for protocol in (2, 4, 5):
        back = read_result(pickle.dumps(value, protocol=protocol))
        if isinstance(value, np.ndarray):
            assert np.array_equal(back, value)
        else:
            assert back == value


# numpy 1.x names the same functions numpy.core.*: written here by a process with stand-in modules of those
# names (this process's numpy 2 would write numpy._core.*).
NUMPY1_WRITER = r"""
import pickle, sys, types
numeric = types.ModuleType("numpy.core.numeric")
def _frombuffer(*args): pass
_frombuffer.__module__, _frombuffer.__qualname__ = "numpy.core.numeric", "_frombuffer"
numeric._frombuffer = _frombuffer
sys.modules.update({"numpy": types.ModuleType("numpy"), "numpy.core": types.ModuleType("numpy.core"),
                    "numpy.core.numeric": numeric})
class Frames:
    def __reduce__(self):
        return _frombuffer, (bytearray(range(12)), "|u1", (1, 1, 3, 2, 2), "C")
sys.stdout.buffer.write(pickle.dumps((0, 1, {"pred_frames": Frames(), "save_dirs": []}), protocol=5))
"""


def test_numpy_1_names_are_read_with_this_numpy():
    body = subprocess.run([sys.executable, "-c", NUMPY1_WRITER], capture_output=True, check=True).stdout
    assert b"numpy.core.numeric" in body and b"numpy._core" not in body
    _, _, result = read_result(body)
    assert np.array_equal(result["pred_frames"], np.arange(12, dtype=np.uint8).reshape(1, 1, 3, 2, 2))


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_result_that_would_run_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    body = pickle.dumps((0, 1, {"pred_frames": _RunsCommand(marker), "save_dirs": []}), protocol=5)
    with pytest.raises(pickle.UnpicklingError, match=r"not posix\.system"):
        read_result(body)
    assert not marker.exists()


def test_other_classes_are_refused_by_name():
    body = pickle.dumps({"when": __import__("datetime").date(2026, 1, 1)}, protocol=5)
    with pytest.raises(pickle.UnpicklingError, match=r"numpy arrays, numpy scalars and builtin containers, "
                                                     r"not datetime\.date"):
        read_result(body)


@pytest.mark.parametrize(("command", "task", "source"), [
    ("python svd_model.py --ckpt_path x", "navigation", "WIW's default"),
    ("python svd_model.py --task_type manipulation --ckpt_path x", "manipulation", "in the worker command"),
    ("python svd_model.py --task_type=freetext", "freetext", "in the worker command"),
])
def test_task_of_a_worker_command(command, task, source):
    got, where = command_task(command, {})
    assert got == task and source in where


def test_task_option_and_command_must_agree():
    assert command_task("python x.py", {"task_type": "manipulation"})[0] == "manipulation"
    with pytest.raises(ValueError, match="contradicts --task_type navigation"):
        command_task("python x.py --task_type navigation", {"task_type": "manipulation"})
    with pytest.raises(ValueError, match="is not one of"):
        command_task("python x.py --task_type swimming", {})


def test_sizes_in_the_command_are_the_expected_settings():
    command = "python svd_model.py --width=64 --height 48 --num_output_frames 6 --num_inference_steps 3"
    assert command_settings(command, {}) == {"width": "64", "height": "48", "num_output_frames": "6", "steps": "3"}
    with pytest.raises(ValueError, match="--wm-opt width=32 contradicts the worker command's --width 64"):
        command_settings(command, {"width": "32"})


def test_launch_like_wiw_manager(tmp_path):
    script = tmp_path / "wiw" / "downstream" / "api_models" / "svd_model.py"
    script.parent.mkdir(parents=True)
    script.write_text("")
    launch = plan_launch(f"CUDA_VISIBLE_DEVICES=3 python {script} --ckpt_path x", {"PYTHONPATH": "/other"})
    assert launch.argv == ["python", str(script), "--ckpt_path", "x"]
    assert launch.env["CUDA_VISIBLE_DEVICES"] == "3"
    assert launch.cwd == str(tmp_path / "wiw")
    assert launch.env["PYTHONPATH"] == os.pathsep.join((str(tmp_path / "wiw"), "/other"))
    plain = plan_launch(f"python {tmp_path}/elsewhere.py", {})
    assert plain.cwd is None and plain.notes == []
