"""The provider block: embedded engine or a controller (`endpoint`, `token`, `ca_file`, their
environment defaults), and every bad combination named in a diagnostic that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from l2vpc.controller.client import RemoteEngine
from l2vpc.pki import CertificateAuthority
from l2vpc.provider.cty import Unknown
from l2vpc.provider.diagnostics import Diagnostics
from l2vpc.provider.l2vpc_provider import L2vpcProvider, build_provider
from l2vpc.provider.planning import configure_provider

ENV = ("L2VPC_ENDPOINT", "L2VPC_TOKEN", "L2VPC_CA_FILE", "L2VPC_STATE_PATH")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ENV:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    return str(CertificateAuthority.create(tmp_path / "pki").ca_path)


def block(**values: Any) -> dict[str, Any]:
    return {name: values.get(name) for name in L2vpcProvider.schema.attributes}


def configure(**values: Any) -> tuple[L2vpcProvider, Diagnostics]:
    provider = build_provider()
    diags = configure_provider(provider, block(**values), "1.15.5")
    return provider, diags


def errors(diags: Diagnostics) -> list[tuple[str, str, str]]:
    return [(d.summary, d.detail, str(d.path) if d.path else "") for d in diags.errors]


def test_embedded_by_default_with_state_path_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, diags = configure()
    assert errors(diags) == [] and provider.client is not None
    assert not provider.client.remote and provider.settings["state_path"].endswith("state.db")
    monkeypatch.setenv("L2VPC_STATE_PATH", "/tmp/x/state.db")
    provider, diags = configure()
    assert provider.settings["state_path"] == "/tmp/x/state.db"


def test_endpoint_with_token_is_remote_and_the_token_never_shows(ca_file: str) -> None:
    provider, diags = configure(endpoint="ctl.example.com:7443", token="l2vpc_tok-1_secret", ca_file=ca_file)
    assert errors(diags) == []
    client = provider.client
    assert client is not None and client.remote and provider.settings["state_path"] is None
    engine = client.engine
    assert isinstance(engine, RemoteEngine) and "secret" not in repr(engine)
    provider.close()


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch, ca_file: str) -> None:
    monkeypatch.setenv("L2VPC_ENDPOINT", "10.0.0.5:7700")
    monkeypatch.setenv("L2VPC_TOKEN", "from-env")
    monkeypatch.setenv("L2VPC_CA_FILE", ca_file)
    monkeypatch.setenv("L2VPC_STATE_PATH", "/tmp/ignored/state.db")  # a default of the embedded engine only
    provider, diags = configure(region="us-east")
    assert errors(diags) == []
    assert provider.settings["endpoint"] == "10.0.0.5:7700" and provider.settings["token"] == "from-env"
    assert provider.settings["ca_file"] == ca_file and provider.settings["state_path"] is None
    # The block wins over the environment.
    provider, diags = configure(endpoint="[::1]:7443", token="from-block")
    assert errors(diags) == [] and provider.settings["token"] == "from-block"


def test_bad_combinations_are_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], tuple[str, str, str]]] = [
        (dict(endpoint="ctl:7443"), ("Missing token", "token is required with endpoint", "token")),
        (dict(endpoint="ctl:7443", token="t", state_path="s.db"),
         ("Conflicting provider settings", "state_path and endpoint are both set", "state_path")),
        (dict(endpoint="https://ctl", token="t"),
         ("Invalid provider setting", "endpoint must be HOST:PORT, e.g. controller.example.com:7443, got "
          "'https://ctl'", "endpoint")),
        (dict(endpoint="ctl:70000", token="t"), ("Invalid provider setting", "endpoint must be HOST:PORT", "endpoint")),
        (dict(endpoint="ctl:7443", token="t", ca_file=str(tmp_path / "nope.pem")),
         ("Invalid provider setting", "cannot be read (No such file or directory)", "ca_file")),
        (dict(token="t"), ("Token without an endpoint", "token is only used with endpoint", "token")),
        (dict(endpoint=Unknown(), token="t"),
         ("Provider setting not known yet", "endpoint depends on a value known only after apply", "endpoint")),
    ]
    for values, (summary, detail, path) in cases:
        provider, diags = configure(**values)
        found = errors(diags)
        assert len(found) == 1 and found[0][0] == summary and detail in found[0][1] and found[0][2] == path, \
            (values, found)
        assert provider.client is None

    (tmp_path / "junk.pem").write_text("not a certificate")
    _, diags = configure(endpoint="ctl:7443", token="t", ca_file=str(tmp_path / "junk.pem"))
    assert "is not a PEM certificate" in errors(diags)[0][1]

    # From the environment the message says where the value came from; there is no attribute to point at.
    monkeypatch.setenv("L2VPC_ENDPOINT", "ctl:7443")
    _, diags = configure(state_path="s.db", token="t")
    assert "state_path and endpoint (from $L2VPC_ENDPOINT) are both set" in errors(diags)[0][1]
    _, diags = configure()
    assert errors(diags)[0][:2] == ("Missing token", "token is required with endpoint (from $L2VPC_ENDPOINT): set "
                                    "token in the provider block or $L2VPC_TOKEN (create one with `l2vpc controller "
                                    "token create`).")
    monkeypatch.setenv("L2VPC_ENDPOINT", "not an endpoint")
    _, diags = configure(token="t")
    assert errors(diags)[0][2] == ""  # not the attribute: the configuration does not set it


def test_token_is_sensitive_in_the_schema() -> None:
    attrs = L2vpcProvider.schema.attributes
    assert attrs["token"].sensitive and not attrs["endpoint"].sensitive
    assert set(attrs) == {"endpoint", "token", "ca_file", "state_path", "region"}


def test_token_from_the_environment_without_an_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """$L2VPC_TOKEN alone used to be ignored silently: the user thinks they talk to a controller."""
    monkeypatch.setenv("L2VPC_TOKEN", "from-env")
    provider, diags = configure()
    assert errors(diags) == [] and provider.client is not None and not provider.client.remote
    warnings = [(d.summary, d.detail) for d in diags.warnings]
    assert len(warnings) == 1 and warnings[0][0] == "Token without an endpoint", warnings
    assert "$L2VPC_TOKEN" in warnings[0][1] and "$L2VPC_ENDPOINT" in warnings[0][1]
    assert "from-env" not in warnings[0][1]


def test_several_endpoints_fail_over_and_name_each_other(ca_file: str) -> None:
    provider, diags = configure(endpoint="127.0.0.1:1, 127.0.0.1:2", token="t", ca_file=ca_file)
    assert errors(diags) == []
    engine = provider.client.engine if provider.client else None
    assert isinstance(engine, RemoteEngine) and engine.endpoints == ["127.0.0.1:1", "127.0.0.1:2"]
    engine.retry_seconds = 0.5
    with pytest.raises(Exception, match=r"unavailable.*other configured controllers \(127\.0\.0\.1:[12]\)"):
        engine.list("vpc")
    provider.close()
