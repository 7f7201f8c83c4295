"""Shared pieces of the daemon tests: a CA, agents served in-process, sample configs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from l2vpc._proto import agent_pb2 as pb
from l2vpc._proto import agent_pb2_grpc as pb_grpc
from l2vpc.agent.daemon import Agent, serve
from l2vpc.agent.drivers.memory import MemoryDriver
from l2vpc.agentapi import wire
from l2vpc.agentapi.channel import open_channel, stub
from l2vpc.hostconfig import DhcpServer, HostConfig, Port, Reservation, Segment
from l2vpc.pki import CertificateAuthority, TlsFiles


@dataclass
class Pki:
    ca: CertificateAuthority
    engine: TlsFiles

    def server(self, host: str) -> TlsFiles:
        files = self.ca.files(host)
        return files if files.cert.exists() else self.ca.issue_server(host)


def make_pki(directory: Path) -> Pki:
    ca = CertificateAuthority.create(directory)
    return Pki(ca, ca.issue_client("engine"))


@dataclass
class Running:
    agent: Agent
    driver: MemoryDriver
    server: grpc.Server
    address: str

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.agent.close()


def start_agent(state_dir: Path, tls: TlsFiles, host: str = "h1", underlay: str = "10.0.0.1") -> Running:
    driver = MemoryDriver(host, underlay)
    agent = Agent(driver, state_dir, driver_name="memory")
    server, address = serve(agent, "127.0.0.1:0", tls)
    resync = agent.start()
    if resync is not None:
        resync.join(10)
    return Running(agent, driver, server, address)


def client(address: str, tls: TlsFiles, host: str = "h1") -> tuple[grpc.Channel, pb_grpc.AgentStub]:
    channel = open_channel(address, host, tls)
    return channel, stub(channel)


def push(s: pb_grpc.AgentStub, cfg: HostConfig) -> pb.PushResponse:
    reply: pb.PushResponse = s.Push(pb.PushRequest(config=wire.config_to_pb(cfg)), timeout=10)
    return reply


def sample(generation: int, host: str = "h1", underlay: str = "10.0.0.1", mtu: int = 1500) -> HostConfig:
    return HostConfig(
        host=host,
        underlay_ip=underlay,
        generation=generation,
        segments=(
            Segment(100, "vpc-aaaa", mtu, ("10.0.0.2", "10.0.0.3")),
            Segment(200, "vpc-bbbb", 9000, ()),
        ),
        ports=(
            Port("att-1", 100, "web1", "net1", "02:00:00:00:00:01", mtu, ip_mode="static",
                 ip_address="10.1.0.5/24"),
            Port("att-2", 200, "web1", "net2", "02:00:00:00:00:02", 9000, ip_mode="dhcp"),
        ),
        dhcp_servers=(
            DhcpServer(200, "10.2.0.254/24", "10.2.0.100", "10.2.0.200", gateway="10.2.0.1",
                       dns_servers=("10.2.0.1",), reservations=(Reservation("02:00:00:00:00:02", "10.2.0.50"),)),
        ),
    )
