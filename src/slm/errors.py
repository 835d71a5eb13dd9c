"""The one exception type a user can cause. The CLI prints its message on one line and exits 2."""


class SlmError(Exception):
    """A problem with the user's input (a path, a config, a checkpoint), explained in the message."""


class ConfigError(SlmError):
    """A configuration that is malformed or contradicts itself."""


class CheckpointError(SlmError):
    """A checkpoint that is missing, truncated, corrupt or of an unsupported family."""
