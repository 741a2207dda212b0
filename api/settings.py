"""The service's configuration: one pydantic-settings class, read from `TIMEBANK_*` environment variables
(or a `.env` file). Secrets have no default outside the embedded development chain."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent

# Anvil's second well-known development key: the relayer of the embedded default chain (chain id 31337).
DEV_CHAIN_ID = 31337
DEV_RELAYER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
# The ID-number hash key of the embedded development chain only (never use it elsewhere).
DEV_ID_HASH_KEY = "timebank-development-id-hash-key-31337"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIMEBANK_", env_file=".env", extra="ignore")

    # The embedded chain's URL follows its port (TIMEBANK_ANVIL_PORT, as scripts/chain.py starts it).
    rpc_url: str = Field(default_factory=lambda: f"http://127.0.0.1:{os.environ.get('TIMEBANK_ANVIL_PORT') or 8545}")
    database_url: str = f"sqlite:///{ROOT / 'data' / 'timebank.sqlite3'}"
    # The contract: an address, or else the deployment record node/deployments/<chainId>.json.
    contract_address: str | None = None
    deployments_dir: Path = ROOT / "node" / "deployments"
    # The relayer's key: from the environment or an encrypted keystore; Anvil's on the embedded chain.
    relayer_key: str | None = None
    relayer_keystore: Path | None = None
    relayer_keystore_password: str | None = None
    id_hash_key: str | None = None  # TIMEBANK_ID_HASH_KEY

    host: str = "127.0.0.1"
    port: int = 8000
    # Processes: at 2 or more, that many intake workers beside one writer process (api/workers.py); 0 or
    # 1, everything in one process
    workers: int = Field(2, ge=0, le=64)
    # the base URL people reach the service at (the QR codes of certificates and cards); default: the request's
    public_url: str | None = None
    # the TrueType font (glyf outlines; a .ttc's first face) embedded, as a subset, in certificate PDFs
    cjk_font: Path | None = None

    # Anchoring
    batch_max_orders: int = Field(256, ge=1, le=1024)
    batch_max_wait_seconds: float = Field(1.0, gt=0)
    batch_max_in_flight: int = Field(8, ge=1, le=64)  # batches sent and not yet anchored, at most
    confirmations: int = Field(1, ge=1)
    poll_interval_seconds: float = Field(0.2, gt=0)
    tx_timeout_seconds: float = Field(60.0, gt=0)

    # Order checks
    max_order_minutes: int = Field(720, ge=1)
    order_max_age_seconds: int = Field(30 * 24 * 3600, ge=60)
    clock_skew_seconds: int = Field(300, ge=0)
    max_checkin_distance_m: float = Field(500.0, gt=0)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_details_bytes: int = Field(4096, ge=256)  # an order's details as compact JSON
    certificate_max_orders: int = Field(3000, ge=1)  # orders of one certificate POST /v1/certificates/verify checks
    certificate_verify_workers: int = Field(2, ge=1, le=16)  # its own threads
    certificate_verify_waiting: int = Field(2, ge=0)  # verifications waiting for a thread; more: 429 verification_busy
    station_daily_minutes: int = Field(24 * 60 * 8, ge=1)  # a station's orders, minutes a day (China Standard Time)
    # Signed requests (api/auth.py): how far a timestamp may be from the clock, and the names (host[:port],
    # comma-separated) the service answers under; unset: TIMEBANK_HOST:TIMEBANK_PORT, localhost and 127.0.0.1
    # with that port.
    header_timeout_seconds: float = Field(10.0, gt=0)  # a connection sends a request's headers within this
    request_window_seconds: int = Field(60, ge=5, le=600)
    public_hosts: str = ""
    bulk_max_items: int = Field(1000, ge=1, le=1000)

    def service_hosts(self) -> frozenset[str]:
        """The names a signed request may be addressed to (lower-case host[:port])."""
        if self.public_hosts.strip():
            return frozenset(h.strip().lower() for h in self.public_hosts.split(",") if h.strip())
        return frozenset(f"{h}:{self.port}".lower() for h in (self.host, "localhost", "127.0.0.1"))

    def id_hash_key_bytes(self, chain_id: int) -> bytes:
        """The key of the ID numbers' HMAC-SHA256 (TIMEBANK_ID_HASH_KEY: at least 32 characters, from the
        environment or a secrets store, never in the database); a fixed development value on chain 31337."""
        if self.id_hash_key:
            if len(self.id_hash_key) < 32:
                raise RuntimeError("TIMEBANK_ID_HASH_KEY: at least 32 characters (e.g. `openssl rand -hex 32`)")
            return self.id_hash_key.encode("utf-8")
        if chain_id == DEV_CHAIN_ID:
            return DEV_ID_HASH_KEY.encode("utf-8")
        raise RuntimeError(f"chain {chain_id} is not the embedded development chain: set TIMEBANK_ID_HASH_KEY (the ID numbers' hash key)")

    def relayer_private_key(self, chain_id: int) -> bytes:
        if self.relayer_key:
            return bytes.fromhex(self.relayer_key.removeprefix("0x"))
        if self.relayer_keystore:
            from eth_account import Account

            if self.relayer_keystore_password is None:
                raise RuntimeError("TIMEBANK_RELAYER_KEYSTORE_PASSWORD is required with a keystore")
            keystore = json.loads(self.relayer_keystore.read_text())
            return bytes(Account.decrypt(keystore, self.relayer_keystore_password))
        if chain_id == DEV_CHAIN_ID:
            return bytes.fromhex(DEV_RELAYER_KEY[2:])
        raise RuntimeError(
            f"chain {chain_id} is not the embedded development chain: set TIMEBANK_RELAYER_KEY or "
            "TIMEBANK_RELAYER_KEYSTORE (+ TIMEBANK_RELAYER_KEYSTORE_PASSWORD)"
        )

    def resolve_contract(self, chain_id: int) -> str:
        if self.contract_address:
            return self.contract_address
        record = self.deployments_dir / f"{chain_id}.json"
        if not record.exists():
            raise RuntimeError(f"no contract address: set TIMEBANK_CONTRACT_ADDRESS or deploy ({record} missing)")
        return json.loads(record.read_text())["address"]


@lru_cache
def get_settings() -> Settings:
    return Settings()
