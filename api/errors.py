"""One catalogue of errors: a stable machine-readable code per refusal, with its HTTP status.

Every refusal the API gives is an `ApiError` whose code is listed here (and in the README); the one
exception handler in `app.py` turns it into `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

# code -> (HTTP status, what it means)
CATALOGUE: dict[str, tuple[int, str]] = {
    # malformed input
    "invalid_request": (400, "the body is not the JSON the endpoint takes"),
    "body_too_large": (413, "the body is over the size limit"),
    "malformed_hex": (400, "a bytes value is not 0x-prefixed hex"),
    "wrong_length": (400, "a bytes value has the wrong length"),
    "malformed_integer": (400, "an integer field is not a JSON integer"),
    "integer_out_of_range": (400, "an integer does not fit its protocol type"),
    "malformed_order": (400, "the order object lacks or adds fields"),
    "malformed_message": (400, "the command message lacks or adds fields"),
    "malformed_details": (400, "details is not a valid details object"),
    "unknown_type": (400, "unknown command type"),
    "too_many_items": (400, "a bulk request holds more items than allowed"),
    "malformed_csv": (400, "a CSV body is not the expected table; the message names the line"),
    "malformed_certificate": (400, "the body is not a service-record certificate (format, fields or their types)"),
    # signatures and stations
    "bad_signature": (400, "the signature is malformed, high-s, or recovers no key"),
    "station_unknown": (403, "the order's signer is not a registered station"),
    "station_removed": (403, "the order's signer is a removed station"),
    "station_wrong_district": (403, "the order's signer is a station of another district"),
    "unauthenticated": (401, "the request is not signed, or its signature or timestamp is wrong"),
    "forbidden": (403, "the request's signer does not hold the role this needs"),
    "unauthorized": (403, "the command's signer does not hold the role it needs"),
    # order content
    "details_hash_mismatch": (422, "detailsHash is not the keccak256 of the canonical details"),
    "unknown_service_type": (422, "the service type is not in the protocol"),
    "invalid_minutes": (422, "minutes is zero or longer than the service lasted"),
    "minutes_over_limit": (422, "minutes is over the per-order maximum"),
    "invalid_time_range": (422, "endTime is before startTime"),
    "service_too_long": (422, "check-in to check-out lasts more than a day"),
    "end_time_in_future": (422, "endTime is in the future beyond the allowed clock skew"),
    "order_too_old": (422, "endTime is older than the accepted window"),
    "unknown_account": (422, "the volunteer, payer or recipient account is not registered"),
    "account_not_active": (422, "the volunteer, payer or recipient account is frozen or cancelled"),
    "volunteer_wrong_kind": (422, "the volunteer account is neither a volunteer nor a group"),
    "payer_is_volunteer": (422, "the payer and the volunteer are the same account"),
    "insufficient_balance": (422, "the payer's balance less minutes already promised does not cover the order"),
    "location_mismatch": (422, "check-in or check-out is too far from the recipient's registered location"),
    "qualification_required": (422, "the professional service type needs a registered qualification"),
    # state conflicts
    "order_id_conflict": (409, "an order with this orderId and other content exists"),
    "volunteer_overlap": (409, "another order of the same volunteer overlaps in time"),
    "order_not_anchored": (409, "the order is not anchored yet"),
    "nonce_used": (409, "the signer already used this nonce"),
    "command_refused": (422, "the contract refused the command"),
    # people and grants (api/people.py)
    "person_exists": (409, "a person with this card number is already registered"),
    "already_granted": (409, "the account's monthly grant of this period is already recorded"),
    "not_eligible": (422, "a monthly grant to a person with no eligibility category"),
    "account_wrong_kind": (422, "the account is not of the kind this needs (a group, a volunteer member)"),
    "account_mismatch": (422, "the person's district or kind differs from the account's on chain"),
    # lookups
    "not_found": (404, "no such resource"),
    # the chain
    # the service's own processes
    "writer_unavailable": (503, "the order writer is restarting or could not store the orders; try again"),
    "chain_unavailable": (503, "the chain node does not answer; try again"),
    "chain_refused": (502, "the chain node refused the relayer's transaction"),
    "chain_timeout": (504, "the transaction was not mined in time; it may still be"),
}


class ApiError(Exception):
    def __init__(self, code: str, message: str | None = None):
        if code not in CATALOGUE:
            raise ValueError(f"error code {code!r} is not in the catalogue")
        self.code = code
        self.status = CATALOGUE[code][0]
        self.message = message or CATALOGUE[code][1]
        super().__init__(f"{code}: {self.message}")

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}
