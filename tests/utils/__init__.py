"""Helpers and factories shared by the tests (signed commands, relayed calls, exact reverts, batches)."""
