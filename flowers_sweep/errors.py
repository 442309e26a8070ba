"""Errors meant for the user: their message is the whole story, so no traceback.

The general ones are here; the others live with their concept, all FlowersSweepError
unless said:

    api.RunFailedError, api.SweepFailedError     a run or sweep of the Python API
    aggregate.runs.AggregateError                nothing a report can be made of
    config.command_line.UsageError               flags that cannot go together
    job.launch.SweepBusyError                    a sweep folder another launch holds
    job.stopping.LaunchStopped                   a stopped sweep (a KeyboardInterrupt)
    record.runrecord.RunRecordError              an unreadable run record
    record.sweepstate.NotASweepError             a path that is no sweep or run folder
    search.study.StudyStorageError               a study that cannot be opened
    atomic.OutputError                           an output that cannot be written (OSError)
"""


class FlowersSweepError(Exception):
    """Base of errors the CLI reports as one line and a non-zero exit."""


class ConfigError(FlowersSweepError, ValueError):
    """A config value that cannot work."""


class DatasetNotFoundError(FlowersSweepError, RuntimeError):
    """The dataset is missing or incomplete; the message says where and how to fix it."""


class ImageDecodeError(FlowersSweepError, RuntimeError):
    """An image that could not be decoded; the message names the file."""


class DivergedError(FlowersSweepError, FloatingPointError):
    """The training loss became NaN or infinite; training stopped at once."""


class RunFolderMismatchError(FlowersSweepError):
    """The run folder holds a run of another config: resuming would mix results."""


class CheckpointError(FlowersSweepError):
    """A checkpoint that cannot be resumed from: damaged, truncated or of another run."""


class RunFolderError(FlowersSweepError):
    """A run folder's own record (run_config.json) is unreadable."""


class RunFolderBusyError(FlowersSweepError):
    """Another process is training in this run folder right now."""


class Terminated(BaseException):
    """SIGTERM arrived (a cluster pre-empting or requeueing the job, or a plain `kill`),
    or SIGHUP (the terminal was closed); `signum` says which (15 or 1).

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """

    def __init__(self, message: str, signum: int = 15) -> None:
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple:  # launchers pickle it back to the launching process
        return (type(self), (str(self), self.signum))


class TrialPrunedError(FlowersSweepError):
    """The search's pruner stopped this trial's run: a result, not a failure."""
