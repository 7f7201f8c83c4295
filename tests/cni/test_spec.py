"""The CNI protocol of l2vpc-cni: invocations checked with the spec's error codes, results shaped
per version, and the console script run the way a runtime runs it (nothing but CNI_* set)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from l2vpc.cni import plugin, spec

NETCONF = {"cniVersion": "1.1.0", "name": "vpc-a", "type": "l2vpc-cni", "vpc": "vpc-a"}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c0ffee12", "CNI_NETNS": "/var/run/netns/p1", "CNI_IFNAME": "net1"}


def invoke(env: dict[str, str], conf: Any) -> tuple[int, dict[str, Any] | None]:
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    return plugin.run(env, data)


@pytest.mark.parametrize(("env", "conf", "code", "names"), [
    ({**ENV, "CNI_COMMAND": "UP"}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_COMMAND"),
    ({**ENV, "CNI_CONTAINERID": ""}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_CONTAINERID"),
    ({**ENV, "CNI_CONTAINERID": "-x"}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_CONTAINERID"),
    ({**ENV, "CNI_IFNAME": "net/1"}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_IFNAME"),
    ({**ENV, "CNI_IFNAME": "a-very-long-ifname"}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_IFNAME"),
    ({**ENV, "CNI_NETNS": ""}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_NETNS"),
    ({**ENV, "CNI_ARGS": "IP"}, NETCONF, spec.INVALID_ENVIRONMENT, "CNI_ARGS"),
    (ENV, b"{not json", spec.DECODE_FAILURE, "not JSON"),
    (ENV, b"[1, 2]", spec.DECODE_FAILURE, "JSON object"),
    (ENV, {**NETCONF, "cniVersion": "0.4.0"}, spec.INCOMPATIBLE_VERSION, "0.4.0"),
    (ENV, {k: v for k, v in NETCONF.items() if k != "name"}, spec.INVALID_CONFIG, "name"),
    (ENV, {k: v for k, v in NETCONF.items() if k != "vpc"}, spec.INVALID_CONFIG, "vpc"),
    (ENV, {**NETCONF, "vpc": 7}, spec.INVALID_CONFIG, "vpc"),
    (ENV, {**NETCONF, "agent_socket": ""}, spec.INVALID_CONFIG, "agent_socket"),
    ({**ENV, "CNI_COMMAND": "CHECK"}, NETCONF, spec.INVALID_CONFIG, "prevResult"),
    ({**ENV, "CNI_COMMAND": "STATUS"}, {**NETCONF, "cniVersion": "1.0.0"}, spec.INCOMPATIBLE_VERSION, "1.1.0"),
])
def test_bad_invocations_get_the_spec_code_and_name_the_culprit(env: dict[str, str], conf: Any, code: int,
                                                                names: str) -> None:
    status, out = invoke(env, conf)
    assert status == 1 and out is not None
    assert out["code"] == code, out
    assert names in out["msg"] + out.get("details", ""), out
    assert out["cniVersion"] in spec.SUPPORTED_VERSIONS


def test_version_lists_what_we_speak_in_the_version_asked() -> None:
    assert invoke({"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"}) == (
        0, {"cniVersion": "1.0.0", "supportedVersions": ["1.0.0", "1.1.0"]})
    assert invoke({"CNI_COMMAND": "VERSION"}, b"")[1] == {"cniVersion": "1.1.0", "supportedVersions": ["1.0.0", "1.1.0"]}


def test_the_vpc_may_come_from_the_runtime_args() -> None:
    conf = {k: v for k, v in NETCONF.items() if k != "vpc"}
    req = spec.parse({**ENV, "CNI_ARGS": "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;VPC=vpc-b;IP=10.0.0.5/24"},
                     json.dumps(conf).encode())
    assert req.vpc == "vpc-b" and req.args["K8S_POD_NAME"] == "web-0" and req.args["IP"] == "10.0.0.5/24"
    assert req.agent_socket == spec.DEFAULT_AGENT_SOCKET


def test_results_carry_mtu_only_from_1_1() -> None:
    body = {"interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p1", "mtu": 9000}],
            "ips": [{"address": "10.0.0.5/24", "interface": 0}]}
    assert spec.result("1.1.0", body)["interfaces"][0]["mtu"] == 9000
    assert "mtu" not in spec.result("1.0.0", body)["interfaces"][0]
    assert spec.result("1.0.0", {"interfaces": body["interfaces"]}).get("ips") is None  # DHCP: no address


class FakeAgent:
    """A socket that answers like the agent (one line in, one line out), recording requests."""

    def __init__(self, path: Path, answer: dict[str, Any]) -> None:
        self.path, self.answer, self.seen = path, answer, []  # type: ignore[var-annotated]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.seen.append(json.loads(data))
                conn.sendall(json.dumps(self.answer).encode() + b"\n")

    def close(self) -> None:
        self.sock.close()


def test_unreachable_agent_is_try_again_later(tmp_path: Path) -> None:
    status, out = invoke(ENV, {**NETCONF, "agent_socket": str(tmp_path / "none.sock")})
    assert status == 1 and out is not None and out["code"] == spec.TRY_AGAIN_LATER
    assert str(tmp_path / "none.sock") in out["msg"]


def test_the_agents_answer_becomes_the_result_or_error(tmp_path: Path) -> None:
    ok = FakeAgent(tmp_path / "ok.sock", {"ok": True, "result": {
        "interfaces": [{"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p1", "mtu": 1500}]}})
    bad = FakeAgent(tmp_path / "bad.sock", {"ok": False, "code": spec.TOO_MANY_VPCS,
                                            "msg": "a workload attaches at most 10 VPCs", "details": "ns-web0"})
    try:
        status, out = invoke({**ENV, "CNI_ARGS": "K8S_POD_NAME=web-0"}, {**NETCONF, "agent_socket": str(ok.path)})
        assert status == 0 and out == {"cniVersion": "1.1.0", "interfaces": [
            {"name": "net1", "mac": "02:00:00:00:00:01", "sandbox": "/var/run/netns/p1", "mtu": 1500}], "dns": {}}
        (sent,) = ok.seen
        assert (sent["command"], sent["container_id"], sent["ifname"], sent["args"]) == (
            "ADD", "c0ffee12", "net1", {"K8S_POD_NAME": "web-0"})
        status, out = invoke({**ENV, "CNI_COMMAND": "DEL"}, {**NETCONF, "agent_socket": str(ok.path)})
        assert (status, out) == (0, None)  # DEL prints nothing on success
        status, out = invoke(ENV, {**NETCONF, "agent_socket": str(bad.path)})
        assert status == 1 and out == {"cniVersion": "1.1.0", "code": 102,
                                       "msg": "a workload attaches at most 10 VPCs", "details": "ns-web0"}
    finally:
        ok.close()
        bad.close()


def test_the_console_script_needs_nothing_but_cni_variables(tmp_path: Path) -> None:
    exe = shutil.which("l2vpc-cni") or str(Path(sys.executable).parent / "l2vpc-cni")
    run = subprocess.run([exe], env={"CNI_COMMAND": "VERSION"}, input=b'{"cniVersion":"1.0.0"}',
                         capture_output=True, timeout=30)
    assert run.returncode == 0 and json.loads(run.stdout)["supportedVersions"] == ["1.0.0", "1.1.0"]
    run = subprocess.run([exe], env={**ENV}, input=json.dumps({**NETCONF, "agent_socket": str(tmp_path / "x.sock")})
                         .encode(), capture_output=True, timeout=30)
    assert run.returncode == 1 and json.loads(run.stdout)["code"] == spec.TRY_AGAIN_LATER
