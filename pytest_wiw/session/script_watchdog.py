"""The watchdog of an unmodified WIW worker script: it ends the script's process group once the pytest process
that started the script is gone.

Our own worker watches its parent itself (``pytest_wiw.worker.server.watch_parent``). A WIW script does not, and
one stuck in a request reads nothing more, so neither an EOF on its stdin nor WIW's "DONE" reaches it: killed
outright, pytest would leave it holding the GPU. The legacy adapter starts this process beside each script, with
a pipe from the pytest process on its stdin. The pytest process writes ``DISMISS`` when it has ended the script
itself; an EOF with nothing read means the pytest process died (the kernel closed its end), and the script's
process group is killed.

It runs as a file (``python -I -S script_watchdog.py PGID``) and imports only the standard library, so it starts
in milliseconds under any environment.
"""

from __future__ import annotations

import os
import signal
import sys

#: What the pytest process writes when the script is ended already and the watchdog should just exit.
DISMISS = b"x"


def main(argv: list[str]) -> int:
    pgid = int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the pytest process's to handle
    if sys.stdin.buffer.read(1) == DISMISS:
        return 0
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return 0
    print(f"pytest-wiw: the pytest process is gone; its watchdog killed the WIW script's process group {pgid}",
          file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
