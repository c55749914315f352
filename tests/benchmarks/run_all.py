"""Runs every ``tests/benchmarks/bench_*.py`` in turn and sums up their PASS/FAIL lines.

Run ``python tests/benchmarks/run_all.py [--quick]``. ``--quick`` goes to the scripts that
accept it; the others run with their defaults. Benchmarks report, they do not gate: this
exits 0 whatever the verdicts, and 1 only if a script crashed.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from typing import List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script: str, quick: bool) -> Tuple[int, List[str], float]:
    """(exit code, verdict lines, seconds); the script's output is echoed as it comes."""
    command = [sys.executable, script]
    with open(script, encoding="utf-8") as f:
        if quick and "--quick" in f.read():
            command.append("--quick")
    start = time.monotonic()
    verdicts: List[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            if line.startswith(("PASS", "FAIL")):
                verdicts.append(line.rstrip())
    return proc.returncode, verdicts, time.monotonic() - start


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick where accepted")
    args = parser.parse_args(argv)
    summary = []
    for script in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        print("== %s" % os.path.relpath(script), flush=True)
        summary.append((os.path.basename(script), *run(script, args.quick)))
    print("\n== summary")
    crashed = False
    for name, code, verdicts, seconds in summary:
        crashed |= code != 0
        print("%-22s exit %d, %.0f s" % (name, code, seconds))
        for line in verdicts:
            print("    " + line)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
