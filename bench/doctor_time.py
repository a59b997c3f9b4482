"""How long a whole `railguard doctor` run takes on examples/notes, and where the time goes.

Why it exists: the target is a complete doctor run (all eleven checks) on the example app in under
60 s, so that it fits before every deploy and in CI. Scenario: a temp copy of examples/notes with its
own state folder and free edge port (rgbench.Workspace), release 1 deployed to staging for real (so
migrations-forward has real data, one note, and the rollback drill a previous release to run), then
APP_VERSION moved to 2 in the working tree, then `railguard doctor --env staging --json` run `--runs`
times: the CLI's wall clock, and each check's own seconds and status from the report. The notes
example has no [alerts] section and no CI, so monitoring warns and ci-gate fails: that is the example,
not the measurement. Teardown: `railguard daemon stop --everything` and rgbench's psutil sweep. ~30 s.

Usage: .venv/bin/python bench/doctor_time.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rgbench import Workspace, machine_line, median


def measure(runs: int) -> dict[str, Any]:
    ws = Workspace.create()
    results: list[dict[str, Any]] = []
    try:
        ws.must("deploy", "--env", "staging", "--yes", "--json")
        request = urllib.request.Request(ws.url, data=b"a note", method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 201
        ws.set_version("2")
        for _ in range(runs):
            run = ws.cli("doctor", "--env", "staging", "--json", timeout=300)
            if run.payload is None:
                raise RuntimeError(f"doctor printed no JSON (exit {run.returncode}): {run.stderr[-800:]}")
            report = run.payload["doctor"]
            results.append({"cli_s": run.seconds, "exit": run.returncode, "report_s": report["seconds"],
                            "checks": {c["id"]: {"s": c["seconds"], "status": c["status"]}
                                       for c in report["checks"]}})
    finally:
        ws.close()
    return {"runs": results, "leftovers": ws.leftovers}


def render(data: dict[str, Any]) -> str:
    runs = data["runs"]
    ids = list(runs[0]["checks"])
    lines = [f"Machine: {machine_line()}", "",
             "| check | status | median s | max s |", "|---|---|---:|---:|"]
    for check_id in ids:
        values = [r["checks"][check_id]["s"] for r in runs]
        lines.append(f"| {check_id} | {runs[0]['checks'][check_id]['status']} | {median(values):.2f} | "
                     f"{max(values):.2f} |")
    cli = [r["cli_s"] for r in runs]
    lines += ["", f"Whole run (`railguard doctor --env staging --json`, CLI wall clock): median {median(cli):.1f} s, "
                  f"max {max(cli):.1f} s over {len(cli)} run(s); exit {runs[0]['exit']}.",
              f"Leftover processes after teardown: {data['leftovers'] or 'none'}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = measure(args.runs)
    print(json.dumps(data, indent=2) if args.json else render(data))


if __name__ == "__main__":
    main()
