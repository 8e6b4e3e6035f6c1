"""The one error type a user can meet: its message is one lowercase line that names the
bad file, port or value and says what to do next. CLIs print it and exit with status 2."""


class UserError(Exception):
    """A problem with the user's input or setup, not a bug in rnnrbm-live."""
