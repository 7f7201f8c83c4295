from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RealizeRequest(_message.Message):
    __slots__ = ("workload", "mode")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    workload: str
    mode: str
    def __init__(self, workload: _Optional[str] = ..., mode: _Optional[str] = ...) -> None: ...

class RealizeResponse(_message.Message):
    __slots__ = ("changed", "actual", "failures")
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    changed: bool
    actual: HostConfig
    failures: _containers.RepeatedCompositeFieldContainer[Failure]
    def __init__(self, changed: _Optional[bool] = ..., actual: _Optional[_Union[HostConfig, _Mapping]] = ..., failures: _Optional[_Iterable[_Union[Failure, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("prefix", "via")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    via: str
    def __init__(self, prefix: _Optional[str] = ..., via: _Optional[str] = ...) -> None: ...

class Segment(_message.Message):
    __slots__ = ("vni", "vpc_id", "mtu", "remotes", "vpc_name")
    VNI_FIELD_NUMBER: _ClassVar[int]
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    REMOTES_FIELD_NUMBER: _ClassVar[int]
    VPC_NAME_FIELD_NUMBER: _ClassVar[int]
    vni: int
    vpc_id: str
    mtu: int
    remotes: _containers.RepeatedScalarFieldContainer[str]
    vpc_name: str
    def __init__(self, vni: _Optional[int] = ..., vpc_id: _Optional[str] = ..., mtu: _Optional[int] = ..., remotes: _Optional[_Iterable[str]] = ..., vpc_name: _Optional[str] = ...) -> None: ...

class Port(_message.Message):
    __slots__ = ("id", "vni", "workload", "interface_name", "mac", "mtu", "workload_kind", "ip_mode", "ip_address", "routes", "restart_epoch", "sandbox", "tap", "dhcp_options", "port_security", "allowed_addresses")
    ID_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_KIND_FIELD_NUMBER: _ClassVar[int]
    IP_MODE_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    RESTART_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    TAP_FIELD_NUMBER: _ClassVar[int]
    DHCP_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PORT_SECURITY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    vni: int
    workload: str
    interface_name: str
    mac: str
    mtu: int
    workload_kind: str
    ip_mode: str
    ip_address: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    restart_epoch: int
    sandbox: str
    tap: bool
    dhcp_options: str
    port_security: bool
    allowed_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., vni: _Optional[int] = ..., workload: _Optional[str] = ..., interface_name: _Optional[str] = ..., mac: _Optional[str] = ..., mtu: _Optional[int] = ..., workload_kind: _Optional[str] = ..., ip_mode: _Optional[str] = ..., ip_address: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., restart_epoch: _Optional[int] = ..., sandbox: _Optional[str] = ..., tap: _Optional[bool] = ..., dhcp_options: _Optional[str] = ..., port_security: _Optional[bool] = ..., allowed_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("mac", "ip")
    MAC_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    mac: str
    ip: str
    def __init__(self, mac: _Optional[str] = ..., ip: _Optional[str] = ...) -> None: ...

class DhcpServer(_message.Message):
    __slots__ = ("vni", "server_ip", "range_start", "range_end", "lease_time", "gateway", "dns_servers", "reservations", "routes", "mtu", "clients")
    VNI_FIELD_NUMBER: _ClassVar[int]
    SERVER_IP_FIELD_NUMBER: _ClassVar[int]
    RANGE_START_FIELD_NUMBER: _ClassVar[int]
    RANGE_END_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    DNS_SERVERS_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    vni: int
    server_ip: str
    range_start: str
    range_end: str
    lease_time: int
    gateway: str
    dns_servers: _containers.RepeatedScalarFieldContainer[str]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    mtu: int
    clients: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vni: _Optional[int] = ..., server_ip: _Optional[str] = ..., range_start: _Optional[str] = ..., range_end: _Optional[str] = ..., lease_time: _Optional[int] = ..., gateway: _Optional[str] = ..., dns_servers: _Optional[_Iterable[str]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., mtu: _Optional[int] = ..., clients: _Optional[_Iterable[str]] = ...) -> None: ...

class BgpPeer(_message.Message):
    __slots__ = ("local_asn", "peer_asn", "local_ip", "peer_ip", "advertised", "md5_key")
    LOCAL_ASN_FIELD_NUMBER: _ClassVar[int]
    PEER_ASN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_IP_FIELD_NUMBER: _ClassVar[int]
    PEER_IP_FIELD_NUMBER: _ClassVar[int]
    ADVERTISED_FIELD_NUMBER: _ClassVar[int]
    MD5_KEY_FIELD_NUMBER: _ClassVar[int]
    local_asn: int
    peer_asn: int
    local_ip: str
    peer_ip: str
    advertised: _containers.RepeatedScalarFieldContainer[str]
    md5_key: str
    def __init__(self, local_asn: _Optional[int] = ..., peer_asn: _Optional[int] = ..., local_ip: _Optional[str] = ..., peer_ip: _Optional[str] = ..., advertised: _Optional[_Iterable[str]] = ..., md5_key: _Optional[str] = ...) -> None: ...

class EdgeRouter(_message.Message):
    __slots__ = ("id", "vni", "mode", "handoff", "bandwidth_mbps", "mtu", "vlan", "gateway_ip", "bgp", "circuit_key", "secret_digest")
    ID_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MBPS_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    VLAN_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_IP_FIELD_NUMBER: _ClassVar[int]
    BGP_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_KEY_FIELD_NUMBER: _ClassVar[int]
    SECRET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    vni: int
    mode: str
    handoff: str
    bandwidth_mbps: int
    mtu: int
    vlan: int
    gateway_ip: str
    bgp: BgpPeer
    circuit_key: str
    secret_digest: str
    def __init__(self, id: _Optional[str] = ..., vni: _Optional[int] = ..., mode: _Optional[str] = ..., handoff: _Optional[str] = ..., bandwidth_mbps: _Optional[int] = ..., mtu: _Optional[int] = ..., vlan: _Optional[int] = ..., gateway_ip: _Optional[str] = ..., bgp: _Optional[_Union[BgpPeer, _Mapping]] = ..., circuit_key: _Optional[str] = ..., secret_digest: _Optional[str] = ...) -> None: ...

class VpnGateway(_message.Message):
    __slots__ = ("id", "vni", "gateway_ip", "outside_ip", "outside", "peer_address", "local_cidrs", "remote_cidrs", "ike_proposal", "esp_proposal", "ike_lifetime", "esp_lifetime", "dpd_interval", "dpd_timeout", "mtu", "peer_id", "outside_gateway", "psk", "secret_digest")
    ID_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_IP_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_IP_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LOCAL_CIDRS_FIELD_NUMBER: _ClassVar[int]
    REMOTE_CIDRS_FIELD_NUMBER: _ClassVar[int]
    IKE_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    ESP_PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    IKE_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    ESP_LIFETIME_FIELD_NUMBER: _ClassVar[int]
    DPD_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    DPD_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_GATEWAY_FIELD_NUMBER: _ClassVar[int]
    PSK_FIELD_NUMBER: _ClassVar[int]
    SECRET_DIGEST_FIELD_NUMBER: _ClassVar[int]
    id: str
    vni: int
    gateway_ip: str
    outside_ip: str
    outside: str
    peer_address: str
    local_cidrs: _containers.RepeatedScalarFieldContainer[str]
    remote_cidrs: _containers.RepeatedScalarFieldContainer[str]
    ike_proposal: str
    esp_proposal: str
    ike_lifetime: int
    esp_lifetime: int
    dpd_interval: int
    dpd_timeout: int
    mtu: int
    peer_id: str
    outside_gateway: str
    psk: str
    secret_digest: str
    def __init__(self, id: _Optional[str] = ..., vni: _Optional[int] = ..., gateway_ip: _Optional[str] = ..., outside_ip: _Optional[str] = ..., outside: _Optional[str] = ..., peer_address: _Optional[str] = ..., local_cidrs: _Optional[_Iterable[str]] = ..., remote_cidrs: _Optional[_Iterable[str]] = ..., ike_proposal: _Optional[str] = ..., esp_proposal: _Optional[str] = ..., ike_lifetime: _Optional[int] = ..., esp_lifetime: _Optional[int] = ..., dpd_interval: _Optional[int] = ..., dpd_timeout: _Optional[int] = ..., mtu: _Optional[int] = ..., peer_id: _Optional[str] = ..., outside_gateway: _Optional[str] = ..., psk: _Optional[str] = ..., secret_digest: _Optional[str] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("id", "state", "detail", "learned", "reason", "path_mtu")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PATH_MTU_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    detail: str
    learned: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    path_mtu: int
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., detail: _Optional[str] = ..., learned: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., path_mtu: _Optional[int] = ...) -> None: ...

class HostConfig(_message.Message):
    __slots__ = ("host", "underlay_ip", "generation", "segments", "ports", "dhcp_servers", "labels", "edge_routers", "vpn_gateways", "observations")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HOST_FIELD_NUMBER: _ClassVar[int]
    UNDERLAY_IP_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    DHCP_SERVERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EDGE_ROUTERS_FIELD_NUMBER: _ClassVar[int]
    VPN_GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    host: str
    underlay_ip: str
    generation: int
    segments: _containers.RepeatedCompositeFieldContainer[Segment]
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    dhcp_servers: _containers.RepeatedCompositeFieldContainer[DhcpServer]
    labels: _containers.ScalarMap[str, str]
    edge_routers: _containers.RepeatedCompositeFieldContainer[EdgeRouter]
    vpn_gateways: _containers.RepeatedCompositeFieldContainer[VpnGateway]
    observations: _containers.RepeatedCompositeFieldContainer[Observation]
    def __init__(self, host: _Optional[str] = ..., underlay_ip: _Optional[str] = ..., generation: _Optional[int] = ..., segments: _Optional[_Iterable[_Union[Segment, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., dhcp_servers: _Optional[_Iterable[_Union[DhcpServer, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., edge_routers: _Optional[_Iterable[_Union[EdgeRouter, _Mapping]]] = ..., vpn_gateways: _Optional[_Iterable[_Union[VpnGateway, _Mapping]]] = ..., observations: _Optional[_Iterable[_Union[Observation, _Mapping]]] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("verb", "path", "detail")
    VERB_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    verb: str
    path: str
    detail: str
    def __init__(self, verb: _Optional[str] = ..., path: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("path", "reason")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    path: str
    reason: str
    def __init__(self, path: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: HostConfig
    def __init__(self, config: _Optional[_Union[HostConfig, _Mapping]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("status", "actions", "failures", "actual", "accepted_generation", "seconds")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[PushResponse.Status]
        CONVERGED: _ClassVar[PushResponse.Status]
        FAILED: _ClassVar[PushResponse.Status]
        REJECTED: _ClassVar[PushResponse.Status]
        STALE: _ClassVar[PushResponse.Status]
    STATUS_UNSPECIFIED: PushResponse.Status
    CONVERGED: PushResponse.Status
    FAILED: PushResponse.Status
    REJECTED: PushResponse.Status
    STALE: PushResponse.Status
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    status: PushResponse.Status
    actions: _containers.RepeatedCompositeFieldContainer[Action]
    failures: _containers.RepeatedCompositeFieldContainer[Failure]
    actual: HostConfig
    accepted_generation: int
    seconds: float
    def __init__(self, status: _Optional[_Union[PushResponse.Status, str]] = ..., actions: _Optional[_Iterable[_Union[Action, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[Failure, _Mapping]]] = ..., actual: _Optional[_Union[HostConfig, _Mapping]] = ..., accepted_generation: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("desired", "actual", "accepted_generation")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    desired: HostConfig
    actual: HostConfig
    accepted_generation: int
    def __init__(self, desired: _Optional[_Union[HostConfig, _Mapping]] = ..., actual: _Optional[_Union[HostConfig, _Mapping]] = ..., accepted_generation: _Optional[int] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("host", "api_version", "driver", "accepted_generation", "converged_generation", "converging", "last_converge_ok", "last_failures", "last_converge_unix", "last_converge_seconds", "uptime_seconds", "pid")
    HOST_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRIVER_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONVERGING_FIELD_NUMBER: _ClassVar[int]
    LAST_CONVERGE_OK_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_CONVERGE_UNIX_FIELD_NUMBER: _ClassVar[int]
    LAST_CONVERGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    host: str
    api_version: str
    driver: str
    accepted_generation: int
    converged_generation: int
    converging: bool
    last_converge_ok: bool
    last_failures: _containers.RepeatedCompositeFieldContainer[Failure]
    last_converge_unix: float
    last_converge_seconds: float
    uptime_seconds: float
    pid: int
    def __init__(self, host: _Optional[str] = ..., api_version: _Optional[str] = ..., driver: _Optional[str] = ..., accepted_generation: _Optional[int] = ..., converged_generation: _Optional[int] = ..., converging: _Optional[bool] = ..., last_converge_ok: _Optional[bool] = ..., last_failures: _Optional[_Iterable[_Union[Failure, _Mapping]]] = ..., last_converge_unix: _Optional[float] = ..., last_converge_seconds: _Optional[float] = ..., uptime_seconds: _Optional[float] = ..., pid: _Optional[int] = ...) -> None: ...
