"""The scheduler's side of this project's DAGs: an Airflow cluster policy, loaded as `airflow_local_settings`.

Airflow gives every map index of a mapped task the pool and queue of its .partial() (apache/airflow#33657), but a
backup must count against its own server's pool and run on a worker of its server's network zone. InventoryTargets
(runbook_airflow.py) puts `pool` and `queue` in each target it returns, and the pools' sizes in its XCom
`runbook_pools`; when the scheduler creates the task instance of a map index, this hook copies that target's pool and
queue onto it, and creates the pool, or sets its size, as the inventory says (the inventory is where sizes live).

Install it on the scheduler as $AIRFLOW_HOME/config/airflow_local_settings.py (a link to this file: make
airflow-cluster makes one). Without it, mapped tasks run in the default pool and queue, as before.

Nothing from Airflow is imported at the top: Airflow imports this module while it initialises its own settings. The
hook runs inside the scheduler's transaction: it reads and adds rows through the session of the run it is given,
never opens or commits one, and on any surprise logs and leaves the task instance as Airflow made it.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)
POOLS_XCOM = "runbook_pools"  # runbook_airflow.POOLS_XCOM (that module imports the task SDK: not imported here)


def task_instance_mutation_hook(task_instance, dag_run=None) -> None:
    if dag_run is None or task_instance.map_index is None or task_instance.map_index < 0:
        return
    try:
        _place(task_instance, dag_run)
    except Exception:  # a policy must never take the scheduler down
        log.exception("runbook policy: could not place %s", task_instance)


def _place(ti, dag_run) -> None:
    from sqlalchemy.orm import object_session

    task = getattr(ti, "task", None)
    expand_input = getattr(task, getattr(task, "_expand_input_attr", "") or "expand_input", None)
    session = object_session(dag_run)
    if expand_input is None or session is None or not hasattr(expand_input, "iter_references"):
        return
    for upstream, key in expand_input.iter_references():
        targets = _xcom(session, ti.dag_id, ti.run_id, upstream.task_id, key)
        if not isinstance(targets, list) or ti.map_index >= len(targets) or not isinstance(targets[ti.map_index], dict):
            continue
        target = targets[ti.map_index]
        if target.get("pool"):
            pools = _xcom(session, ti.dag_id, ti.run_id, upstream.task_id, POOLS_XCOM) or {}
            _ensure_pool(session, target["pool"], pools.get(target["pool"]))
            ti.pool = target["pool"]
        if target.get("queue"):
            ti.queue = target["queue"]
        return


def _xcom(session, dag_id: str, run_id: str, task_id: str, key: str):
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    value = session.scalar(select(XComModel.value).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id,
        XComModel.map_index == -1, XComModel.key == key))
    return json.loads(value) if isinstance(value, str) else value


def _ensure_pool(session, name: str, slots) -> None:
    """The pool exists with `slots` slots (InventoryTargets refused a size below 1 before any task was made)."""
    from airflow.models.pool import Pool
    from sqlalchemy import select

    if not isinstance(slots, int) or slots < 1:
        return
    pool = session.scalar(select(Pool).where(Pool.pool == name))
    if pool is None:
        session.add(Pool(pool=name, slots=slots, include_deferred=False,
                         description="runbook.recovery: runs at once on this database server (airflow_pool_slots)"))
        session.flush()
        log.info("runbook policy: created pool %s with %d slots", name, slots)
    elif pool.slots != slots:
        log.info("runbook policy: pool %s from %d to %d slots, as the inventory says", name, pool.slots, slots)
        pool.slots = slots
