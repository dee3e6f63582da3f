"""Where the e2e runs point: read once from the environment, passed down.

- `E2E_LOAD_IMAGE`: puts local images into the cluster's nodes; default `$INFRA_LOAD_IMAGE`,
  else `kind load docker-image`.
- `E2E_HOST_IP`: the host as containers and pods reach it (the model, labels and photos
  server); default `$INFRA_HOST_IP`, else `host.docker.internal`.
- `E2E_BIND_IP`: where that server listens; default `E2E_HOST_IP` when it is an address, else
  `0.0.0.0`.
- `E2E_HTTP_PORT`: its port; default 8765.
- `E2E_DATA_DIR`: the TFLite model, label map and photos; default `$BIRDWATCH_REAL_MODEL_DIR`,
  else `../shared/data`.
- `E2E_IMAGE`: the image built and deployed; default `birdwatch:0.1.0-lite`.
- `E2E_OUT_DIR`: generated photos, rendered files, logs, JSON results; default `.cache/e2e`.

`INFRA_*` are what `source ../shared/infra/env` sets on our machines (a stand-in for Docker
Desktop + kind); on a laptop with kind nothing needs setting (on Linux, set `E2E_HOST_IP` to the
gateway of kind's Docker network: `docker network inspect kind`).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = "birdwatch:0.1.0-lite"
KAFKA_IMAGE = "apache/kafka:4.4.0"
DEFAULT_PORT = 8765


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Environment:
    load_image: tuple[str, ...]
    host: str
    bind: str
    port: int
    data_dir: Path
    image: str
    out_dir: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if env is None else env
        loader = (
            env.get("E2E_LOAD_IMAGE") or env.get("INFRA_LOAD_IMAGE") or "kind load docker-image"
        )
        host = env.get("E2E_HOST_IP") or env.get("INFRA_HOST_IP") or "host.docker.internal"
        bind = env.get("E2E_BIND_IP") or (host if is_address(host) else "0.0.0.0")  # noqa: S104
        data = env.get("E2E_DATA_DIR") or env.get("BIRDWATCH_REAL_MODEL_DIR") or ""
        port_text = env.get("E2E_HTTP_PORT") or str(DEFAULT_PORT)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"E2E_HTTP_PORT must be a port number, not {port_text!r}")
        image = env.get("E2E_IMAGE") or DEFAULT_IMAGE
        if ":" not in image.rsplit("/", 1)[-1]:
            raise ValueError(f"E2E_IMAGE needs an explicit tag (pods pull :latest), not {image!r}")
        return cls(
            load_image=tuple(shlex.split(loader)),
            host=host,
            bind=bind,
            port=int(port_text),
            data_dir=Path(data) if data else REPO.parent / "shared" / "data",
            image=image,
            out_dir=Path(env.get("E2E_OUT_DIR") or REPO / ".cache" / "e2e"),
        )

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
