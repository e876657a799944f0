"""``python -m bench.soak``: one run, its report as JSON, then its events."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bench.common import write_json
from bench.soak import __doc__ as DOC
from bench.soak.run import soak


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=(DOC or "").split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--duration-s", type=float, default=300.0)
    p.add_argument("--faults-each", type=int, default=10)
    p.add_argument("--silent-s", type=float, default=40.0)
    p.add_argument("--log-level", default="WARNING", help="of the fronts and workers (their logs stay in the "
                   "directory the report names)")
    p.add_argument("--out", default="")
    args = p.parse_args()
    report = asyncio.run(soak(args.sessions, args.duration_s, args.faults_each, silent_s=args.silent_s,
                                log_level=args.log_level))
    events = report.pop("events")
    print(json.dumps(report, indent=2))
    for at, who, what in events:
        print(f"{at:8.2f}s {who:6} {what}")
    report["events"] = events
    if args.out:
        write_json(Path(args.out), report)
    return 0 if report["ok"] else 1


sys.exit(main())
