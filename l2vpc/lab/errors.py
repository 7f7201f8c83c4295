"""The lab's error: what it cannot do, and why."""


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""
