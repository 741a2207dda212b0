"""The fast path of RFC 8785 canonical JSON (`api.protocol.canonical_json`) writes the same bytes as the
rfc8785 library for every value, plain or not (hypothesis), and leaves what it cannot write to it."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from api import protocol as P

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def library(value):
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        return type(exc)


def ours(value):
    try:
        return P.canonical_json(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(values)
def test_the_fast_path_writes_what_the_library_writes(value):
    assert ours(value) == library(value)


@settings(max_examples=1000, deadline=None)
@given(st.floats(min_value=-1e17, max_value=1e17, allow_nan=False) | st.floats(min_value=-1e-3, max_value=1e-3))
def test_floats_at_the_edges_of_the_fast_path(x):
    assert ours({"lat": x}) == library({"lat": x})


def test_what_the_fast_path_leaves_to_the_library():
    for value in (1.0, -0.0, 1e16, 1e-5, 2**53, "\ud800", {"é": 1}, {"a": [1, 2.0]}):
        assert not P._plain(value), value
        assert ours(value) == library(value)
    assert P._plain({"checkIn": {"lat": 32.05, "lon": 118.79, "time": 1764000000}, "note": "送餐上门\n\"ok\""})


def test_an_order_s_details_hash_is_unchanged():
    details = {"checkIn": {"lat": 32.05, "lon": 118.79, "time": 1764000000}, "checkOut": {"lat": 32.0501, "lon": 118.7899, "time": 1764003600},
               "confirmation": {"method": "card", "time": 1764003600}, "rating": {"byRecipient": 5}, "note": "\u0007 tab\t 老人"}
    assert P._plain(details)
    assert P.details_hash(details) == P.keccak(rfc8785.dumps(details))
