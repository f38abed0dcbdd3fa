"""The loader's whole state: where the run is. Everything else is recomputed from the plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LoaderState:
    stage: int = 0  #: index into the plan's stages
    step: int = 0  #: the next step to train within that stage

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoaderState:
        return cls(int(data["stage"]), int(data["step"]))

    def advance(self, steps_in_stage: int) -> LoaderState:
        """The state after one more step (the next stage's start when this one is done)."""
        if self.step + 1 < steps_in_stage:
            return LoaderState(self.stage, self.step + 1)
        return LoaderState(self.stage + 1, 0)
