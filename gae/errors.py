"""User-facing errors: the CLI prints their message on one line and exits non-zero."""


class GaeError(Exception):
    """An error caused by input or environment that the user can fix.

    The message must name the file, key or value at fault and say what to do.
    """


class ConfigError(GaeError):
    """The configuration (params.yaml or an overlay) is invalid."""


class DataError(GaeError):
    """A data file is missing, corrupt or fails verification."""


class TrainingError(GaeError):
    """Training cannot continue (e.g. the objective became NaN)."""


class StaleCheckpointError(TrainingError):
    """A run's checkpoint cannot be resumed: unreadable, or made with other settings.

    ``gae train --restart-if-stale`` (what the pipeline's rules run) then starts the run afresh;
    a plain ``gae train`` stops and says so, since resuming is what the user asked for.
    """
