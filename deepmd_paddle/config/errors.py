"""The one error type of the input file."""


class ConfigError(ValueError):
    """A bad input file; the message names the key at fault and what is allowed."""
