"""Errors raised while starting or stopping the local stack."""


class StackError(RuntimeError):
    """A server of the local stack could not be started, checked or stopped."""
