"""Where a fleet's mapped task runs, from its host's inventory variables (runbook_airflow.placement): the pool of its
server, the Celery queue of its zone and its execution timeout; and the durations an inventory may write."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "dags"))

from runbook_airflow import duration_seconds, placement, pools_of  # noqa: E402


@pytest.mark.parametrize(("value", "seconds"), [
    (90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), (" 45M ", 2700), ("1.5h", 5400),
])
def test_durations_an_inventory_may_write(value, seconds):
    assert duration_seconds(value, "airflow_execution_timeout of db1") == seconds


@pytest.mark.parametrize("value", [0, "0", -5, "-1m", "soon", "", "h", "10x", "2 hours"])
def test_a_duration_that_is_not_one_names_the_host_and_the_forms_accepted(value):
    with pytest.raises(ValueError) as caught:
        duration_seconds(value, "airflow_execution_timeout of db1")
    assert "airflow_execution_timeout of db1" in str(caught.value) and "45m" in str(caught.value)


def test_a_host_places_its_task_in_its_servers_pool_its_zones_queue_within_its_timeout():
    row = {"host": "db1", "airflow_pool_slots": 3, "airflow_queue": "zone-a", "airflow_execution_timeout": "30m"}
    assert placement(row) == {"pool": "postgres_db1", "queue": "zone-a", "execution_timeout": timedelta(minutes=30)}
    assert pools_of([row, {"host": "db2", "airflow_pool_slots": None}]) == {"postgres_db1": 3}


def test_a_host_without_the_variables_keeps_the_dags_defaults():
    assert placement({"host": "db1", "airflow_pool_slots": None, "airflow_queue": None,
                      "airflow_execution_timeout": None}) == {}
    assert placement({"host": "db1", "airflow_queue": "", "airflow_pool_slots": None}) == {}


@pytest.mark.parametrize("slots", [0, -2, "4", 2.5, True])
def test_a_pool_of_no_slot_or_not_a_count_is_refused_naming_the_host(slots):
    with pytest.raises(ValueError) as caught:
        placement({"host": "db7", "airflow_pool_slots": slots})
    assert "airflow_pool_slots of db7" in str(caught.value) and "at least 1 slot" in str(caught.value)


def test_a_bad_timeout_is_refused_naming_the_host():
    with pytest.raises(ValueError, match="airflow_execution_timeout of db3 is 'tomorrow'"):
        placement({"host": "db3", "airflow_execution_timeout": "tomorrow"})
