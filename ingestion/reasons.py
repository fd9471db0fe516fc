"""Machine-readable reasons a raw transaction is dead-lettered (header `vigil.dlq.reason`)."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Why ingestion refused a message; stable names that operators filter and alert on."""

    MESSAGE_TOO_LARGE = "message_too_large"
    EMPTY_MESSAGE = "empty_message"
    INVALID_JSON = "invalid_json"
    NON_FINITE_NUMBER = "non_finite_number"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    UNKNOWN_FIELD = "unknown_field"
    WRONG_TYPE = "wrong_type"
    INVALID_VALUE = "invalid_value"
    INVALID_TIMESTAMP = "invalid_timestamp"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"
    AMOUNT_PRECISION = "amount_precision"
    UNKNOWN_CURRENCY = "unknown_currency"
    UNKNOWN_COUNTRY = "unknown_country"
    TOO_MANY_ATTRIBUTES = "too_many_attributes"
    OCCURRED_AT_IN_FUTURE = "occurred_at_in_future"
    OCCURRED_AT_TOO_OLD = "occurred_at_too_old"
    DUPLICATE_TRANSACTION_ID = "duplicate_transaction_id"
