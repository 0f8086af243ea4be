"""How a run ends when it cannot finish: one error type per exit status (SPEC §6).

    UsageError   2  bad config or arguments, found before the pipeline runs
    DataError    1  the run failed on its data (bad rows under `fail`,
                    unreadable files, too many rejections)
    Interrupted  130 / Terminated 143: SIGINT / SIGTERM

Each carries its `exit_status`; the CLI prints the message as one line and
exits with it (`exit_status(error)`), and anything else is a bug of ours,
shown with its traceback. Subclasses (ConfigError, InputError, RunnerError,
InvalidRowError, ...) only say where the error was found.

How a message names a column (`column_label`) is here too, so that the
preflight, the per-row errors and the rejected rows' `column` say it alike.
"""


class UsageError(ValueError):
    """Bad config or arguments, found before the pipeline runs: exit status 2."""

    exit_status = 2


class DataError(ValueError):
    """The run failed on its data: exit status 1."""

    exit_status = 1


class Interrupted(BaseException):
    """SIGINT (Ctrl-C): the run stops, its staging directory is removed; exit status 130.

    A BaseException, like KeyboardInterrupt, so that no `except Exception`
    on the way takes it for an error of the data.
    """

    exit_status = 130
    signal_name = "SIGINT"


class Terminated(Interrupted):
    """SIGTERM (a scheduler or `kill` stopping the job): as SIGINT, exit status 143."""

    exit_status = 143
    signal_name = "SIGTERM"


KNOWN = (UsageError, DataError, Interrupted)


def known_cause(exception):
    """The UsageError/DataError/Interrupted that `exception` is or wraps, else None.

    Runners re-raise a step's exception wrapped (and Beam chains it as the
    cause or context): the one we raised is found along the chain.
    """
    seen = set()
    while exception is not None and id(exception) not in seen:
        if isinstance(exception, KNOWN):
            return exception
        seen.add(id(exception))
        exception = exception.__cause__ or exception.__context__
    return None


def column_label(role, column=None):
    """'labels (label)': the head's role and the input's column, as every message says it."""
    return f"{role} ({column})" if column else role
