"""Secrets: the Kafka SASL password, from the environment or a mounted file, never shows in the
logs of a DEBUG `birdwatch serve` run against a real SASL broker, nor in any settings dump."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.config import SECRETS_DIR_VARIABLE, SettingsError, load_settings
from consumer.kafka.clients import client_options, describe_connection
from consumer.testing.broker import JAVA, ScriptBroker, default_home
from consumer.testing.topics import TopicReader, Topics, create_topics, produce_events
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer, TinyModels
from tests.images import RED, solid_jpeg
from tests.kafka_support import ServeProcess, serve_env, serve_model
from tests.reliability_support import record_figures

# Distinctive, plain ASCII: any rendering of it (repr, JSON, str) would contain it verbatim.
PASSWORD = "pw-Zq8xV4-birdwatch-never-log-7731"
WRONG_PASSWORD = "pw-Wr0ng-birdwatch-never-log-4410"
USERNAME = "birduser5c2e"


def secrets_dir(tmp_path: Path, password: str = PASSWORD) -> Path:
    """A folder laid out like a mounted Kubernetes Secret (files behind ..data symlinks)."""
    folder = tmp_path / "secrets"
    real = folder / "..2026_11_26_data"
    real.mkdir(parents=True)
    (real / "BIRDWATCH_KAFKA_SASL_PASSWORD").write_text(password + "\n")
    (folder / "..data").symlink_to(real.name)
    (folder / "BIRDWATCH_KAFKA_SASL_PASSWORD").symlink_to("..data/BIRDWATCH_KAFKA_SASL_PASSWORD")
    return folder


def leaks(text: str, password: str = PASSWORD) -> list[str]:
    """The forms of `password` found in `text`."""
    forms = {"plain": password, "hex": password.encode().hex(), "reversed": password[::-1]}
    return [name for name, form in forms.items() if form in text]


@pytest.fixture(scope="module")
def sasl_broker(
    tmp_path_factory: pytest.TempPathFactory, kafka_bootstrap: str
) -> Iterator[ScriptBroker]:
    """A real broker that authenticates USERNAME/PASSWORD with SASL/PLAIN.

    Asks for the session broker first: started by scripts/kafka, it resolves the jars this one
    reuses (on a fresh clone they do not exist before that).
    """
    if JAVA is None or not (default_home() / "libs" / ".resolved").exists():
        pytest.skip("the SASL broker needs Java and the jars scripts/kafka resolves")
    broker = ScriptBroker.private(tmp_path_factory.mktemp("sasl-kafka"), {USERNAME: PASSWORD})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.kafka
@pytest.mark.parametrize("case", ["environment", "secrets_dir", "rejected"])
async def test_a_debug_serve_run_never_logs_the_sasl_password(
    case: str,
    sasl_broker: ScriptBroker,
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    tmp_path: Path,
) -> None:
    """`birdwatch serve` with DEBUG logs (the Kafka client's too) authenticates with SASL/PLAIN
    against a real broker, or is refused with a wrong password and keeps retrying: the password
    it holds shows nowhere in its output."""
    names = Topics.unique("secret")
    plaintext = sasl_broker.bootstrap
    await create_topics(plaintext, names.names, partitions=1)
    model = serve_model(http_server, tiny_models)
    env = serve_env(
        sasl_broker.sasl_bootstrap,
        names,
        model,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username=USERNAME,
        log_level="DEBUG",
    )
    held = WRONG_PASSWORD if case == "rejected" else PASSWORD
    if case == "secrets_dir":
        env[SECRETS_DIR_VARIABLE] = str(secrets_dir(tmp_path))
    else:
        env["BIRDWATCH_KAFKA_SASL_PASSWORD"] = held
    serve = ServeProcess(env, tmp_path / "serve.log")
    answered = 0
    try:
        if case == "rejected":

            def attempts() -> int:
                return sum(e.get("event") == "kafka_unavailable" for e in serve.log_events())

            await wait_until(lambda: attempts() >= 2, 60, "two refused connection attempts")
        else:
            await serve.wait_ready(timeout_s=60)
            url = http_server.add_bytes("/img/red.jpg", solid_jpeg(RED, (32, 32)), "image/jpeg")
            ids = [f"secret-{i}" for i in range(3)]
            await produce_events(plaintext, names.input, ((eid, url) for eid in ids))
            async with TopicReader(plaintext, names.results) as reader:
                answered = len(await reader.wait_for_ids(set(ids), timeout_s=60))
        code = await serve.terminate(timeout_s=30)
    finally:
        serve.close()

    text = serve.log_path.read_text(errors="replace")
    events = serve.log_events()
    assert code == 0, serve.log_tail()
    assert leaks(text, held) == []
    # The settings were really in use and logged, minus the password.
    connecting = [e for e in events if e.get("event") == "kafka_connecting"]
    assert connecting
    assert connecting[0]["security_protocol"] == "SASL_PLAINTEXT"
    assert connecting[0]["sasl_username"] == USERNAME
    assert "sasl_password" not in connecting[0]
    # The Kafka client's own DEBUG lines were in the output too, its SASL exchange redacted
    # (aiokafka logs that request with the PLAIN password in it).
    client_lines = [e for e in events if str(e.get("logger", "")).startswith("aiokafka")]
    redacted = [e for e in client_lines if "<SASL exchange redacted>" in str(e["event"])]
    assert redacted
    authenticated = f"Authenticated as {USERNAME} via PLAIN" in text
    assert authenticated is (case != "rejected")
    failures = [e for e in events if e.get("event") == "kafka_unavailable"]
    record_figures(
        f"secrets_serve_log_{case}",
        {
            "fault": "SASL_PLAINTEXT/PLAIN credentials, DEBUG logs (aiokafka's too), real broker",
            "case": case,
            "log_lines": len(text.splitlines()),
            "aiokafka_debug_lines": len(client_lines),
            "sasl_exchange_lines_redacted": len(redacted),
            "authenticated": authenticated,
            "results_answered": answered,
            "connection_failures_logged": len(failures),
            "password_found": leaks(text, held),
            "username_logged": USERNAME in text,
        },
    )


@pytest.mark.parametrize("source", ["environment", "secrets_dir"])
def test_no_settings_dump_shows_the_password(
    source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BIRDWATCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BIRDWATCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("BIRDWATCH_KAFKA_SASL_USERNAME", USERNAME)
    if source == "environment":
        monkeypatch.setenv("BIRDWATCH_KAFKA_SASL_PASSWORD", PASSWORD)
    else:
        monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(secrets_dir(tmp_path)))
    settings = load_settings()

    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD  # newline stripped
    assert client_options(settings)["sasl_plain_password"] == PASSWORD
    dumps = {
        "repr": repr(settings),
        "str": str(settings),
        "model_dump": str(settings.model_dump()),
        "model_dump_json_mode": json.dumps(settings.model_dump(mode="json")),
        "model_dump_json": settings.model_dump_json(),
        "field_repr": repr(settings.kafka_sasl_password),
        "field_str": str(settings.kafka_sasl_password),
        "describe_connection": str(describe_connection(settings)),
    }
    found = {name: leaks(text) for name, text in dumps.items() if leaks(text)}
    assert found == {}
    assert USERNAME in dumps["model_dump_json"]


def test_the_environment_wins_over_a_secrets_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(secrets_dir(tmp_path, "from-the-file")))
    monkeypatch.setenv("BIRDWATCH_KAFKA_SASL_PASSWORD", "from-the-environment")
    password = load_settings().kafka_sasl_password
    assert password is not None
    assert password.get_secret_value() == "from-the-environment"


def test_a_missing_secrets_dir_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path / "not-mounted"))
    with pytest.raises(SettingsError, match=SECRETS_DIR_VARIABLE):
        load_settings()


def test_the_kafka_clients_sasl_request_is_redacted_in_debug_logs() -> None:
    """What the serve run above caught: aiokafka logs the SaslAuthenticate request, PLAIN
    password included, at DEBUG."""
    import io
    import logging

    from aiokafka.protocol.admin import SaslAuthenticateRequest

    from consumer.config import LogFormat
    from consumer.logs import configure_logging

    out = io.StringIO()
    configure_logging("DEBUG", LogFormat.JSON, out)
    token = f"{USERNAME}\0{USERNAME}\0{PASSWORD}".encode()
    request = SaslAuthenticateRequest(token).prepare({36: (0, 2)})
    logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "h", 9092, 3, request)
    logging.getLogger("aiokafka.conn").debug("Request to %s:%d %d: %s", "h", 9092, 4, "Metadata")
    assert leaks(out.getvalue()) == []
    assert "<SASL exchange redacted>" in out.getvalue()
    assert "Metadata" in out.getvalue()
