"""The one exception type for a user's mistake: the CLI and the app show its message, never a traceback."""


class UserError(Exception):
    """A problem the user can fix (a missing folder, a bad setting, an unknown run)."""
