"""A DAG of two Airflow BatchOperator tasks, run by tests/test_airflow.py with Airflow's own Python.

It runs in the Airflow venv (.venv-airflow/, tests/airflow-requirements.txt), never in batchd's: the test copies
it into a temporary dags folder and runs `python airflow_dag.py`, which calls `dag.test()`. That runs each task
through Airflow's real task runner (with a SQLite metadata DB in AIRFLOW_HOME) and prints the task logs to
stdout. The AWS connection comes only from AIRFLOW_CONN_AWS_DEFAULT, which the test sets.

Each operator keeps its default arguments except `awslogs_enabled=True`: tags, parameters, waiters, retries and
delays are Airflow's.
"""

from __future__ import annotations

import datetime
import json

from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.sdk import DAG

DAG_ID = "batchd_acceptance"
# Printed before the one JSON line with the final states, which the test reads.
RESULT_MARKER = "BATCHD-AIRFLOW-RESULT "

with DAG(DAG_ID, schedule=None, start_date=datetime.datetime(2024, 1, 1), catchup=False) as dag:
    # Job definitions and the queue are made by the test on the batchd server.
    BatchOperator(
        task_id="succeeds", job_name="airflow-succeeds", job_definition="succeeds", job_queue="airflow",
        awslogs_enabled=True,
    )
    BatchOperator(
        task_id="fails", job_name="airflow-fails", job_definition="fails", job_queue="airflow",
        awslogs_enabled=True,
    )


if __name__ == "__main__":
    run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(RESULT_MARKER + json.dumps({"dag_run": str(run.state), "tasks": states}), flush=True)
