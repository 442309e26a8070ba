"""MLflow: one MLflow run per run folder, the runs of a sweep in one experiment.

The store is `tracking_uri` (any URI MLflow takes: a server's http://..., a database),
else the MLFLOW_TRACKING_URI environment variable, else a SQLite file,
`outputs/mlflow.db` under the working directory (MLflow 3 refuses its old file store
unless told otherwise). `mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db`
shows it.

A resumed run continues its MLflow run: the run id is kept in the run folder's
trackers.json, and the epochs the MLflow run already holds (the killed process may have
logged an epoch it had not checkpointed) are not logged again, so each metric has one
point per epoch.
"""

from __future__ import annotations

import socket
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from flowers_sweep.errors import ConfigError
from flowers_sweep.loggers.base import (
    FINAL_PREFIX,
    Guarded,
    env_or,
    log,
    read_note,
    require,
    sweep_label,
    write_note,
)

TRACKER = "mlflow"
DEFAULT_STORE = "outputs/mlflow.db"  # under the working directory
DEFAULT_EXPERIMENT = "flowers_sweep"  # a run outside a sweep, without experiment_name
RUN_DIR_TAG = "flowers_sweep.run_dir"  # our tags, apart from a user's `tags`
SWEEP_TAG = "flowers_sweep.sweep"
JOB_TAG = "flowers_sweep.job"
BATCH = 100  # MLflow's log_batch takes at most 100 params (and 1000 metrics) a call
PARAM_CHARS = 6000  # the longest parameter value MLflow stores
REACH_TIMEOUT_S = 10.0  # how long a tracking server has to accept a connection at start


def default_tracking_uri() -> str:
    """sqlite:///<cwd>/outputs/mlflow.db, its folder made."""
    path = (Path.cwd() / DEFAULT_STORE).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def check_reachable(uri: str, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Raise ConfigError when an http(s) tracking URI's server does not accept a
    connection within timeout_s seconds: MLflow's own client retries a refused
    connection for minutes (MLFLOW_HTTP_REQUEST_MAX_RETRIES) before it gives up."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(
            f"logger.tracking_uri={uri!r} cannot be reached ({type(exc).__name__}: {exc}); "
            "start the tracking server, or fix the URI"
        ) from None


def tracking_client(uri: str) -> Any:
    """An MlflowClient for `uri`. A SQLite store is created (its tables) by the first
    client that opens it: runs starting together (a joblib sweep) take turns, or two
    would race to create the same tables."""
    from mlflow import MlflowClient

    check_reachable(uri)
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri)
    with FileLock(uri.removeprefix("sqlite:///") + ".lock"):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # opens the store (creates its tables)
    return client


def experiment_id(client: Any, name: str) -> str:
    """The experiment called `name`, created when missing (by whichever of the sweep's
    runs gets there first)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # another run of the sweep created it just now
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class MLflowLogger:
    """Each run of a sweep an MLflow run in the sweep's experiment.

    Logged: the settings as parameters (as TensorBoard's HParams), every metrics.csv
    column per epoch (step = the epoch), the final metrics as `final/...` at the last
    epoch, and tags: the run's `tags` (as tags with an empty value), `flowers_sweep.run_dir`
    (the run folder, absolute), `flowers_sweep.sweep` (its sweep folder) and
    `flowers_sweep.job` (its job number). A run that
    ends before its end (interrupted, failed) is marked KILLED; its result.json says
    why; resuming it sets it RUNNING again.

    experiment_name: None puts a sweep's runs in an experiment named by its sweep
        folder (outputs/multirun/2026-12-06_10-00-00) and a single run in
        "flowers_sweep"; a name puts every run there (the `flowers_sweep.sweep` tag tells
        sweeps apart).
    """

    @staticmethod
    def check_node(node: Any, key: str) -> None:
        require("mlflow", "mlflow", key)

    def __init__(
        self,
        run_dir: Path,
        resumed_after: int,
        settings: Mapping[str, Any],
        tags: list[str],
        name: str,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
    ) -> None:
        require("mlflow", "mlflow", "logger")
        self.run_dir = Path(run_dir).absolute()
        self.guard = Guarded(TRACKER)
        uri = tracking_uri or env_or("MLFLOW_TRACKING_URI", None) or default_tracking_uri()
        self.client = tracking_client(uri)
        note = read_note(self.run_dir, TRACKER)
        self.finished = False
        self.last_epoch = resumed_after
        if note.get("run_id") and note.get("tracking_uri") == uri:
            self.run_id = str(note["run_id"])
            self.client.update_run(self.run_id, status="RUNNING")
            self._log_settings({}, {t: "" for t in tags})  # this launch's tags, if new
            # the points of the process that stopped: its last epochs may be retrained
            history = self.client.get_metric_history(self.run_id, "val_acc")
            self.logged = {m.step for m in history}
            log.info("mlflow: continuing run %s (%s)", self.run_id, uri)
            return
        if note.get("run_id"):
            log.warning(
                "mlflow: this run logged to %s before; it starts a new MLflow run in %s",
                note.get("tracking_uri"),
                uri,
            )
        sweep = sweep_label(self.run_dir)
        experiment = experiment_name or sweep or DEFAULT_EXPERIMENT
        run_tags = {t: "" for t in tags}  # ours are namespaced: a user's tag stays as given
        run_tags |= {RUN_DIR_TAG: str(self.run_dir), JOB_TAG: self.run_dir.name}
        if sweep is not None:
            run_tags[SWEEP_TAG] = sweep
        run = self.client.create_run(experiment_id(self.client, experiment), run_name=name)
        self.run_id = run.info.run_id
        write_note(self.run_dir, TRACKER, {"run_id": self.run_id, "tracking_uri": uri})
        self._log_settings(settings, run_tags)
        self.logged: set[int] = set()
        log.info("mlflow: run %s in experiment %r (%s)", self.run_id, experiment, uri)

    def _log_settings(self, settings: Mapping[str, Any], tags: Mapping[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, str(v)[:PARAM_CHARS]) for k, v in settings.items()]
        run_tags = [RunTag(k, v) for k, v in tags.items()]
        for start in range(0, max(len(params), 1), BATCH):
            batch = params[start : start + BATCH]
            self.client.log_batch(self.run_id, params=batch, tags=[] if start else run_tags)

    def _log_metrics(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.guard.call(f"log epoch {step}", self.client.log_batch, self.run_id, metrics=metrics)

    def log_epoch(self, row: dict[str, float]) -> None:
        epoch = int(row["epoch"])
        self.last_epoch = epoch
        if epoch in self.logged:  # logged before the stop; one point per epoch
            return
        self._log_metrics({k: v for k, v in row.items() if k != "epoch"}, epoch)
        self.logged.add(epoch)

    def log_final(self, settings: dict[str, Any], metrics: dict[str, float]) -> None:
        self._log_metrics({FINAL_PREFIX + k: v for k, v in metrics.items()}, self.last_epoch)
        self.finished = True

    def close(self) -> None:
        status = "FINISHED" if self.finished else "KILLED"
        self.guard.call("end the run", self.client.set_terminated, self.run_id, status)
