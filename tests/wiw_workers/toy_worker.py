"""A World-in-World style worker script, written for the tests: it speaks WIW's worker protocol exactly.

Like WIW's downstream/api_models/*_model.py it takes the write end of the result pipe as its last
argument, reads frames of a 4-byte big-endian length and a pickle of (client_id, task_id, payload)
on stdin, and writes (client_id, task_id, {"pred_frames", "save_dirs"}) frames to the pipe. Its
"model" is a cheap numpy transform of the start image plus noise, so it starts in a blink.

    python toy_worker.py --model-name nwm [--unseeded] [--die-on-request N] [--hang-on-request N]
                         [--frames 4] [--size 32] FD

``--hang-on-request N`` makes it hang in request N for ever, as a stuck WIW script does: it reads nothing
more, so neither an EOF on stdin nor WIW's "DONE" ends it.
"""

import argparse
import os
import pickle
import struct
import sys
import time

import numpy as np


def generate(payload, args):
    images = payload["b_image"]  # uint8 (B, C, H, W)
    videos = []
    for i, image in enumerate(images):
        if args.unseeded:
            rng = np.random.default_rng()  # as WIW's wrappers do: noise with no seed at all
        else:
            rng = np.random.default_rng(payload["b_seed"][i])
        rows = np.linspace(0, image.shape[1] - 1, args.size).round().astype(int)
        cols = np.linspace(0, image.shape[2] - 1, args.size).round().astype(int)
        small = image[:, rows][:, :, cols].astype(np.float32)  # nearest-neighbour resize to size x size
        frames = []
        for t in range(args.frames):
            shift = np.roll(small, shift=t * (1 + len(payload["b_action"][i])), axis=2)
            frames.append(np.clip(shift + rng.normal(0, 25, size=shift.shape), 0, 255))
        videos.append(np.stack(frames))
    return np.stack(videos).round().astype(np.uint8)  # (B, T, C, H, W)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--unseeded", action="store_true")
    parser.add_argument("--die-on-request", type=int, default=0)
    parser.add_argument("--hang-on-request", type=int, default=0)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--ckpt_path", default=None)
    parser.add_argument("fd", type=int)
    args = parser.parse_args()
    out = os.fdopen(args.fd, "wb")
    stdin = sys.stdin.buffer
    served = 0
    print(f"toy worker {args.model_name} ready", file=sys.stderr, flush=True)
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        (size,) = struct.unpack(">I", head)
        client_id, task_id, payload = pickle.loads(stdin.read(size))
        served += 1
        if served == args.die_on_request:
            print(f"toy worker: dying on request {served}", file=sys.stderr, flush=True)
            os._exit(9)
        if served == args.hang_on_request:
            print(f"toy worker: hanging in request {served}", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        if payload["request_model_name"] != args.model_name:
            result = {"error": f"request_model_name: {payload['request_model_name']!r} is not "
                               f"{args.model_name!r}"}
        else:
            result = {"pred_frames": generate(payload, args), "save_dirs": payload["save_dirs"]}
        body = pickle.dumps((client_id, task_id, result))
        out.write(struct.pack(">I", len(body)) + body)
        out.flush()


if __name__ == "__main__":
    main()
