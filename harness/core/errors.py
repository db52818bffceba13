"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class ConfigError(ValueError):
    """A value given by the user is not allowed; the message names the field, the value and what is allowed."""
