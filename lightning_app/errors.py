"""The error type for bad configuration and bad data."""


class ConfigError(ValueError):
    """Invalid configuration or data, found before training starts.

    The message is one line: the value, where it came from, and how to fix it. ``train.py`` prints
    it as ``error: <message>`` without a traceback and exits with status 2.
    """
