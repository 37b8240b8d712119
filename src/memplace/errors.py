"""The one error type the command line turns into a one-line message and exit status 2."""


class UserError(Exception):
    """Bad input from the user: a file, a pid, an option. The message names it and the problem."""
