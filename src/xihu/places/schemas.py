"""Pydantic schemas of the places domain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from xihu.places.enums import PlaceType


class UnitRead(BaseModel):
    """A unit as other domains and the API see it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    short_name: str
    kind: str
    parent_id: int | None
    auto_sign: bool


class PlaceCreate(BaseModel):
    """A new place to print a 西湖码 for."""

    name: str = Field(min_length=2, max_length=100)
    place_type: PlaceType = PlaceType.other
    street_id: int
    community_id: int | None = None
    address: str = Field(default="", max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class PlaceRead(BaseModel):
    """A place with its public code."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    place_type: str
    street_id: int
    community_id: int | None
    address: str
    lat: float | None
    lon: float | None


class PlaceDetail(PlaceRead):
    """A place with the names of its street and community."""

    street_name: str
    community_name: str | None
    place_type_label: str
