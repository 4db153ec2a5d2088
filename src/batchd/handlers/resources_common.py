"""Placeholder (replaced by the resources work)."""


def finish_pending_creates(service) -> None:
    return None
