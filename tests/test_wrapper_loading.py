"""Every wrapper loads through wrappers.common.loading: a broken checkpoint folder is a CheckpointError naming
the folder, the class and the cause, whichever family it is (a broken Wan folder used to raise a raw KeyError
or RuntimeError where LTX gave a CheckpointError).

The checkpoints are the real tiny ones (each wrapper's make_tiny), copied and then broken the way a bad
download or a hand edit breaks them.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file, save_file  # noqa: E402
from wrapper_helpers import load_wrapper, one_thread  # noqa: E402, F401  (autouse: one torch thread)

from pytest_wiw.api import CheckpointError  # noqa: E402
from wrappers.cosmos import Cosmos2VideoToWorld  # noqa: E402
from wrappers.ltx import LTXImageToVideo  # noqa: E402
from wrappers.wan import WanImageToVideo  # noqa: E402

WRAPPERS = Path(__file__).resolve().parent.parent / "wrappers"
#: wm_type -> (wrapper, the pipeline class its messages name)
FAMILIES = {"wan21": (WanImageToVideo, "WanImageToVideoPipeline"),
            "cosmos20": (Cosmos2VideoToWorld, "Cosmos2VideoToWorldPipeline"),
            "ltx": (LTXImageToVideo, "LTXImageToVideoPipeline")}


def _weights(folder: Path) -> Path:
    return next(folder.glob("*.safetensors"))


def _drop_a_tensor(ckpt: Path) -> Path:
    """The transformer's weights lack one tensor (diffusers leaves it on the meta device)."""
    file = _weights(ckpt / "transformer")
    tensors = load_file(file)
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, file)
    return ckpt / "transformer"


def _text_encoder_of_another_size(ckpt: Path) -> Path:
    """The text encoder's config.json no longer fits its weights (transformers raises RuntimeError)."""
    config = ckpt / "text_encoder" / "config.json"
    values = json.loads(config.read_text())
    values["d_ff"] = values["d_ff"] * 2
    config.write_text(json.dumps(values))
    return ckpt


def _tokenizer_emptied(ckpt: Path) -> Path:
    """tokenizer.json is an empty JSON object (tokenizers raises KeyError)."""
    (ckpt / "tokenizer" / "tokenizer.json").write_text("{}")
    return ckpt


def _transformer_config_missing(ckpt: Path) -> Path:
    (ckpt / "transformer" / "config.json").unlink()
    return ckpt


def _weights_corrupted(ckpt: Path) -> Path:
    """The transformer's weights file has garbage where its header's JSON starts."""
    file = _weights(ckpt / "transformer")
    raw = bytearray(file.read_bytes())
    raw[8:40] = b"x" * 32
    file.write_bytes(bytes(raw))
    return ckpt


#: fault -> (how to break a copy of the tiny pipeline (returns the folder the message must name), what the
#: message must say of the cause)
FAULTS = {
    "missing_tensor": (_drop_a_tensor, "are not in its weights files"),
    "text_encoder_misfit": (_text_encoder_of_another_size, "RuntimeError"),
    "tokenizer_emptied": (_tokenizer_emptied, "KeyError"),
    "transformer_config_missing": (_transformer_config_missing, "config.json"),
    "weights_corrupted": (_weights_corrupted, "diffusion_pytorch_model.safetensors"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {name: cls.make_tiny(name, root / name, seed=0) for name, (cls, _) in FAMILIES.items()}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("wm_type", FAMILIES)
def test_broken_pipeline_folder_is_a_checkpoint_error_naming_folder_class_and_cause(tiny, tmp_path, wm_type, fault):
    cls, pipeline_cls = FAMILIES[wm_type]
    broken = tmp_path / "broken"
    shutil.copytree(tiny[wm_type], broken)
    damage, cause = FAULTS[fault]
    named = damage(broken)
    with pytest.raises(CheckpointError) as err:
        load_wrapper(cls, wm_type, broken)
    message = str(err.value)
    assert message.startswith(f"{named}: cannot load "), message
    assert pipeline_cls in message and cause in message, message


def test_fine_tuned_transformer_lacking_a_tensor_is_a_checkpoint_error(tiny, tmp_path):
    """A single component (FTltx's transformer/) loads through the same helper, with the same check."""
    ft = LTXImageToVideo.make_tiny("FTltx", tmp_path / "FTltx", base=tiny["ltx"], seed=1)
    folder = _drop_a_tensor(ft)
    with pytest.raises(CheckpointError) as err:
        load_wrapper(LTXImageToVideo, "FTltx", ft, tiny["ltx"])
    message = str(err.value)
    assert message.startswith(f"{folder}: cannot load LTXVideoTransformer3DModel (fine-tuned transformer) from it: "
                              "1 tensor(s) of LTXVideoTransformer3DModel are not in its weights files"), message


def test_tiny_fine_tune_of_a_broken_base_names_the_base(tiny, tmp_path):
    """make_tiny's loads of the base go through the loading helper too."""
    base = shutil.copytree(tiny["wan21"], tmp_path / "base")
    _tokenizer_emptied(base)
    expected = f"{base}: cannot load WanImageToVideoPipeline (the tiny base) from it: KeyError"
    with pytest.raises(CheckpointError, match="^" + re.escape(expected)):
        WanImageToVideo.make_tiny("FTwan21", tmp_path / "ft", base=base, seed=1)


# -- where loading and tiny-building happen ---------------------------------------------------------------
def _calls(attr: str) -> list[str]:
    """``file:line`` of every call of a method or function named ``attr`` in wrappers/."""
    found = []
    for file in sorted(WRAPPERS.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name == attr:
                    found.append(f"{file.relative_to(WRAPPERS).as_posix()}:{node.lineno}")
    return found


@pytest.mark.parametrize("attr", ["from_pretrained", "load_file", "safe_open"])
def test_only_the_loading_helper_reads_checkpoints(attr):
    assert all(place.startswith("common/loading.py:") for place in _calls(attr)), _calls(attr)


def test_only_the_tiny_helper_calls_save_pretrained_and_fork_rng():
    assert all(p.startswith("common/tiny.py:") for p in _calls("save_pretrained") + _calls("fork_rng")), \
        _calls("save_pretrained") + _calls("fork_rng")


def test_wrappers_import_only_the_api_from_pytest_wiw():
    """Wrappers depend on pytest_wiw.api alone (issue 16): the plugin's internals can move under them."""
    wrong = []
    for file in sorted(WRAPPERS.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            wrong += [f"{file.relative_to(WRAPPERS)}: {n}" for n in names
                      if n.split(".")[0] == "pytest_wiw" and n != "pytest_wiw.api"]
    assert not wrong, wrong
