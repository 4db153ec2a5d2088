"""Placeholder (replaced by the real local executor)."""


class LocalExecutor:
    name = "local"

    def __init__(self, root) -> None:
        self.root = root
