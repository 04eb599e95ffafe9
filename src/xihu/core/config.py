"""One Settings object for the whole platform (environment prefix XIHU_)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_SECRET = "demo-secret-change-me"


def normalize_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgresql:// URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Platform configuration, read from XIHU_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="XIHU_", env_file=None, extra="ignore")

    data_dir: Path = Path("var")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    secret_key: str = DEMO_SECRET
    demo: bool = False
    secure_cookies: bool = False
    session_hours: int = 12
    timezone: str = "Asia/Shanghai"
    public_base_url: str = "http://127.0.0.1:8000"
    in_process_worker: bool | None = None
    sweep_interval_seconds: float = 10.0
    # Busy deployments: the request only stores and acknowledges; routing, the analysis rollups and sealing
    # the audit chain are done by `xihu worker` within seconds, so requests neither compute nor wait on locks.
    defer_to_workers: bool = False
    # A cockpit's figures are computed from rollups that workers update every few seconds; viewers of the same
    # area within this many seconds are shown the same computation (0: compute for every view).
    cockpit_cache_seconds: float = 5.0
    # PostgreSQL connections each process keeps (opened as needed, then kept: no overflow connections that
    # are opened and closed again under load, each a new server process). A request that finds them all busy
    # waits up to db_pool_timeout_seconds, then gets a 503. Mind max_connections: processes × pool size.
    db_pool_size: int = 20
    db_pool_timeout_seconds: float = 30.0
    max_upload_bytes: int = 5 * 1024 * 1024
    max_photos: int = 4
    rate_limit_per_minute: int = 120  # public submissions and logins per client address; 0 turns it off
    webhook_url: str = ""
    sms_gateway_url: str = ""
    # Personal data (appeals' citizen name and phone) is encrypted at rest with AES-256-GCM under this key,
    # base64 of 32 random bytes (`xihu privacy new-key` prints one). Outside demo mode the service refuses to
    # start without it; in demo mode one is generated and kept in <data_dir>/pii.key (mode 0600).
    pii_key: str = ""
    # Former keys, comma separated: still read after a rotation until `xihu privacy rotate-key` has run.
    pii_old_keys: str = ""
    # Dispatchers' corrections become training rows; a worker retrains on its own once this many have come in
    # since the active version and the last run is at least retrain_interval_hours old (0 turns it off). The
    # new version is not activated: admins are told to review it on the models page.
    retrain_min_feedback: int = 50
    retrain_interval_hours: float = 168.0
    district_name: str = "西湖区"
    city_name: str = "杭州市"

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'xihu.db'}"
        self.database_url = normalize_url(self.database_url)
        return self

    @property
    def is_sqlite(self) -> bool:
        """True when the database is SQLite (single-process deployments)."""
        return self.database_url.startswith("sqlite")

    @property
    def run_sweeper_in_process(self) -> bool:
        """Whether the web process runs the SLA sweeper and outbox itself."""
        if self.in_process_worker is not None:
            return self.in_process_worker
        return self.is_sqlite

    def check_secrets(self) -> None:
        """Refuse the built-in demo secret outside demo mode."""
        if not self.demo and self.secret_key == DEMO_SECRET:
            raise RuntimeError(
                "XIHU_SECRET_KEY 仍是演示默认值；生产环境必须设置自己的密钥 "
                "(the default secret is refused outside demo mode: set XIHU_SECRET_KEY or XIHU_DEMO=1)"
            )

    uploads_dir_name: str = Field(default="uploads")

    @property
    def uploads_dir(self) -> Path:
        """Directory where citizens' photos are stored."""
        return self.data_dir / self.uploads_dir_name


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
