"""Benchmark: how long the DAG processor takes to parse dags/ (all files), against a folder holding one trivial
DAG, measured in the same process after Airflow itself is imported. Target: all of dags/ under 0.5 s.
Top-level code only declares (no inventory, connection or subprocess at parse time), which is what keeps it low.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = '''from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("trivial", schedule=None):
    EmptyOperator(task_id="nothing")
'''
PROBE = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - started
assert not bag.import_errors, bag.import_errors
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags)}))
'''


def parse(folder: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="rr-bench-dags-"))
    trivial = home / "trivial"
    trivial.mkdir()
    (trivial / "trivial_dag.py").write_text(TRIVIAL)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR"}
    ours, baseline, dags = [], [], 0
    for _ in range(5):
        result = parse(ROOT / "dags", env)
        ours.append(result["seconds"])
        dags = result["dags"]
        baseline.append(parse(trivial, env)["seconds"])
    mine, base = statistics.median(ours), statistics.median(baseline)
    print(f"dags/ ({dags} DAGs): {mine:.3f} s to parse; one trivial DAG: {base:.3f} s "
          f"({mine / base:.1f}x; target under 0.5 s: {'met' if mine < 0.5 else 'NOT met'})")
    print(json.dumps({"dag_parse_s": round(mine, 3), "trivial_parse_s": round(base, 3), "dags": dags}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
