"""The DICOM node's settings, read from REDSEG_DICOM_* environment variables (the model's from REDSEG_*: service.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

AeTitle = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[ -\[\]-~]*[!-\[\]-~][ -\[\]-~]*$")]
"""An AE title: 1 to 16 printable ASCII characters, no backslash, not only spaces."""


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDSEG_DICOM_", frozen=True)

    ae_title: AeTitle = Field("REDSEG", description="RedSeg's own AE title: the called AE title senders must use.")
    host: str = Field("127.0.0.1", description="The interface the Storage SCP listens on (0.0.0.0: every interface).")
    port: int = Field(11112, ge=0, le=65535, description="The DICOM port (0: any free port).")
    allowed_callers: Annotated[list[AeTitle], NoDecode] = Field(
        default_factory=list, description="Calling AE titles allowed to send photographs, comma-separated; "
        "associations from any other are refused. Required.")
    destination_ae: AeTitle | None = Field(None, description="C-STORE destination: the PACS's AE title.")
    destination_host: str = Field("127.0.0.1", description="C-STORE destination: its host.")
    destination_port: int | None = Field(None, ge=1, le=65535, description="C-STORE destination: its DICOM port.")
    stow_url: str | None = Field(
        None, description="STOW-RS destination instead: the DICOMweb root (e.g. http://pacs:8042/dicom-web); "
        "results are POSTed to <root>/studies.")
    stow_token: SecretStr | None = Field(None, description="STOW-RS: a bearer token to send, if the PACS needs one.")
    seg_type: Literal["binary", "fractional"] = Field("binary", description="The SEG sent back: binary masks or fractional probabilities.")
    outbox: Path = Field(
        Path.home() / ".local" / "state" / "redseg" / "outbox",
        description="Folder (made with permissions 0700) where results wait until the destination has them.")
    keep_days: float = Field(7.0, gt=0, description="How long a result the destination has not taken is kept and retried.")
    retry_interval_s: float = Field(30.0, gt=0, description="Seconds between tries to send results that are waiting.")
    send_timeout_s: float = Field(30.0, gt=0, description="Network timeout of each send to the destination.")
    metrics_host: str = Field("127.0.0.1", description="The interface of the Prometheus /metrics endpoint.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="The port of /metrics (0: no endpoint).")
    tls_cert: Path | None = Field(None, description="TLS: RedSeg's certificate (PEM); set, the SCP speaks DICOM over TLS only.")
    tls_key: Path | None = Field(None, description="TLS: its private key (PEM).")
    tls_ca: Path | None = Field(None, description="TLS: CA certificates (PEM); set, callers must show a certificate it signed.")
    destination_tls: bool = Field(False, description="Send C-STORE over TLS (verified against REDSEG_DICOM_TLS_CA).")

    @field_validator("allowed_callers", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [title.strip() for title in value.split(",") if title.strip()]
        return value

    @model_validator(mode="after")
    def _complete(self) -> "NodeSettings":
        if not self.allowed_callers:
            raise ValueError("REDSEG_DICOM_ALLOWED_CALLERS is empty: name the calling AE titles that may send photographs")
        stores = self.destination_ae is not None or self.destination_port is not None
        if stores == (self.stow_url is not None):
            raise ValueError("name one destination: REDSEG_DICOM_DESTINATION_AE and _PORT (C-STORE), or REDSEG_DICOM_STOW_URL")
        if stores and (self.destination_ae is None or self.destination_port is None):
            raise ValueError("a C-STORE destination needs both REDSEG_DICOM_DESTINATION_AE and REDSEG_DICOM_DESTINATION_PORT")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both REDSEG_DICOM_TLS_CERT and REDSEG_DICOM_TLS_KEY")
        if self.destination_tls and self.tls_ca is None:
            raise ValueError("REDSEG_DICOM_DESTINATION_TLS needs REDSEG_DICOM_TLS_CA to verify the destination")
        return self

    @property
    def keep_s(self) -> float:
        return self.keep_days * 86400.0
