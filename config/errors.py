"""The one error type users see: a clear message, no traceback (unless --debug)."""


class RallyError(Exception):
    """A problem the user can act on; its message is complete and names what is wrong."""
