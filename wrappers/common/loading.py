"""Loading checkpoint folders: every wrapper's ``from_pretrained`` and safetensors read goes through here.

``load_pretrained`` loads a diffusers pipeline folder or one component (a model class's folder, or a
``transformer/`` / ``unet/`` subfolder of a pipeline) from local files only, as safetensors. Whatever
the folder's fault (a missing or unreadable config.json, a truncated weights file, a tensor of another
shape, a broken tokenizer), the wrapper gets one kind of error: a CheckpointError naming the folder, the
class and the cause. A tensor the weights do not hold, which diffusers leaves on the meta device (the
first ``.to(device)`` would fail far from the cause), is one too, naming the tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError

from pytest_wiw.api import Checkpoint, CheckpointError

#: What loading a folder raises when the folder is at fault: diffusers and transformers raise OSError for
#: missing files, ValueError for unreadable JSON and weights, KeyError / TypeError / AttributeError for
#: configs of the wrong shape (a missing key, a list where a dict belongs), RuntimeError for tensors of
#: another shape; safetensors raises SafetensorError.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, SafetensorError)
#: Tensor names a message lists before it counts the rest.
LIST_AT_MOST = 3


def variant_kwargs(ckpt: Checkpoint) -> dict:
    """The ``from_pretrained`` arguments that load the checkpoint's diffusers weight variant.

    ``open_checkpoint`` found it: the only variant the folder holds (``variant="fp16"`` for a folder of
    ``*.fp16.safetensors`` files, as WIW's SVD snapshots are), or the one ``--wm-opt variant=`` picked.
    ``load_pretrained`` passes them for a Checkpoint.
    """
    return {"variant": ckpt.variant} if ckpt.variant else {}


def load_pretrained(model_cls, source: Checkpoint | Path | str, *, dtype: torch.dtype = torch.float32,
                    subfolder: str | None = None, what: str = "", **from_pretrained_kwargs):
    """``model_cls.from_pretrained`` of ``source`` (its ``subfolder``), from local safetensors files, on the CPU.

    ``source`` is a Checkpoint (its weight variant is loaded) or a folder. ``what`` says in messages what
    is being loaded ("Wan 2.1 I2V", "fine-tuned transformer"). Any of LOAD_ERRORS, and a tensor left
    unfilled by the weights, is a CheckpointError: ``<folder>: cannot load <class> (<what>) from it: <cause>``.
    """
    if isinstance(source, Checkpoint):
        path, kwargs = Path(source.path), {**variant_kwargs(source), **from_pretrained_kwargs}
    else:
        path, kwargs = Path(source), dict(from_pretrained_kwargs)
    if subfolder is not None:
        kwargs["subfolder"] = subfolder
    where = path / subfolder if subfolder else path
    label = f"{model_cls.__name__} ({what})" if what else model_cls.__name__
    try:
        loaded = model_cls.from_pretrained(str(path), dtype=dtype, use_safetensors=True, local_files_only=True,
                                           **kwargs)
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{where}: cannot load {label} from it: {type(exc).__name__}: {exc}") from exc
    require_filled(loaded, where, label)
    return loaded


def model_config(model_cls, folder: Path) -> dict:
    """The config ``model_cls.from_pretrained(folder)`` would build its model with: the folder's config.json, with
    the class's defaults for what it leaves out (the model is built on the meta device: no memory, no weights).
    Read before the weights load, it lets a wrapper name an architecture that does not fit as such; a
    CheckpointError naming the folder when the config cannot be read or built."""
    try:
        config = model_cls.load_config(str(folder))
        with torch.device("meta"):
            return dict(model_cls.from_config(config).config)
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{folder}: cannot read a {model_cls.__name__} config from it: "
                              f"{type(exc).__name__}: {exc}") from exc


def require_filled(loaded, where: Path, label: str) -> None:
    """CheckpointError naming the tensors of ``loaded`` (a model, or a pipeline's modules) that its weights
    did not fill: diffusers leaves them on the meta device, with a warning, when a file lacks them."""
    modules = loaded.components if hasattr(loaded, "components") else {"": loaded}
    for name, module in modules.items():
        if not isinstance(module, torch.nn.Module):
            continue
        empty = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if empty:
            more = f" and {len(empty) - LIST_AT_MOST} more" if len(empty) > LIST_AT_MOST else ""
            folder = where / name if name else where
            raise CheckpointError(f"{folder}: cannot load {label} from it: {len(empty)} tensor(s) of "
                                  f"{type(module).__name__} are not in its weights files "
                                  f"({', '.join(empty[:LIST_AT_MOST])}{more})")


def read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of a ``.safetensors`` file and its metadata (empty when it has none), on the CPU;
    a CheckpointError naming the file when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{file}: cannot read it as safetensors: {type(exc).__name__}: {exc}") from exc


def safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """The tensor names of a ``.safetensors`` file and their shapes, read from its header alone; a
    CheckpointError naming the file when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as fh:
            return {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except LOAD_ERRORS as exc:
        raise CheckpointError(f"{file}: cannot read its safetensors header: {type(exc).__name__}: {exc}") from exc


def require_pipeline_folder(ckpt: Checkpoint, wm_name: str, label: str) -> None:
    """CheckpointError unless the checkpoint is a diffusers pipeline folder; ``label`` names the pipeline."""
    if ckpt.format != "diffusers":
        raise CheckpointError(f"{ckpt.path}: {wm_name} needs a diffusers {label} folder (model_index.json), "
                              f"got a {ckpt.format!r} checkpoint")


def check_pipeline_class(path: Path, pipeline_cls, wm_name: str) -> None:
    """CheckpointError unless the folder's model_index.json names ``pipeline_cls``."""
    index = Path(path) / "model_index.json"
    try:
        cls_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{index}: cannot read the pipeline index: {exc}") from exc
    if cls_name != pipeline_cls.__name__:
        raise CheckpointError(f"{index}: names pipeline {cls_name!r}; {wm_name} needs a {pipeline_cls.__name__}")


def load_pipeline(pipeline_cls, ckpt: Checkpoint, wm_name: str, *, dtype: torch.dtype, what: str = "",
                  check_index: bool = False, **from_pretrained_kwargs):
    """The checkpoint's diffusers pipeline folder loaded with ``load_pretrained``, on the CPU.

    CheckpointError for a checkpoint that is no pipeline folder, and with ``check_index`` for one whose
    model_index.json names another pipeline class (leave it off where real checkpoints name a sibling
    class, as LTX-Video's ``LTXPipeline`` folders load as ``LTXImageToVideoPipeline``).
    """
    require_pipeline_folder(ckpt, wm_name, f"{what} {pipeline_cls.__name__}" if what else pipeline_cls.__name__)
    if check_index:
        check_pipeline_class(ckpt.path, pipeline_cls, wm_name)
    return load_pretrained(pipeline_cls, ckpt, dtype=dtype, what=what, **from_pretrained_kwargs)


def ready_to_run(pipe, device: str):
    """The pipeline moved to ``device``, its progress bars off."""
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
