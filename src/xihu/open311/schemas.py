"""Pydantic schemas of the Open311 GeoReport v2 interface (field names as the specification spells them)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ClientRead(BaseModel):
    """A client application (its key is shown once, when created)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    active: bool


class Service(BaseModel):
    """One service type: a dispatch category."""

    service_code: str
    service_name: str
    description: str | None = None
    metadata: bool
    type: str = "realtime"
    keywords: str | None = None
    group: str | None = None


class AttributeValue(BaseModel):
    """An option of a list attribute."""

    key: str
    name: str


class ServiceAttribute(BaseModel):
    """An extra field a client may send as attribute[code]."""

    variable: bool
    code: str
    datatype: str
    required: bool
    datatype_description: str | None = None
    order: int | None = None
    description: str | None = None
    values: list[AttributeValue] = Field(default_factory=list)


class ServiceDefinition(BaseModel):
    """The attributes of one service."""

    service_code: str
    attributes: list[ServiceAttribute]


class ServiceRequest(BaseModel):
    """A service request as the specification shows it: public data only, never the citizen's name or
    phone. Times are ISO 8601 with the +08:00 offset."""

    service_request_id: str
    status: str
    status_notes: str | None = None
    service_name: str | None = None
    service_code: str
    description: str | None = None
    agency_responsible: str | None = None
    service_notice: str | None = None
    requested_datetime: str
    updated_datetime: str | None = None
    expected_datetime: str | None = None
    address: str | None = None
    address_id: str | None = None
    zipcode: str | None = None
    lat: float | None = None
    long: float | None = None
    media_url: str | None = None


class NewRequest(BaseModel):
    """POST requests: the form fields a client sends (all optional here; the service says what is missing)."""

    service_code: str | None = None
    lat: float | None = None
    long: float | None = None
    address_string: str | None = None
    address_id: str | None = None
    description: str | None = None
    media_url: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    email: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class RequestCreated(BaseModel):
    """The answer to POST requests: the tracking code is the service request id; account_id is the id of
    the client application that posted it (citizens have no accounts on this platform)."""

    service_request_id: str
    service_notice: str | None = None
    account_id: str | None = None


class TokenRead(BaseModel):
    """A token resolved: requests are created synchronously, so a token is the request id itself."""

    service_request_id: str
    token: str


class RequestUpdate(BaseModel):
    """A public step of a request's timeline (mySociety's servicerequestupdates extension)."""

    update_id: str
    service_request_id: str
    status: str
    updated_datetime: str
    description: str
    media_url: str | None = None


class Open311Error(BaseModel):
    """One error as the specification returns it."""

    code: int
    description: str
