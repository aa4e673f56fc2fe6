"""The government bodies: portal directory, bus members and service owners share this one list."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import Field

from infra.model.base import Model


class Body(Model):
    """A public organisation (CPSV-AP ``cv:PublicOrganisation``)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9]{1,15}$")
    type: Literal["ministry", "agency", "authority"]
    en: str = Field(min_length=2)
    ar: str = Field(min_length=2)
    parent: str | None = None


@cache
def default_bodies() -> tuple[Body, ...]:
    text = resources.files("infra.data").joinpath("bodies.yaml").read_text(encoding="utf-8")
    return tuple(Body.model_validate(item) for item in yaml.safe_load(text))
