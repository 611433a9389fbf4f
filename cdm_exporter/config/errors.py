"""The one error type every configuration problem is reported as."""


class ConfigError(Exception):
    """A configuration value is wrong.

    ``key`` is the dotted path of the offending key (``targets[0].auth.token_file``),
    so that the single line printed before exiting with code 2 names what to fix.
    The message never contains a secret value.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message
