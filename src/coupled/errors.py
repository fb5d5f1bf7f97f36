"""The one exception type users see: a one-line message naming the problem and the fix."""


class CoupledError(ValueError):
    """Bad input or configuration. The message is one line: what is wrong, then how to fix it."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ClassifierMismatchWarning(UserWarning):
    """A bundle loaded with a classifier other than the one its denoisers were trained on (its fingerprint differs)."""
