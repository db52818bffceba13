"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class ConfigError(ValueError):
    """A value given by the user is not allowed; the message names the field, the value and what is allowed."""


class RunFailure(ConfigError):
    """The run cannot go on for a reason outside its input (a process it needs died); the message says what was
    lost and how to continue. Printed on one line like a ConfigError."""


class NotHere(ConfigError):
    """Something a run needs is valid but not on this machine yet (downloadable data or weights, resources of a
    bigger cluster): `harness run` refuses to start; `harness run --dry-run` lists it, as a plan for elsewhere."""
