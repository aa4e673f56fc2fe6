"""The API's data shapes (OpenAPI 3 schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Status = Literal["draft", "published", "withdrawn"]
FeedbackStatus = Literal["new", "accepted", "rejected", "resolved"]
FIELDS = ("name", "description", "competent_authority", "requirements", "fees", "processing_time", "channels",
          "steps", "contact", "legal_resources", "other")
FeedbackField = Literal["name", "description", "competent_authority", "requirements", "fees", "processing_time",
                        "channels", "steps", "contact", "legal_resources", "other"]
# moderation: target status -> statuses it may come from
TRANSITIONS: dict[str, tuple[str, ...]] = {"accepted": ("new",), "rejected": ("new",),
                                           "resolved": ("accepted", "rejected")}


class BodyRef(BaseModel):
    id: str
    name_en: str
    name_ar: str


class Body(BodyRef):
    type: str
    parent_id: str | None
    published_services: int


class BodyDetail(Body):
    agencies: list[Body]
    categories: dict[str, int]


class Requirement(BaseModel):
    id: str
    en: str
    ar: str
    issuer: str | None = Field(description="id of the issuing body, null when the applicant provides it")
    form: Literal["original", "copy"]


class Text(BaseModel):
    en: str
    ar: str


class LegalResource(Text):
    id: str


class ServiceSummary(BaseModel):
    id: str
    body_id: str
    status: Status
    name_en: str
    name_ar: str
    category: str
    channels: list[str]
    fee_syp: int
    processing_time: str = Field(description="ISO 8601 duration")


class SearchHit(ServiceSummary):
    rank: float | None = None


class ServicePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SearchHit]


class Service(ServiceSummary):
    description_en: str
    description_ar: str
    competent_authority: BodyRef
    life_events: list[str]
    fee_legal_basis_en: str
    fee_legal_basis_ar: str
    payment_channels: list[str]
    processing_hours: int
    requirements: list[Requirement]
    steps: list[Text]
    contact: dict[str, str]
    legal_resources: list[LegalResource]


class Fee(BaseModel):
    """What the payment component reads (``payment.fees.PortalFeeSource``): ``amount`` + ``currency`` + ``name``."""

    service_id: str
    body_id: str = Field(description="the competent body (where payment sends its notice of the paid fee)")
    amount: int = Field(description="the fee as an exact integer number of Syrian pounds (the same as amount_syp)")
    amount_syp: int = Field(description="exact amount in Syrian pounds")
    currency: Literal["SYP"] = "SYP"
    name: str = Field(description="the service's name in English (name_ar: in Arabic)")
    name_ar: str
    legal_basis_en: str
    legal_basis_ar: str
    payment_channels: list[str]


class FeedbackIn(BaseModel):
    kind: Literal["useful", "wrong_information"]
    useful: bool | None = Field(None, description="kind=useful: was the page useful")
    field: FeedbackField | None = Field(None, description="kind=wrong_information: the part that is wrong")
    text: str = Field("", max_length=2000)
    website: str = Field("", max_length=200, description="leave empty (spam trap)")

    @model_validator(mode="after")
    def _shape(self) -> FeedbackIn:
        if self.kind == "useful":
            if self.useful is None:
                raise ValueError("kind 'useful' needs useful: true or false")
            if self.field is not None:
                raise ValueError("kind 'useful' takes no field")
        else:
            if self.field is None:
                raise ValueError("kind 'wrong_information' needs the field concerned")
            if self.useful is not None:
                raise ValueError("kind 'wrong_information' takes no useful flag")
            if len(self.text.strip()) < 3:
                raise ValueError("kind 'wrong_information' needs a text describing what is wrong")
        return self


class Feedback(BaseModel):
    id: int
    service_id: str
    kind: str
    useful: bool | None
    field: str | None
    text: str
    status: FeedbackStatus
    moderator_note: str
    created_at: str
    moderated_at: str | None


class FeedbackList(BaseModel):
    total: int
    items: list[Feedback]


class Moderation(BaseModel):
    status: Literal["accepted", "rejected", "resolved"]
    note: str = Field("", max_length=1000)


class BodyStatistics(BaseModel):
    body_id: str
    name_en: str
    name_ar: str
    services: int
    published: int
    draft: int
    withdrawn: int
    feedback: int
    useful_yes: int
    useful_no: int
    reports: int
    reports_new: int
    reports_accepted: int
    flagged_services: int
    correctness_score: float | None = Field(
        description="share of published services without an accepted, unresolved wrong-information report")
    paid_orders: int = Field(0, description="fee orders of the body's services the payment gateway notified as paid")
    paid_amount_syp: int = Field(0, description="their total, in Syrian pounds")


class ImportResult(BaseModel):
    applied: bool
    dry_run: bool
    records: int
    created: int | None = None
    updated: int | None = None
    unchanged: int | None = None


class RecordError(BaseModel):
    record: int | None = Field(description="CSV line or position of the service in the JSON-LD graph")
    id: str | None
    errors: list[str]


class ImportFailure(BaseModel):
    applied: Literal[False] = False
    errors: list[RecordError]


class PaymentNotification(BaseModel):
    """A fee order's outcome as the payment gateway POSTs it (``payment.notify``), signed in X-Payment-Signature."""

    model_config = ConfigDict(extra="ignore")  # e.g. bill_reference (always null for fee orders)

    event: str = Field(pattern=r"^order\.[a-z_]{1,40}$", description="order.<status>")
    order_id: str = Field(min_length=1, max_length=64)
    status: str = Field(pattern=r"^[a-z_]{1,40}$", description="paid | declined | expired | cancelled | failed")
    amount: int = Field(ge=0, description="exact amount in Syrian pounds")
    currency: str = Field(min_length=3, max_length=3)
    service_id: str = Field(min_length=1, max_length=128)  # as the gateway accepts it
    switch_ref: str | None = Field(None, max_length=100)
    receipt_id: str | None = Field(None, max_length=100, description="the signed receipt's id (paid orders)")
    at: AwareDatetime = Field(description="when the gateway reached this state")

    @model_validator(mode="after")
    def _event_names_status(self) -> PaymentNotification:
        if self.event != f"order.{self.status}":
            raise ValueError(f"event {self.event!r} does not match status {self.status!r}")
        return self


class PaymentAck(BaseModel):
    order_id: str
    event: str
    status: str = Field(description="the order's status as the portal now knows it (the latest by time)")
    duplicate: bool = Field(description="this order and event were already recorded; nothing changed")
    service_known: bool = Field(description="the service is in the catalog (an unknown one is recorded all the same)")


class PaymentStatus(BaseModel):
    order_id: str
    service_id: str
    service_known: bool
    status: str
    amount: int
    currency: str
    receipt_id: str | None
    at: datetime = Field(description="when the gateway reached this state")
    updated_at: datetime = Field(description="when the portal was told")


class ServicePayments(BaseModel):
    service_id: str
    body_id: str | None = Field(description="null when the service is not in the catalog")
    paid_orders: int
    paid_amount_syp: int
    last_paid_at: datetime
