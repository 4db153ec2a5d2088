"""Placeholder scheduler (replaced by the real one)."""


class Scheduler:
    def __init__(self, service) -> None:
        self.service = service

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def wake(self) -> None:
        pass
