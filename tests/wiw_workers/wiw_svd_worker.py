"""A stand-in for WIW's ``downstream/api_models/svd_model.py``, written by us from WIW's worker protocol.

It behaves as WIW's worker loop and payload handling do (``downstream/utils/worker_manager.py``:
``worker_main``, ``receiver_for_worker``, ``write_pickled_data``, ``check_outputdict``;
``downstream/api_models/__init__.py``: ``process_input_dict``), so that CI holds the legacy adapter to
what WIW's real scripts do, with a real (tiny) diffusers SVD pipeline:

- the last argument is the result pipe's fd; everything before it is argparse with svd_model.py's names;
- a daemon thread reads 4-byte big-endian length + pickle frames from stdin (non-blocking, select with a
  watchdog) into a queue; the string "DONE" ends the worker; an EOF on stdin ends only the reader (the main
  loop polls the queue for ever, as WIW's does); the main loop takes tasks from the queue;
- after argparse, stderr goes to stdout (WIW's setup_logger): tracebacks appear on fd 1;
- ``request_model_name`` is asserted equal to the deployed name: a mismatch raises and the process dies
  (status 1), as WIW's does; so does a navigation row holding a string (KeyError in the id table);
- the task is fixed by ``--task_type`` at launch (the payload carries none);
- the pipeline is called without a generator (WIW's ``generator=`` is commented out), unless ``--seeded``
  (our variant, not WIW's: it seeds each item from the payload's ``b_seed``);
- frames are resized to the output size and subsampled to ``num_output_frames``, then returned as uint8
  ``pred_frames`` when ``return_objects`` is truthy, else written as ``<save_dir>/<i>.jpg`` plus
  ``action_seq.json`` (WIW's save_predict);
- results go back pickled with ``pickle.HIGHEST_PROTOCOL`` (protocol 5: arrays via ``_frombuffer``)
  after ``check_outputdict``'s asserts.

It imports nothing of pytest-wiw: WIW's scripts run in their own environments.
"""

import argparse
import json
import os
import pickle
import queue
import select
import sys
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

WORLD_MODEL_NAME = "svd"  # svd_model.py sets args.world_model_name to this literal; --world_model_name is ours
ACTION_STRS = {1: "forward", 2: "turn_left", 3: "turn_right", 4: "stop", 0: "placeholder"}
READ_WATCHDOG_S = 300.0


# -- WIW's framing: reader thread, queue, pickled results -------------------------------------------
def read_exactly(fd, n, watchdog):
    buf = bytearray()
    while len(buf) < n:
        ready, _, _ = select.select([fd], [], [], watchdog)
        if not ready:
            raise TimeoutError("stdin stalled")
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError(f"expected {n} bytes, got {len(buf)}")
        buf.extend(chunk)
    return bytes(buf)


def receiver(fd, tasks, stop):
    os.set_blocking(fd, False)
    while not stop.is_set():
        try:
            size = int.from_bytes(read_exactly(fd, 4, READ_WATCHDOG_S), "big")
            item = pickle.loads(read_exactly(fd, size, READ_WATCHDOG_S))
        except TimeoutError:
            continue
        except EOFError:
            break  # the main loop does not notice: it keeps polling the queue
        except Exception as exc:
            tasks.put(("ERROR", -1, {"read_error": str(exc)}))
            break
        if item == "DONE":
            stop.set()
            break
        tasks.put(item)


def check_outputdict(out):
    frames = out.get("pred_frames")
    assert frames is None or (isinstance(frames, np.ndarray) and frames.dtype == np.uint8)
    assert "video_tensors" not in out
    assert isinstance(out["save_dirs"], list)


def worker_main(pipe_fd, task_fn):
    pipe = os.fdopen(pipe_fd, "wb", buffering=2048 * 1024)
    tasks, stop = queue.Queue(), threading.Event()
    threading.Thread(target=receiver, args=(sys.stdin.fileno(), tasks, stop), daemon=True).start()
    while not stop.is_set():
        try:
            client_id, task_id, payload = tasks.get(timeout=0.1)
        except queue.Empty:
            continue
        if client_id == "ERROR":
            print(f"[worker] Error received from receiver thread: {payload}", flush=True)
            break
        print(f"[worker] Processing task (client={client_id}, task={task_id})", flush=True)
        result = task_fn(payload)  # an exception here ends the process, as in WIW
        check_outputdict(result)
        data = pickle.dumps((client_id, task_id, result), protocol=pickle.HIGHEST_PROTOCOL)
        pipe.write(len(data).to_bytes(4, "big"))
        pipe.write(data)
        pipe.flush()
    pipe.close()
    sys.exit(0)


# -- WIW's payload handling ---------------------------------------------------------------------------
def prompts(b_action, task_type):
    if task_type == "navigation":  # ids after the row-opening one, through the id table
        return [f"Follow this sequence of camera motions: {[ACTION_STRS[a] for a in row[1:]]}." for row in b_action]
    return [f"{text}." for text in b_action]


class SVDWorker:
    def __init__(self, args):
        from diffusers import StableVideoDiffusionPipeline

        self.args = args
        self.pipe = StableVideoDiffusionPipeline.from_pretrained(args.ckpt_path, torch_dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)

    def inference_batch(self, payload):
        a = self.args
        assert payload["request_model_name"] == a.world_model_name, (
            f"request_model_name: {payload['request_model_name']} does not match deployed world_model_name: "
            f"{a.world_model_name}")
        b_action, save_dirs = payload["b_action"], payload["save_dirs"]
        b_image = payload["b_image"]
        assert b_image.ndim == 4 and b_image.dtype == np.uint8, f"b_image should be uint8 B C H W, got {b_image.shape}"
        assert len(b_action) == len(save_dirs)
        print(f"text_prompt: {prompts(b_action, a.task_type)}", flush=True)  # SVD itself ignores the text
        images = [Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))) for img in b_image]
        call = dict(width=a.width, height=a.height, num_frames=a.num_frames, num_inference_steps=a.num_inference_steps,
                    output_type="pil")
        if a.seeded:  # our variant: one generator per item, from the seeds the adapter sends
            videos = [self.pipe(image=[img], generator=torch.Generator().manual_seed(int(seed)), **call).frames[0]
                      for img, seed in zip(images, payload["b_seed"])]
        else:
            videos = self.pipe(image=images, **call).frames
        frames = np.stack([to_output(video, a) for video in videos])  # B, T, C, H, W floats in [0, 1]
        if payload.get("return_objects"):
            return {"pred_frames": (np.clip(frames, 0, 1) * 255).astype(np.uint8), "save_dirs": save_dirs}
        for video, actions, folder in zip(frames, b_action, save_dirs):
            Path(folder).mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(video):
                Image.fromarray((frame.transpose(1, 2, 0) * 255).astype(np.uint8)).save(Path(folder) / f"{t}.jpg")
            (Path(folder) / "action_seq.json").write_text(json.dumps(list(actions)))
        return {"save_dirs": save_dirs}


def to_output(video, args):
    """Uniformly subsample (or pad with the last frame) to num_output_frames, resize bicubic to the output size."""
    n, want = len(video), args.num_output_frames
    idx = np.linspace(0, n - 1, want).astype(int) if want <= n else list(range(n)) + [n - 1] * (want - n)
    frames = [np.asarray(video[i].resize((args.out_width, args.out_height), Image.BICUBIC), np.float32) / 255
              for i in idx]
    return np.stack(frames).transpose(0, 3, 1, 2)


def main():
    parser = argparse.ArgumentParser(description="a WIW-style SVD worker")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--out_width", type=int, default=480)
    parser.add_argument("--out_height", type=int, default=480)
    parser.add_argument("--task_type", type=str, default="navigation",
                        choices=["navigation", "manipulation", "freetext"])
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--ckpt_path", type=str, required=True)
    parser.add_argument("--num_frames", type=int, default=14)
    parser.add_argument("--num_output_frames", type=int, default=14)
    parser.add_argument("--num_inference_steps", type=int, default=30)
    parser.add_argument("--seeded", action="store_true", help="ours, not WIW's: seed each item from b_seed")
    parser.add_argument("--world_model_name", default=WORLD_MODEL_NAME, help="ours: run as a registered copy")
    pipe_fd = int(sys.argv[-1])
    args = parser.parse_args(sys.argv[1:-1])
    sys.stderr = sys.stdout  # WIW's setup_logger: from here on, tracebacks go to fd 1
    print(f"[SVD_worker] All Args:\n {args}", flush=True)
    worker = SVDWorker(args)
    print("[SVD_worker] SVD loaded successfully!", flush=True)
    worker_main(pipe_fd, worker.inference_batch)


if __name__ == "__main__":
    main()
