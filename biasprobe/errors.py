"""The one error type a user can cause. The CLI prints its message on one line and exits 2."""


class BiasprobeError(Exception):
    """A problem with the user's input (bad name, file, size, setting), not a bug."""
