"""Run one DAG of dags/ with dag.test() in this process and print what a person would look at, as one JSON line
(RESULT {...}): the run's state, each task's state, each task's XCom return value, and the XComs a task pushed
under keys of their own (`pushed`: {task: {key: value}}).

    python tests/dags/run_dag.py MODULE DAG_ID ['{"conf": "of the run"}']
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "dags"))


def main() -> int:
    module, dag_id = sys.argv[1], sys.argv[2]
    conf = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    dag = getattr(__import__(module), dag_id)
    run = dag.test(run_conf=conf)

    from airflow.models.xcom import XComModel
    from airflow.settings import Session

    session = Session()
    tasks = {}
    for ti in run.get_task_instances(session=session):
        key = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        tasks[key] = ti.state
    xcoms, pushed = {}, {}
    for row in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=run.run_id):
        key = row.task_id if row.map_index < 0 else f"{row.task_id}[{row.map_index}]"
        value = json.loads(row.value) if isinstance(row.value, str) else row.value
        if row.key == "return_value":
            xcoms[key] = value
        else:
            pushed.setdefault(key, {})[row.key] = value
    print("RESULT " + json.dumps({"state": run.state, "run_id": run.run_id, "tasks": tasks, "xcom": xcoms,
                                  "pushed": pushed}, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
