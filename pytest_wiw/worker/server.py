"""The worker process: loads one world model once and answers generation requests over the protocol.

Started by the pool as ``python -m pytest_wiw.worker CONFIG_JSON``. Requests arrive on stdin and
replies leave on the original stdout; anything the model prints goes to stderr (the worker log).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from pytest_wiw.api.registry import WMSpec
from pytest_wiw.api.request import GenerationRequest
from pytest_wiw.api.worldmodel import missing_super_init, zero_shot_context
from pytest_wiw.checkpoints.epochs import EPOCH_OPTION
from pytest_wiw.checkpoints.files import VARIANT_OPTION, Checkpoint, open_checkpoint
from pytest_wiw.errors import CheckpointError, ProtocolError, RequestError
from pytest_wiw.runtime.settings import configure_torch, effective_generation, resolve_base_path
from pytest_wiw.runtime.wrapper_class import load_wrapper_class
from pytest_wiw.wire.frames import encode_frame, read_frame, write_frame
from pytest_wiw.wire.messages import ErrorReply, Ready, Result, Stats
from pytest_wiw.worker.weights_audit import audit_weights


class Worker:
    def __init__(self, config: dict, out):
        self.config = config
        self.out = out
        self.model = None
        self.generations = 0
        self.started = time.monotonic()
        #: seconds the weight audit took at load (audit_weights: checkpoint tensors against running tensors)
        self.audit_seconds: float | None = None

    # -- start-up ----------------------------------------------------------------------------
    def load(self) -> Ready:
        import torch

        cfg = self.config
        if cfg.get("progress", True):
            from pytest_wiw.worker import progress

            progress.install(lambda info: write_frame(self.out, {"type": "progress", **info}))
        env = configure_torch(cfg.get("threads", 1), cfg.get("deterministic", True), cfg["device"])
        spec = WMSpec.from_dict(cfg["spec"])
        cls = load_wrapper_class(spec.wrapper)
        ckpt_path, base_path = cfg.get("ckpt"), cfg.get("base_ckpt")
        if ckpt_path is None:  # the embedded default: a tiny checkpoint built (once) into the cache
            from pytest_wiw.errors import TinyCheckpointError
            from pytest_wiw.runtime.tiny import ensure_tiny

            base_spec = WMSpec.from_dict(cfg["base_spec"]) if cfg.get("base_spec") else None
            try:
                ckpt_path, base_path = ensure_tiny(spec, base_spec, Path(cfg["tiny_cache"]))
            except TinyCheckpointError as exc:  # no files to judge: the checkpoint check says why
                write_frame(self.out, {"type": "resolved", "error": str(exc)})
                raise
            # Before the model loads: the static checks read the files even if the load then fails or hangs.
            write_frame(self.out, {"type": "resolved", "ckpt": str(ckpt_path),
                                   "base_ckpt": str(base_path) if base_path else None})
        variant = (cfg.get("options") or {}).get(VARIANT_OPTION)
        ckpt = open_checkpoint(ckpt_path, variant, epoch=(cfg.get("options") or {}).get(EPOCH_OPTION))
        base_ckpt = None
        if spec.is_ft:
            base_ckpt = open_checkpoint(resolve_base_path(ckpt, base_path), variant)
        generation = effective_generation(spec.defaults, [base_ckpt, ckpt], cfg.get("options") or {})
        spec = dataclasses.replace(spec, defaults=generation)

        dtype = getattr(torch, cfg.get("dtype", "float32"))
        t0 = time.perf_counter()
        try:
            self.model = cls(spec, ckpt, base_ckpt=base_ckpt, device=cfg["device"], dtype=dtype,
                             options=cfg.get("options") or {})
        except AttributeError as exc:
            hint = missing_super_init(cls, exc)
            if hint:
                raise TypeError(hint) from exc
            raise with_diagnosis(exc, [c for c in (base_ckpt, ckpt) if c is not None]) from exc
        except Exception as exc:
            raise with_diagnosis(exc, [c for c in (base_ckpt, ckpt) if c is not None]) from exc
        hint = missing_super_init(cls, model=self.model)
        if hint:
            raise TypeError(hint)
        load_seconds = time.perf_counter() - t0
        index = ckpt.tensor_index()
        t0 = time.perf_counter()
        audit = audit_weights(self.model, ckpt, index)
        audit_seconds = self.audit_seconds = time.perf_counter() - t0
        fingerprints = {k: fp.to_dict() for k, fp in self.model.weight_fingerprints().items()}
        return Ready(
            wm_type=spec.name, pid=os.getpid(), load_seconds=load_seconds, generation=generation.to_dict(),
            memory=memory_report(), environment=env, notes=list(self.model.notes), tasks=list(self.model.tasks),
            ckpt=ckpt.describe(), base_ckpt=base_ckpt.describe() if base_ckpt else None,
            fingerprints=fingerprints, fingerprint_keys=ckpt.fingerprint_keys(), unmapped_keys=audit.unmapped,
            tensor_count=len(index), weight_audit=audit.to_dict(), weight_audit_seconds=audit_seconds,
            maps_weights=cls.maps_weights(), wrapper_version=str(getattr(cls, "version", "0")),
            wrapper_stats=self.wrapper_stats(), startup_seconds=seconds_since_process_start())

    # -- serving -----------------------------------------------------------------------------
    def serve(self, stdin) -> None:
        while True:
            try:
                header, arrays = read_frame(stdin)
            except EOFError:
                return
            except ProtocolError as exc:
                self.reply_error(exc, stage="protocol")
                return
            kind = header.get("type")
            if kind == "shutdown":
                return
            if kind == "stats":
                self.send(Stats(generations=self.generations, memory=memory_report(),
                                uptime=time.monotonic() - self.started, weight_audit_seconds=self.audit_seconds,
                                wrapper_stats=self.wrapper_stats()))
            elif kind == "generate":
                self.handle_generate(header, arrays)
            else:
                self.send(ErrorReply(error_type="ProtocolError", field="type",
                                     message=f"type: unknown message type {kind!r}"))

    def handle_generate(self, header: dict, arrays: dict) -> None:
        try:
            request = GenerationRequest.from_wire(header.get("request") or {}, arrays)
            self.model.validate_request(request)
        except RequestError as exc:
            self.reply_error(exc, stage="validate", field=exc.field)
            return
        except Exception as exc:  # a wrapper's validate_request that crashed
            self.reply_error(exc, stage="validate")
            return
        variant = header.get("variant", "ft")
        self.model.nonfinite_seen = False
        t0 = time.perf_counter()
        try:
            if variant == "zero_shot":
                with zero_shot_context(self.model):
                    frames = self.model.generate(request)
            else:
                frames = self.model.generate(request)
        except Exception as exc:
            self.reply_error(exc, stage="generate")
            return
        finally:
            self.generations += 1
        seconds = time.perf_counter() - t0
        problem = output_problem(frames)
        if problem is not None:
            self.reply_error(problem, stage="generate")
            return
        try:  # encoded whole before anything is written: a refused frame leaves the stream intact
            reply = encode_frame(*Result(frames=frames, seconds=seconds, variant=variant,
                                         nonfinite=self.model.nonfinite_seen, notes=list(self.model.notes),
                                         generations=self.generations, memory=memory_report(),
                                         wrapper_stats=self.wrapper_stats()).to_wire())
        except ProtocolError as exc:
            self.reply_error(exc, stage="generate")
            return
        self.out.write(reply)
        self.out.flush()

    def wrapper_stats(self) -> dict:
        """``model.stats()`` (offload swaps...), or what went wrong asking for it: a broken stats() costs
        its figures, never a reply."""
        try:
            stats = self.model.stats()
            json.dumps(stats)
            return stats
        except Exception as exc:
            return {"error": f"{type(self.model).__name__}.stats() failed: {type(exc).__name__}: {exc}"}

    def send(self, message) -> None:
        """Write one typed reply (pytest_wiw.wire.messages) to the client."""
        write_frame(self.out, *message.to_wire())

    def reply_error(self, exc: BaseException, *, stage: str, field: str | None = None) -> None:
        self.send(ErrorReply(error_type=type(exc).__name__, message=str(exc), stage=stage, field=field,
                             traceback="".join(traceback.format_exception(exc))))


def output_problem(frames) -> Exception | None:
    """Why ``generate()``'s return value cannot be sent back as a video, or None.

    Only what no check could read is refused here (not an array, no 5 dimensions, nothing in it);
    a wrong dtype or size travels, and the output contract check says how to fix it.
    """
    import numpy as np

    expected = "expected a numpy uint8 array of shape (B, T, 3, H, W) (WorldModel.finish_video makes one)"
    if frames is None:
        return TypeError(f"generate() returned None (a missing return statement?); {expected}")
    if type(frames).__module__.startswith("torch") and hasattr(frames, "detach"):
        return TypeError(f"generate() returned a torch tensor ({getattr(frames, 'dtype', '?')}, shape "
                         f"{tuple(getattr(frames, 'shape', ()))}), not a numpy array: return "
                         "self.finish_video(frames), which takes the pipeline's torch or numpy frames in [0, 1]")
    if not isinstance(frames, np.ndarray):
        return TypeError(f"generate() returned a {type(frames).__name__}, not an array; {expected}")
    if frames.dtype.hasobject:
        return TypeError(f"generate() returned an array of dtype object; {expected}")
    if frames.ndim != 5:
        return ValueError(f"generate() returned a {frames.ndim}-D array of shape {tuple(frames.shape)}; {expected}")
    if frames.size == 0:
        return ValueError(f"generate() returned an empty array of shape {tuple(frames.shape)}; {expected}")
    return None


def with_diagnosis(exc: Exception, ckpts: list[Checkpoint]) -> Exception:
    """``exc`` (a failed load), with the tensors each checkpoint folder misses or holds in excess or
    in another shape appended when a diagnosis finds some (pytest_wiw.worker.load_diagnosis)."""
    from pytest_wiw.worker.load_diagnosis import diagnose_folder

    findings = [f"{c.path}: {line}" for c in ckpts for line in diagnose_folder(c)]
    if not findings:
        return exc
    cause = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
    return CheckpointError(f"{cause}\nthe checkpoint's tensors do not match the model:\n  - "
                           + "\n  - ".join(findings))


def seconds_since_process_start() -> float:
    """Wall seconds since this process was started: interpreter start-up, imports, the load and its audit."""
    import psutil

    return time.time() - psutil.Process().create_time()


def memory_report() -> dict:
    """Host RSS now and at peak, and GPU memory allocated now and at peak, in bytes."""
    import resource

    import psutil

    report = {"host_rss": psutil.Process().memory_info().rss,
              "host_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "gpu_allocated": None, "gpu_peak": None}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        report["gpu_allocated"] = torch.cuda.memory_allocated()
        report["gpu_peak"] = torch.cuda.max_memory_allocated()
    return report


def watch_parent() -> None:
    """Exit when the pytest process that started us is gone (no orphan survives a killed session).

    The pool starts each worker as the leader of its own process group; the worker then ends the
    whole group, so the helpers a model started (dataloaders, compilers) do not outlive it either.
    """
    parent = os.getppid()

    def loop():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                if os.getpgrp() == os.getpid():
                    os.killpg(os.getpid(), signal.SIGKILL)
                os._exit(3)

    threading.Thread(target=loop, daemon=True, name="watch-parent").start()
