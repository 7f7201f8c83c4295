from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateRequest(_message.Message):
    __slots__ = ("kind", "data_json", "adopt", "adopt_key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    ADOPT_FIELD_NUMBER: _ClassVar[int]
    ADOPT_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    data_json: str
    adopt: bool
    adopt_key: str
    def __init__(self, kind: _Optional[str] = ..., data_json: _Optional[str] = ..., adopt: _Optional[bool] = ..., adopt_key: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "id", "confirm")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    confirm: bool
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., confirm: _Optional[bool] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("kind", "id", "data_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    data_json: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("kind", "data_json", "id", "replacing", "adopt", "adopt_key")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REPLACING_FIELD_NUMBER: _ClassVar[int]
    ADOPT_FIELD_NUMBER: _ClassVar[int]
    ADOPT_KEY_FIELD_NUMBER: _ClassVar[int]
    kind: str
    data_json: str
    id: str
    replacing: _containers.RepeatedScalarFieldContainer[str]
    adopt: bool
    adopt_key: str
    def __init__(self, kind: _Optional[str] = ..., data_json: _Optional[str] = ..., id: _Optional[str] = ..., replacing: _Optional[_Iterable[str]] = ..., adopt: _Optional[bool] = ..., adopt_key: _Optional[str] = ...) -> None: ...

class ObjectReply(_message.Message):
    __slots__ = ("kind", "id", "data_json")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    data_json: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., data_json: _Optional[str] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("objects",)
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    objects: _containers.RepeatedCompositeFieldContainer[ObjectReply]
    def __init__(self, objects: _Optional[_Iterable[_Union[ObjectReply, _Mapping]]] = ...) -> None: ...

class AttachedWorkloadsRequest(_message.Message):
    __slots__ = ("vpc_id",)
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    vpc_id: str
    def __init__(self, vpc_id: _Optional[str] = ...) -> None: ...

class AttachedWorkloadsReply(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workloads: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusDetailRequest(_message.Message):
    __slots__ = ("kind", "id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class StatusDetailReply(_message.Message):
    __slots__ = ("detail", "reason", "learned")
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    detail: str
    reason: str
    learned: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, detail: _Optional[str] = ..., reason: _Optional[str] = ..., learned: _Optional[_Iterable[str]] = ...) -> None: ...

class ListHostsRequest(_message.Message):
    __slots__ = ("region", "role")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    region: str
    role: str
    def __init__(self, region: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class ListHostsReply(_message.Message):
    __slots__ = ("hosts_json",)
    HOSTS_JSON_FIELD_NUMBER: _ClassVar[int]
    hosts_json: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hosts_json: _Optional[_Iterable[str]] = ...) -> None: ...

class RefreshRequest(_message.Message):
    __slots__ = ("hosts", "timeout_seconds")
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedScalarFieldContainer[str]
    timeout_seconds: float
    def __init__(self, hosts: _Optional[_Iterable[str]] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class RefreshReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConvergeRequest(_message.Message):
    __slots__ = ("timeout_seconds",)
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    timeout_seconds: float
    def __init__(self, timeout_seconds: _Optional[float] = ...) -> None: ...

class HostFailure(_message.Message):
    __slots__ = ("host", "step", "error", "code")
    HOST_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    host: str
    step: str
    error: str
    code: str
    def __init__(self, host: _Optional[str] = ..., step: _Optional[str] = ..., error: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class ConvergeEvent(_message.Message):
    __slots__ = ("host", "message", "done", "failures", "revision")
    HOST_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    host: str
    message: str
    done: bool
    failures: _containers.RepeatedCompositeFieldContainer[HostFailure]
    revision: int
    def __init__(self, host: _Optional[str] = ..., message: _Optional[str] = ..., done: _Optional[bool] = ..., failures: _Optional[_Iterable[_Union[HostFailure, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("host_json",)
    HOST_JSON_FIELD_NUMBER: _ClassVar[int]
    host_json: str
    def __init__(self, host_json: _Optional[str] = ...) -> None: ...

class RegisterReply(_message.Message):
    __slots__ = ("heartbeat_interval_seconds",)
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_seconds: float
    def __init__(self, heartbeat_interval_seconds: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("host", "accepted_generation", "converged_generation", "converging", "actual_digest")
    HOST_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    CONVERGING_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    host: str
    accepted_generation: int
    converged_generation: int
    converging: bool
    actual_digest: str
    def __init__(self, host: _Optional[str] = ..., accepted_generation: _Optional[int] = ..., converged_generation: _Optional[int] = ..., converging: _Optional[bool] = ..., actual_digest: _Optional[str] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("heartbeat_interval_seconds",)
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_seconds: float
    def __init__(self, heartbeat_interval_seconds: _Optional[float] = ...) -> None: ...

class AttachPodRequest(_message.Message):
    __slots__ = ("host", "vpc", "workload", "interface_name", "ip_address", "container_id")
    HOST_FIELD_NUMBER: _ClassVar[int]
    VPC_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    host: str
    vpc: str
    workload: str
    interface_name: str
    ip_address: str
    container_id: str
    def __init__(self, host: _Optional[str] = ..., vpc: _Optional[str] = ..., workload: _Optional[str] = ..., interface_name: _Optional[str] = ..., ip_address: _Optional[str] = ..., container_id: _Optional[str] = ...) -> None: ...

class AttachPodReply(_message.Message):
    __slots__ = ("attachment_json", "revision", "port_json")
    ATTACHMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PORT_JSON_FIELD_NUMBER: _ClassVar[int]
    attachment_json: str
    revision: int
    port_json: str
    def __init__(self, attachment_json: _Optional[str] = ..., revision: _Optional[int] = ..., port_json: _Optional[str] = ...) -> None: ...

class DetachPodRequest(_message.Message):
    __slots__ = ("host", "attachment_id")
    HOST_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    host: str
    attachment_id: str
    def __init__(self, host: _Optional[str] = ..., attachment_id: _Optional[str] = ...) -> None: ...

class DetachPodReply(_message.Message):
    __slots__ = ("deleted", "revision")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    revision: int
    def __init__(self, deleted: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostLiveness(_message.Message):
    __slots__ = ("name", "status", "last_seen_unix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_UNIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: str
    last_seen_unix: float
    def __init__(self, name: _Optional[str] = ..., status: _Optional[str] = ..., last_seen_unix: _Optional[float] = ...) -> None: ...

class ReconcileEvent(_message.Message):
    __slots__ = ("time_unix", "host", "what")
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    time_unix: float
    host: str
    what: str
    def __init__(self, time_unix: _Optional[float] = ..., host: _Optional[str] = ..., what: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("controller", "leader", "term", "desired_revision", "converged_revision", "hosts", "recent", "overlay")
    CONTROLLER_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REVISION_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_REVISION_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_FIELD_NUMBER: _ClassVar[int]
    controller: str
    leader: str
    term: int
    desired_revision: int
    converged_revision: int
    hosts: _containers.RepeatedCompositeFieldContainer[HostLiveness]
    recent: _containers.RepeatedCompositeFieldContainer[ReconcileEvent]
    overlay: _containers.RepeatedCompositeFieldContainer[OverlayPair]
    def __init__(self, controller: _Optional[str] = ..., leader: _Optional[str] = ..., term: _Optional[int] = ..., desired_revision: _Optional[int] = ..., converged_revision: _Optional[int] = ..., hosts: _Optional[_Iterable[_Union[HostLiveness, _Mapping]]] = ..., recent: _Optional[_Iterable[_Union[ReconcileEvent, _Mapping]]] = ..., overlay: _Optional[_Iterable[_Union[OverlayPair, _Mapping]]] = ...) -> None: ...

class OverlayPair(_message.Message):
    __slots__ = ("vpc", "vpc_id", "host", "peer_host", "peer_ip", "reason", "path_mtu", "needed_mtu", "detail")
    VPC_FIELD_NUMBER: _ClassVar[int]
    VPC_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PEER_HOST_FIELD_NUMBER: _ClassVar[int]
    PEER_IP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PATH_MTU_FIELD_NUMBER: _ClassVar[int]
    NEEDED_MTU_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    vpc: str
    vpc_id: str
    host: str
    peer_host: str
    peer_ip: str
    reason: str
    path_mtu: int
    needed_mtu: int
    detail: str
    def __init__(self, vpc: _Optional[str] = ..., vpc_id: _Optional[str] = ..., host: _Optional[str] = ..., peer_host: _Optional[str] = ..., peer_ip: _Optional[str] = ..., reason: _Optional[str] = ..., path_mtu: _Optional[int] = ..., needed_mtu: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
