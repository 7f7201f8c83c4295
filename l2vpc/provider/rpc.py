"""tfplugin6 RPCs: decode the request, call the framework (planning, applying), encode the response.

This is the only module that touches protobuf messages; resource code and the framework see
plain values. Every RPC returns a response (with diagnostics) instead of failing the call:
a gRPC error would reach the user as an opaque transport message. RPCs for features l2vpc does
not offer (ephemeral resources, functions, state stores, actions, list resources, moves) answer
with a clear "not supported" diagnostic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from l2vpc._proto import tfplugin6_pb2 as pb
from l2vpc.observability.logs import request_scope
from l2vpc.provider import applying, planning
from l2vpc.provider.codec import CodecError, decode_json, decode_msgpack, encode_msgpack
from l2vpc.provider.cty import CtyType
from l2vpc.provider.diagnostics import Diagnostics, path_to_proto, to_proto
from l2vpc.provider.framework import DataSource, Provider, Resource
from l2vpc.provider.schema import schema_to_proto

log = logging.getLogger("l2vpc.provider.rpc")

_NULL = b"\xc0"  # msgpack nil: the "no object" state
F = TypeVar("F", bound=Callable[..., Any])


def _decode(value: Any, t: CtyType, what: str) -> Any:
    """A DynamicValue to a Python value (msgpack preferred, JSON as the protocol's fallback)."""
    try:
        if value.msgpack:
            return decode_msgpack(value.msgpack, t)
        if value.json:
            return decode_json(value.json, t)
    except (CodecError, ValueError) as e:
        raise _ProtocolError(f"Terraform sent a {what} that does not match the schema: {e}") from None
    return None


def _encode(value: Any, t: CtyType) -> Any:
    return pb.DynamicValue(msgpack=encode_msgpack(value, t) if value is not None else _NULL)


class _ProtocolError(Exception):
    """A request we cannot make sense of (never caused by user input)."""


def _rpc(response: Any, field: str = "diagnostics") -> Callable[[F], F]:
    """Wrap an RPC so that no exception escapes: errors become diagnostics in `response`."""

    def wrap(method: F) -> F:
        def call(self: ProviderServicer, request: Any, context: Any) -> Any:
            # Each Terraform call gets a request id: the controller and agents log the change under it.
            with request_scope() as rid:
                return run(self, request, context, rid)

        def run(self: ProviderServicer, request: Any, context: Any, rid: str) -> Any:
            started = time.monotonic()
            try:
                return method(self, request, context)
            except _ProtocolError as e:
                diags = Diagnostics()
                diags.bug("Unexpected request from Terraform", str(e))
            except Exception as e:
                log.exception("%s failed", method.__name__)
                diags = Diagnostics()
                diags.bug(f"Unexpected error in {method.__name__}", f"{type(e).__name__}: {e}")
            finally:
                subject = getattr(request, "type_name", "")
                elapsed = (time.monotonic() - started) * 1000
                log.debug("%s%s: %.1f ms (request %s)", method.__name__, f" {subject}" if subject else "", elapsed,
                          rid)
            out = response()
            getattr(out, field).extend(to_proto(diags, pb))
            return out

        call.__name__ = method.__name__
        call.__doc__ = method.__doc__
        return call  # type: ignore[return-value]

    return wrap


def _unsupported(feature: str) -> Diagnostics:
    diags = Diagnostics()
    diags.error(
        f"{feature} not supported",
        f"The l2vpc provider does not offer {feature.lower()}; only the resources and data sources "
        "in its schema are available.",
    )
    return diags


class ProviderServicer:
    # Method names are the RPC names of the tfplugin6 Provider service.
    """The tfplugin6 Provider service over one Provider instance."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._schema_response: Any = None
        self._capabilities = pb.ServerCapabilities(plan_destroy=True, get_provider_schema_optional=True)

    # --- lookups -----------------------------------------------------------------------------

    def _resource(self, type_name: str) -> Resource:
        try:
            return self.provider.resources[type_name]
        except KeyError:
            raise _ProtocolError(f"unknown resource type {type_name!r}") from None

    def _data_source(self, type_name: str) -> DataSource:
        try:
            return self.provider.data_sources[type_name]
        except KeyError:
            raise _ProtocolError(f"unknown data source type {type_name!r}") from None

    # --- schema ------------------------------------------------------------------------------

    @_rpc(pb.GetMetadata.Response)
    def GetMetadata(self, request: Any, context: Any) -> Any:
        return pb.GetMetadata.Response(
            server_capabilities=self._capabilities,
            resources=[pb.GetMetadata.ResourceMetadata(type_name=n) for n in sorted(self.provider.resources)],
            data_sources=[
                pb.GetMetadata.DataSourceMetadata(type_name=n) for n in sorted(self.provider.data_sources)
            ],
        )

    @_rpc(pb.GetProviderSchema.Response)
    def GetProviderSchema(self, request: Any, context: Any) -> Any:
        if self._schema_response is None:
            # Built once per process: it never changes and Terraform asks for it often.
            response = pb.GetProviderSchema.Response(
                provider=schema_to_proto(self.provider.schema, pb), server_capabilities=self._capabilities
            )
            for name, r in self.provider.resources.items():
                response.resource_schemas[name].CopyFrom(schema_to_proto(r.schema, pb))
            for name, d in self.provider.data_sources.items():
                response.data_source_schemas[name].CopyFrom(schema_to_proto(d.schema, pb))
            self._schema_response = response
        return self._schema_response

    @_rpc(pb.GetResourceIdentitySchemas.Response)
    def GetResourceIdentitySchemas(self, request: Any, context: Any) -> Any:
        # Terraform asks every provider; "none" is a valid answer, not an error.
        return pb.GetResourceIdentitySchemas.Response()

    @_rpc(pb.GetFunctions.Response)
    def GetFunctions(self, request: Any, context: Any) -> Any:
        return pb.GetFunctions.Response()

    # --- provider ----------------------------------------------------------------------------

    @_rpc(pb.ValidateProviderConfig.Response)
    def ValidateProviderConfig(self, request: Any, context: Any) -> Any:
        config = _decode(request.config, self.provider.schema.type, "provider configuration") or {}
        diags = planning.validate_provider_config(self.provider, config)
        return pb.ValidateProviderConfig.Response(diagnostics=to_proto(diags, pb))

    @_rpc(pb.ConfigureProvider.Response)
    def ConfigureProvider(self, request: Any, context: Any) -> Any:
        config = _decode(request.config, self.provider.schema.type, "provider configuration") or {}
        diags = planning.configure_provider(self.provider, config, request.terraform_version)
        return pb.ConfigureProvider.Response(diagnostics=to_proto(diags, pb))

    def StopProvider(self, request: Any, context: Any) -> Any:
        # Must never block: it interrupts operations that may hold every worker thread.
        self.provider.stop_event.set()
        return pb.StopProvider.Response()

    # --- managed resources -------------------------------------------------------------------

    @_rpc(pb.ValidateResourceConfig.Response)
    def ValidateResourceConfig(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        config = _decode(request.config, resource.schema.type, "configuration") or {}
        allowed = request.client_capabilities.write_only_attributes_allowed
        diags = planning.validate_resource_config(resource, config, write_only_allowed=allowed)
        return pb.ValidateResourceConfig.Response(diagnostics=to_proto(diags, pb))

    @_rpc(pb.UpgradeResourceState.Response)
    def UpgradeResourceState(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        raw_state = request.raw_state
        if not raw_state.json:
            diags = Diagnostics()
            if raw_state.flatmap:
                diags.error(
                    "State too old",
                    f"{request.type_name} state is in the pre-0.12 flat format, which this provider never wrote.",
                )
                return pb.UpgradeResourceState.Response(diagnostics=to_proto(diags, pb))
            return pb.UpgradeResourceState.Response(upgraded_state=pb.DynamicValue(msgpack=_NULL))
        try:
            raw = json.loads(raw_state.json)
        except ValueError as e:
            raise _ProtocolError(f"stored state is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise _ProtocolError("stored state is not a JSON object")
        result = applying.upgrade_resource_state(resource, request.version, raw)
        response = pb.UpgradeResourceState.Response(diagnostics=to_proto(result.diags, pb))
        if result.state is not None:
            response.upgraded_state.CopyFrom(_encode(result.state, resource.schema.type))
        return response

    @_rpc(pb.ReadResource.Response)
    def ReadResource(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        t = resource.schema.type
        state = _decode(request.current_state, t, "state")
        if state is None:
            return pb.ReadResource.Response(new_state=pb.DynamicValue(msgpack=_NULL), private=request.private)
        result = applying.read_resource(resource, state)
        response = pb.ReadResource.Response(diagnostics=to_proto(result.diags, pb), private=request.private)
        if result.unchanged:
            # The very bytes Terraform sent: nothing for it to compare or to show as drift.
            response.new_state.CopyFrom(request.current_state)
        else:
            response.new_state.CopyFrom(_encode(result.state, t))
        return response

    @_rpc(pb.PlanResourceChange.Response)
    def PlanResourceChange(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        t = resource.schema.type
        prior = _decode(request.prior_state, t, "prior state")
        proposed = _decode(request.proposed_new_state, t, "proposed state")
        config = _decode(request.config, t, "configuration")
        result = planning.plan_resource_change(resource, prior, proposed, config)
        response = pb.PlanResourceChange.Response(
            diagnostics=to_proto(result.diags, pb),
            requires_replace=[path_to_proto(p, pb) for p in result.requires_replace],
            planned_private=request.prior_private,
        )
        if result.unchanged:
            response.planned_state.CopyFrom(request.prior_state)
        else:
            response.planned_state.CopyFrom(_encode(result.planned, t))
        return response

    @_rpc(pb.ApplyResourceChange.Response)
    def ApplyResourceChange(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        t = resource.schema.type
        prior = _decode(request.prior_state, t, "prior state")
        planned = _decode(request.planned_state, t, "planned state")
        config = _decode(request.config, t, "configuration")
        result = applying.apply_resource_change(resource, prior, planned, config)
        return pb.ApplyResourceChange.Response(
            new_state=_encode(result.state, t),
            diagnostics=to_proto(result.diags, pb),
            private=request.planned_private,
        )

    @_rpc(pb.ImportResourceState.Response)
    def ImportResourceState(self, request: Any, context: Any) -> Any:
        resource = self._resource(request.type_name)
        result = applying.import_resource_state(resource, request.id)
        response = pb.ImportResourceState.Response(diagnostics=to_proto(result.diags, pb))
        if result.state is not None and not result.diags.has_errors:
            response.imported_resources.append(
                pb.ImportResourceState.ImportedResource(
                    type_name=request.type_name, state=_encode(result.state, resource.schema.type)
                )
            )
        return response

    @_rpc(pb.MoveResourceState.Response)
    def MoveResourceState(self, request: Any, context: Any) -> Any:
        return pb.MoveResourceState.Response(
            diagnostics=to_proto(_unsupported("Moving resources between types"), pb)
        )

    @_rpc(pb.GenerateResourceConfig.Response)
    def GenerateResourceConfig(self, request: Any, context: Any) -> Any:
        return pb.GenerateResourceConfig.Response(
            diagnostics=to_proto(_unsupported("Generating configuration"), pb)
        )

    @_rpc(pb.UpgradeResourceIdentity.Response)
    def UpgradeResourceIdentity(self, request: Any, context: Any) -> Any:
        return pb.UpgradeResourceIdentity.Response(
            diagnostics=to_proto(_unsupported("Resource identity"), pb)
        )

    # --- data sources ------------------------------------------------------------------------

    @_rpc(pb.ValidateDataResourceConfig.Response)
    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        data_source = self._data_source(request.type_name)
        config = _decode(request.config, data_source.schema.type, "configuration") or {}
        diags = planning.validate_resource_config(data_source, config)
        return pb.ValidateDataResourceConfig.Response(diagnostics=to_proto(diags, pb))

    @_rpc(pb.ReadDataSource.Response)
    def ReadDataSource(self, request: Any, context: Any) -> Any:
        data_source = self._data_source(request.type_name)
        t = data_source.schema.type
        config = _decode(request.config, t, "configuration") or {}
        result = applying.read_data_source(data_source, config)
        return pb.ReadDataSource.Response(
            state=_encode(result.state, t), diagnostics=to_proto(result.diags, pb)
        )

    # --- features l2vpc does not offer ---------------------------------------------------------

    @_rpc(pb.ValidateEphemeralResourceConfig.Response)
    def ValidateEphemeralResourceConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateEphemeralResourceConfig.Response(
            diagnostics=to_proto(_unsupported("Ephemeral resources"), pb)
        )

    @_rpc(pb.OpenEphemeralResource.Response)
    def OpenEphemeralResource(self, request: Any, context: Any) -> Any:
        return pb.OpenEphemeralResource.Response(
            diagnostics=to_proto(_unsupported("Ephemeral resources"), pb)
        )

    @_rpc(pb.RenewEphemeralResource.Response)
    def RenewEphemeralResource(self, request: Any, context: Any) -> Any:
        return pb.RenewEphemeralResource.Response(
            diagnostics=to_proto(_unsupported("Ephemeral resources"), pb)
        )

    @_rpc(pb.CloseEphemeralResource.Response)
    def CloseEphemeralResource(self, request: Any, context: Any) -> Any:
        return pb.CloseEphemeralResource.Response(
            diagnostics=to_proto(_unsupported("Ephemeral resources"), pb)
        )

    def ListResource(self, request: Any, context: Any) -> Iterator[Any]:
        yield pb.ListResource.Event(diagnostic=to_proto(_unsupported("Listing resources"), pb))

    @_rpc(pb.ValidateListResourceConfig.Response)
    def ValidateListResourceConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateListResourceConfig.Response(
            diagnostics=to_proto(_unsupported("Listing resources"), pb)
        )

    def CallFunction(self, request: Any, context: Any) -> Any:
        text = f"The l2vpc provider has no function {request.name!r}."
        return pb.CallFunction.Response(error=pb.FunctionError(text=text))

    @_rpc(pb.ValidateStateStore.Response)
    def ValidateStateStoreConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateStateStore.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.ConfigureStateStore.Response)
    def ConfigureStateStore(self, request: Any, context: Any) -> Any:
        return pb.ConfigureStateStore.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    def ReadStateBytes(self, request: Any, context: Any) -> Iterator[Any]:
        yield pb.ReadStateBytes.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    def WriteStateBytes(self, request_iterator: Any, context: Any) -> Any:
        for _ in request_iterator:
            pass
        return pb.WriteStateBytes.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.LockState.Response)
    def LockState(self, request: Any, context: Any) -> Any:
        return pb.LockState.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.UnlockState.Response)
    def UnlockState(self, request: Any, context: Any) -> Any:
        return pb.UnlockState.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.GetStates.Response)
    def GetStates(self, request: Any, context: Any) -> Any:
        return pb.GetStates.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.DeleteState.Response)
    def DeleteState(self, request: Any, context: Any) -> Any:
        return pb.DeleteState.Response(diagnostics=to_proto(_unsupported("State storage"), pb))

    @_rpc(pb.PlanAction.Response)
    def PlanAction(self, request: Any, context: Any) -> Any:
        return pb.PlanAction.Response(diagnostics=to_proto(_unsupported("Actions"), pb))

    def InvokeAction(self, request: Any, context: Any) -> Iterator[Any]:
        completed = pb.InvokeAction.Event.Completed(diagnostics=to_proto(_unsupported("Actions"), pb))
        yield pb.InvokeAction.Event(completed=completed)

    @_rpc(pb.ValidateActionConfig.Response)
    def ValidateActionConfig(self, request: Any, context: Any) -> Any:
        return pb.ValidateActionConfig.Response(diagnostics=to_proto(_unsupported("Actions"), pb))
