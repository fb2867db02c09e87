"""CI, after the README quick start's first command: every method ran and beats chance.

Usage: python ci/check_quickstart.py BENCH_HOME

`bash ci/quickstart.sh` runs the main job at its defaults (every registered method on the
embedded synthetic scene, at the scene's recommended profile) into BENCH_HOME/mlflow.db. This
checks that store: one FINISHED run per registered method, each with test OA above chance
(100 / the number of classes). The suite checks the run contract on a one-epoch budget
(tests/e2e/test_bench_run.py); whether the methods learn at their defaults is checked here,
once per CI run, instead of in both of CI's suites. Exit status 1, naming what failed.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "mlflow.db").is_file():
        print(f"usage: python ci/check_quickstart.py BENCH_HOME (a folder with the quick start's mlflow.db); "
              f"got {argv!r}", file=sys.stderr)
        return 2
    from bench_core.plugins import load_plugins
    from bench_core.tracking import MLflowTracker

    host = load_plugins()
    chance = 100.0 / len(host.datasets.get("synthetic").class_names)
    runs = MLflowTracker(f"sqlite:///{Path(argv[0]).resolve() / 'mlflow.db'}", "bench", create=False).runs()
    by_method: dict[str, list] = {}
    for run in runs:
        by_method.setdefault(run.data.params.get("method", "?"), []).append(run)
    problems = []
    for name in host.methods.names():
        found = by_method.pop(name, [])
        finished = [r for r in found if r.info.status == "FINISHED"]
        if len(finished) != 1:
            problems.append(f"{name}: {len(finished)} FINISHED run(s) of {len(found)}; expected exactly one")
            continue
        oa = finished[0].data.metrics.get("test_oa", float("nan"))
        print(f"{name:<16} test_oa {oa:6.2f}  (chance {chance:.2f})")
        if not oa > chance:
            problems.append(f"{name}: test_oa {oa:.2f} is not above chance ({chance:.2f})")
    problems += [f"{name}: a run of a method that is not registered" for name in sorted(by_method)]
    for problem in problems:
        print(f"FAILED {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
