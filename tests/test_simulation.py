"""A day in the city, small: `scripts.simulate_city.run("small")` starts its own Anvil, deployment and
service (`python -m api`), drives a month of the city's time bank through the HTTP API and checks it; every
check of its summary must pass."""

from __future__ import annotations

from scripts import simulate_city


def test_a_day_in_the_city_small() -> None:
    summary = simulate_city.run("small", seed=7)
    failed = [c for c in summary["checks"] if not c["ok"]]
    assert not failed, failed
    assert summary["ok"]
    size = simulate_city.SIZES["small"]
    assert summary["orders"] == size.orders
    assert (summary["districts"], summary["stations"], summary["volunteers"], summary["elderly"]) == (3, 6, size.volunteers, size.elderly)
    flows = summary["flows"]
    for flow in ("grant-paid service", "redemption", "transfer to family", "group distribution", "paid with transferred hours"):
        assert flows.get(flow, 0) > 0, flows
    assert summary["type9"] > 0 and summary["byGroups"] > 0 and summary["crossDistrictRedemptions"] > 0
    assert summary["revoked"] == size.false_orders
    assert summary["statuses"].get("revoked") == size.false_orders
    assert summary["frozen"] is not None
    assert {p["code"] for p in summary["probes"]} == {"account_not_active", "qualification_required", "location_mismatch"}
    assert summary["balances"]["sum"] == summary["balances"]["granted"] == summary["grants"]["granted"] * summary["grants"]["minutes"]
    assert summary["spotCheck"]["sampled"] == summary["spotCheck"]["verified"] == size.sample
