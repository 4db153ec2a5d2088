"""Keep N cores busy for a bounded time, to run tests as a loaded machine would.

    python bench/cpu_hog.py --cores 2 --seconds 600 &
    pytest tests/test_cancel_rules.py -n 2 -q

Each core gets one process spinning in pure Python; all of them end by themselves after `--seconds` (at most
an hour), and when this script is interrupted or terminated, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time

MAX_SECONDS = 3600.0


def _spin(until: float) -> None:
    x = 0
    while time.monotonic() < until:
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="busy processes (default all)")
    parser.add_argument("--seconds", type=float, default=600.0, help=f"how long (at most {MAX_SECONDS:.0f})")
    args = parser.parse_args(argv)
    if args.cores < 1 or not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--cores must be >= 1 and --seconds in (0, {MAX_SECONDS:.0f}]")
    until = time.monotonic() + args.seconds
    workers = [multiprocessing.Process(target=_spin, args=(until,), daemon=True) for _ in range(args.cores)]
    for w in workers:
        w.start()

    def stop(signum: int, _frame: object) -> None:
        for w in workers:
            w.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"cpu_hog: {args.cores} busy processes for {args.seconds:.0f}s (pid {os.getpid()})", flush=True)
    for w in workers:
        w.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
