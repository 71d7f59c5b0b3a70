"""Entry point of a worker process: ``python -m pytest_wiw.worker CONFIG_JSON``."""

import json
import os
import sys


def main() -> int:
    config = json.loads(sys.argv[1])
    # The protocol owns the original stdout; whatever the model prints goes to stderr (the log).
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stdin = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    # The protocol owns the original stdin too: a wrapper's input() or breakpoint(), or a child
    # process reading fd 0, must not eat request frames.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, sys.stdin.fileno())
    os.close(devnull)

    from pytest_wiw.worker.server import Worker, watch_parent

    watch_parent()
    worker = Worker(config, out)
    try:
        ready = worker.load()
    except BaseException as exc:  # every load failure is reported, then the worker exits
        worker.reply_error(exc, stage="load")
        return 1
    worker.send(ready)
    worker.serve(stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
