"""The shipper's settings, from ``ROBOVID_*`` environment variables, validated once at start.

Documented with their defaults in ``systemd/robovid.env`` (the file both units read).
Credentials are never settings: the store's own mechanisms provide them (for S3 the
``AWS_*`` variables, ``~/.aws/credentials``, an instance role; for GCS and Azure theirs).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..config import check_metrics_dir
from ..errors import ConfigError

ROBOT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CREDENTIAL_OPTIONS = re.compile(r"(^|_)(key|secret|token|password|passwd|credentials?|sas|signature)($|_)", re.I)
"""Storage option names that carry secrets. They belong in the store's own credential sources."""
MIN_PART_MB = 5
"""S3 refuses multipart parts smaller than 5 MiB (all but the last)."""


def _default_robot_id() -> str:
    name = socket.gethostname().split(".")[0]
    return name if ROBOT_ID_RE.fullmatch(name) else "robot"


class ShipSettings(BaseSettings):
    """Every knob of robovid-ship."""

    model_config = SettingsConfigDict(env_prefix="ROBOVID_", extra="ignore", case_sensitive=False)

    root: Path = Path("/var/lib/robovid")
    ship_dest: str = ""
    ship_robot_id: str = Field(default_factory=_default_robot_id)
    ship_storage_options: str = "{}"
    """A JSON object of fsspec storage options (kept as text: parsed and checked by the validator)."""
    ship_keep_gb: float = Field(10.0, ge=0)
    ship_keep_days: float = Field(0.0, ge=0)
    ship_interval_s: float = Field(30.0, gt=0)
    ship_backoff_max_s: float = Field(300.0, gt=0)
    ship_part_mb: int = Field(64, ge=MIN_PART_MB, le=5 * 1024)
    ship_recheck_s: float = Field(86400.0, ge=0)
    metrics_dir: str = ""
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("root")
    @classmethod
    def _existing_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"'{value}' is not an existing directory; point ROBOVID_ROOT at the service's root")
        return value.absolute()

    @field_validator("metrics_dir")
    @classmethod
    def _metrics_folder(cls, value: str) -> str:
        return check_metrics_dir(value)

    @property
    def metrics_path(self) -> Path | None:
        return Path(self.metrics_dir) if self.metrics_dir else None

    @field_validator("ship_dest")
    @classmethod
    def _fsspec_url(cls, value: str) -> str:
        value = value.strip()
        if "://" not in value:
            raise ValueError(
                "must be an fsspec URL of the destination, such as s3://bucket/robovid, gs://bucket/robovid, "
                "az://container/robovid or file:///mnt/nas/robovid"
            )
        protocol = value.split("://", 1)[0]
        import fsspec

        try:
            fsspec.get_filesystem_class(protocol)
        except ValueError as error:
            raise ValueError(f"unknown protocol {protocol!r} ({error})") from error
        except ImportError as error:
            raise ValueError(
                f"the {protocol}:// filesystem is not installed ({error}); for S3: pip install 'robovid[ship]'"
            ) from error
        return value.rstrip("/")

    @field_validator("ship_robot_id")
    @classmethod
    def _robot_id(cls, value: str) -> str:
        if not ROBOT_ID_RE.fullmatch(value):
            raise ValueError(
                "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit; it names this "
                "robot's prefix at the destination and must be unique in the fleet"
            )
        return value

    @field_validator("ship_storage_options")
    @classmethod
    def _json_object(cls, text: str) -> str:
        try:
            value = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as error:
            raise ValueError(f'not JSON ({error}); write a JSON object such as {{"anon": false}}') from error
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object of fsspec storage options")
        secret = sorted(_secret_names(value))
        if secret:
            raise ValueError(
                f"holds credentials ({', '.join(secret)}); give them through the store's own mechanisms instead "
                "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials for S3, "
                "GOOGLE_APPLICATION_CREDENTIALS for GCS, AZURE_STORAGE_* for Azure), e.g. in an EnvironmentFile "
                "readable only by root"
            )
        return text or "{}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec storage options (validated JSON object)."""
        options: dict[str, Any] = json.loads(self.ship_storage_options)
        return options

    @property
    def part_bytes(self) -> int:
        return self.ship_part_mb * 1024 * 1024

    @property
    def keep_bytes(self) -> int:
        return round(self.ship_keep_gb * 1e9)  # int() would truncate 1005e-9 GB to 1004 bytes


def _secret_names(options: dict[str, Any], prefix: str = "") -> list[str]:
    found = []
    for key, value in options.items():
        name = f"{prefix}{key}"
        if CREDENTIAL_OPTIONS.search(str(key)):
            found.append(name)
        if isinstance(value, dict):
            found += _secret_names(value, prefix=f"{name}.")
    return found


def load_ship_settings() -> ShipSettings:
    """Read and validate the environment; ConfigError naming every bad variable."""
    try:
        settings = ShipSettings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from error
    if not settings.ship_dest:
        raise ConfigError(
            f"{_HEADER}\n  ROBOVID_SHIP_DEST is not set: name the destination as an fsspec URL, "
            "e.g. s3://bucket/robovid (this robot's files go under {dest}/{ROBOVID_SHIP_ROBOT_ID}/)"
        )
    return settings


_HEADER = "Invalid configuration, nothing was touched:"


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = [str(part) for part in item.get("loc", ()) if part]
        variable = f"ROBOVID_{location[0].upper()}" if location else "ROBOVID_SHIP_*"
        message = item.get("msg", "invalid").removeprefix("Value error, ")
        shown = "<not shown>" if variable == "ROBOVID_SHIP_STORAGE_OPTIONS" else repr(item.get("input"))
        lines.append(f"{variable}={shown}: {message}")
    return _HEADER + "\n  " + "\n  ".join(lines)
