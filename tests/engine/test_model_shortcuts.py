"""The models' shortcuts. Objects read back from our own store (model.from_store): a flat document
that a model dumped is the same object validation makes, without validating again; any other
document is validated as input is (and refused the same way). copy_with is model_copy."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError

from l2vpc.engine.errors import ValidationError
from l2vpc.engine.kinds.context import dump
from l2vpc.engine.model import VPC, Attachment, copy_with, from_store, parse
from l2vpc.engine.store import open_store

ATTACHMENTS = st.builds(
    lambda n, mode, kind, sec, owner, host: {
        "id": f"att-{n:012x}", "vpc_id": "vpc-00000001", "workload": f"w{n}", "workload_kind": kind,
        "host": host, "ip_mode": mode, "ip_address": None if mode == "none" else f"10.0.{n % 250}.{n % 200 + 2}/16",
        "mac_address": f"02:00:00:00:{n % 256:02x}:01", "interface_name": f"net{n % 10 + 1}", "owner": owner,
        "port_security": sec and mode != "none",
        "allowed_addresses": ["10.9.0.0/24"] if sec and mode != "none" else [],
    },
    st.integers(0, 10**6), st.sampled_from(["none", "static", "dhcp"]), st.sampled_from(["virtual_server", "pod"]),
    st.booleans(), st.sampled_from([None, "pod:h1/abc"]), st.sampled_from([None, "h1"]))


@settings(max_examples=300, deadline=None)
@given(ATTACHMENTS)
def test_a_stored_attachment_is_the_validated_one(data: dict) -> None:
    stored = json.loads(json.dumps(dump(parse(Attachment, data))))  # as the store gives it back
    fast, validated = from_store(Attachment, stored), Attachment.model_validate(stored)
    assert fast == validated and hash(fast) == hash(validated) and repr(fast) == repr(validated)
    assert fast.model_dump() == validated.model_dump() and fast.model_fields_set == validated.model_fields_set
    assert type(fast.allowed_addresses) is tuple
    with pytest.raises(PydanticValidationError):
        fast.host = "h2"  # frozen, like every model
    assert fast.model_copy(update={"host": "h2"}).host == "h2"


def test_key_order_of_the_document_does_not_matter() -> None:
    stored = dump(parse(Attachment, {"id": "att-000000000001", "vpc_id": "vpc-1", "workload": "w1"}))
    backwards = dict(reversed(list(stored.items())))  # PostgreSQL's jsonb reorders keys
    assert repr(from_store(Attachment, backwards)) == repr(Attachment.model_validate(stored))


# Values of the right shape are trusted (the store holds only what a model dumped); a document of
# any other shape is validated, whatever it holds.
@pytest.mark.parametrize("change", [
    {"allowed_addresses": "10.0.0.1"},
    {"allowed_addresses": [5]},
    {"port_security": {"nested": 1}},
    {"extra_field": 1},
])
def test_any_other_document_is_validated(change: dict) -> None:
    stored = {**dump(parse(Attachment, {"id": "att-000000000001", "vpc_id": "vpc-1", "workload": "w1"})), **change}
    with pytest.raises(PydanticValidationError) as fast:
        from_store(Attachment, stored)
    with pytest.raises(PydanticValidationError) as validated:
        Attachment.model_validate(stored)
    assert str(fast.value) == str(validated.value)


def test_a_document_missing_a_field_gets_its_default_by_validation() -> None:
    stored = dump(parse(Attachment, {"id": "att-000000000001", "vpc_id": "vpc-1", "workload": "w1"}))
    del stored["port_security"], stored["allowed_addresses"]  # written before the fields existed
    obj = from_store(Attachment, stored)
    assert obj.port_security is False and obj.allowed_addresses == ()


def test_other_models_are_validated() -> None:
    with pytest.raises(PydanticValidationError):
        from_store(VPC, {"name": "x", "scope": "single_region"})  # no region: VPC's own rule


def test_the_engine_reads_stored_attachments_back_equal(tmp_path) -> None:
    from l2vpc.engine.api import Engine

    with open_store(str(tmp_path / "s.db")) as store:
        engine = Engine(store)
        engine.register_host({"name": "h1", "region": "r1", "underlay_ip": "10.255.0.1"})
        vpc = engine.create("vpc", {"name": "v1", "region": "r1", "cidr": "10.0.0.0/24"})
        made = engine.create("attachment", {"vpc_id": vpc.id, "workload": "w1", "ip_mode": "static",
                                            "ip_address": "10.0.0.5/24", "port_security": True,
                                            "allowed_addresses": ["10.0.0.64/26"]})
        read = engine.topology().attachments[made.id]
        assert read == made.model_copy(update={"status": read.status})
        assert read.allowed_addresses == ("10.0.0.64/26",)
        with pytest.raises(ValidationError):
            engine.create("attachment", {"vpc_id": vpc.id, "workload": "w1", "ip_mode": "static",
                                         "ip_address": "10.0.0.5/24"})


@settings(max_examples=200, deadline=None)
@given(ATTACHMENTS, st.sampled_from([{}, {"host": "h9"}, {"interface_name": "net3", "mac_address": "02:00:00:00:09:09"},
                                     {"id": "obj-00000001", "vpc_id": "web"}]))
def test_copy_with_is_model_copy(data: dict, update: dict) -> None:
    obj = parse(Attachment, data)
    fast, slow = copy_with(obj, update), obj.model_copy(update=update)
    assert fast == slow and repr(fast) == repr(slow) and hash(fast) == hash(slow)
    assert fast.model_fields_set == slow.model_fields_set and fast.model_dump() == slow.model_dump()
    assert obj == parse(Attachment, data)  # the original untouched
    vpc = VPC(name="v1", region="r0", cidr="10.0.0.0/24", dhcp={"range_start": "10.0.0.10", "range_end": "10.0.0.20"})
    assert copy_with(vpc, {"id": "vpc-0001"}) == vpc.model_copy(update={"id": "vpc-0001"})
    assert copy_with(vpc, {"id": "vpc-0001"}).dhcp is vpc.dhcp  # shallow, as model_copy
