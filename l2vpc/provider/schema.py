"""Schemas: the attributes of a provider block, a resource or a data source.

Build attributes with the small constructors below and put them in a `Schema`:

    Schema(
        description="A Layer 2 VPC.",
        attributes={
            "id": string(computed=True, plan_modifiers=[use_state_for_unknown()]),
            "name": string(required=True, validators=[length_between(1, 63)]),
            "mtu": integer(optional=True, default=1500, validators=[between(576, 9000)]),
            "token": string(optional=True, sensitive=True),
            "secret_wo": string(optional=True, write_only=True),
            "dhcp": single_nested({"lease_time": integer(optional=True, default=3600)}, optional=True),
            "tags": map_of(STRING, optional=True),
        },
    )

Flags follow Terraform: exactly one of `required`, `optional`, `computed`, or `optional` plus
`computed` (the provider fills the value when the configuration leaves it out). A `default`
makes the attribute optional+computed. `sensitive` hides the value in plan output;
`write_only` values reach the provider during apply but are never stored in state (they need
Terraform >= 1.11). Nested attributes are protocol-6 nested attributes (`x = { ... }`), with
`single`, `list`, `set` or `map` nesting, not blocks.

Mistakes in a schema are programming errors and raise `SchemaError` when the module loads.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from l2vpc.provider.codec import CodecError, encode_msgpack
from l2vpc.provider.cty import (
    BOOL,
    NUMBER,
    STRING,
    CtyType,
    ListType,
    MapType,
    ObjectType,
    SetType,
    type_to_json_bytes,
)
from l2vpc.provider.validators import Validator, whole_number

if TYPE_CHECKING:
    from typing import TypedDict

    from typing_extensions import Unpack

    from l2vpc.provider.modifiers import PlanModifier

    class Flags(TypedDict, total=False):
        """Options every attribute constructor accepts."""

        required: bool
        optional: bool
        computed: bool
        sensitive: bool
        write_only: bool
        description: str
        deprecated: str
        default: Any
        validators: Sequence[Validator]
        plan_modifiers: Sequence[PlanModifier]


_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
# Terraform gives these meta-arguments their own meaning inside resource blocks.
_RESERVED_TOP_LEVEL = frozenset(
    {"count", "depends_on", "for_each", "lifecycle", "provider", "provisioner", "connection"}
)


class SchemaError(ValueError):
    """A schema definition is inconsistent (a bug in the provider's code)."""


class Nesting(enum.IntEnum):
    # Values are the protocol's Schema.Object.NestingMode numbers.
    SINGLE = 1
    LIST = 2
    SET = 3
    MAP = 4


_NO_DEFAULT: Any = object()


@dataclass(frozen=True, eq=False)
class NestedObject:
    nesting: Nesting
    attributes: Mapping[str, Attribute]

    @cached_property
    def object_type(self) -> ObjectType:
        return ObjectType.of({name: a.value_type for name, a in self.attributes.items()})


@dataclass(frozen=True, eq=False)
class Attribute:
    """One attribute; build it with `string()`, `integer()`, `single_nested()`, ..."""

    type: CtyType | None = None
    nested: NestedObject | None = None
    required: bool = False
    optional: bool = False
    computed: bool = False
    sensitive: bool = False
    write_only: bool = False
    description: str = ""
    deprecated: str = ""
    default: Any = _NO_DEFAULT
    validators: tuple[Validator, ...] = ()
    plan_modifiers: tuple[PlanModifier, ...] = ()

    def __post_init__(self) -> None:
        if (self.type is None) == (self.nested is None):
            raise SchemaError("an attribute has either a type or nested attributes")
        if self.required and (self.optional or self.computed):
            raise SchemaError("a required attribute cannot also be optional or computed")
        if not (self.required or self.optional or self.computed):
            raise SchemaError("an attribute must be required, optional or computed")
        if self.write_only:
            if self.computed:
                raise SchemaError("a write-only attribute cannot be computed")
            if self.nested is not None:
                raise SchemaError(
                    "write-only applies to attributes inside a nested object, not to the object"
                )
        if self.has_default:
            if not (self.optional and self.computed):
                raise SchemaError("an attribute with a default must be optional and computed")
            try:
                encode_msgpack(self.default, self.value_type)
            except (CodecError, TypeError, ValueError) as e:
                raise SchemaError(f"default does not fit the attribute's type: {e}") from None

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    @cached_property
    def value_type(self) -> CtyType:
        if self.type is not None:
            return self.type
        assert self.nested is not None
        t = self.nested.object_type
        nesting = self.nested.nesting
        if nesting is Nesting.SINGLE:
            return t
        if nesting is Nesting.LIST:
            return ListType(t)
        if nesting is Nesting.SET:
            return SetType(t)
        return MapType(t)


def _check_names(attributes: Mapping[str, Attribute], top_level: bool) -> None:
    for name in attributes:
        if not _NAME_RE.match(name):
            raise SchemaError(f"attribute name {name!r}: use lowercase letters, digits and _")
        if top_level and name in _RESERVED_TOP_LEVEL:
            raise SchemaError(f"attribute name {name!r} is reserved by Terraform")
    for a in attributes.values():
        if a.nested is not None:
            _check_names(a.nested.attributes, top_level=False)


@dataclass(frozen=True, eq=False)
class Schema:
    attributes: Mapping[str, Attribute]
    description: str = ""
    version: int = 0
    deprecated: str = ""

    def __post_init__(self) -> None:
        _check_names(self.attributes, top_level=True)

    @cached_property
    def type(self) -> ObjectType:
        return ObjectType.of({name: a.value_type for name, a in self.attributes.items()})

    def has_write_only(self) -> bool:
        return _any_write_only(self.attributes)


def _any_write_only(attributes: Mapping[str, Attribute]) -> bool:
    return any(
        a.write_only or (a.nested is not None and _any_write_only(a.nested.attributes))
        for a in attributes.values()
    )


# --------------------------------------------------------------------------------------------
# Constructors


def _attr(t: CtyType | None, nested: NestedObject | None, flags: Flags) -> Attribute:
    unknown = set(flags) - _FLAG_NAMES
    if unknown:
        raise SchemaError(f"unknown attribute options {sorted(unknown)}")
    default = flags.get("default", _NO_DEFAULT)
    optional, computed = flags.get("optional", False), flags.get("computed", False)
    if default is not _NO_DEFAULT:
        # A default only makes sense where the configuration may be silent and we fill in.
        optional = computed = True
    return Attribute(
        type=t,
        nested=nested,
        required=flags.get("required", False),
        optional=optional,
        computed=computed,
        sensitive=flags.get("sensitive", False),
        write_only=flags.get("write_only", False),
        description=flags.get("description", ""),
        deprecated=flags.get("deprecated", ""),
        default=default,
        validators=tuple(flags.get("validators", ())),
        plan_modifiers=tuple(flags.get("plan_modifiers", ())),
    )


_FLAG_NAMES = frozenset(
    {
        "required",
        "optional",
        "computed",
        "sensitive",
        "write_only",
        "description",
        "deprecated",
        "default",
        "validators",
        "plan_modifiers",
    }
)


def typed(t: CtyType, **flags: Unpack[Flags]) -> Attribute:
    """An attribute of any Terraform type (see cty for the type objects)."""
    return _attr(t, None, flags)


def string(**flags: Unpack[Flags]) -> Attribute:
    return _attr(STRING, None, flags)


def number(**flags: Unpack[Flags]) -> Attribute:
    return _attr(NUMBER, None, flags)


def integer(**flags: Unpack[Flags]) -> Attribute:
    """A number that must be whole (Terraform has one number type; this adds the check)."""
    flags["validators"] = (whole_number(), *flags.get("validators", ()))
    return _attr(NUMBER, None, flags)


def boolean(**flags: Unpack[Flags]) -> Attribute:
    return _attr(BOOL, None, flags)


def list_of(element: CtyType, **flags: Unpack[Flags]) -> Attribute:
    return _attr(ListType(element), None, flags)


def set_of(element: CtyType, **flags: Unpack[Flags]) -> Attribute:
    return _attr(SetType(element), None, flags)


def map_of(element: CtyType, **flags: Unpack[Flags]) -> Attribute:
    return _attr(MapType(element), None, flags)


def _nested(nesting: Nesting, attributes: Mapping[str, Attribute], flags: Flags) -> Attribute:
    return _attr(None, NestedObject(nesting, dict(attributes)), flags)


def single_nested(attributes: Mapping[str, Attribute], **flags: Unpack[Flags]) -> Attribute:
    """`x = { a = 1 }`; the Python value is a dict (or None)."""
    return _nested(Nesting.SINGLE, attributes, flags)


def list_nested(attributes: Mapping[str, Attribute], **flags: Unpack[Flags]) -> Attribute:
    """`x = [{ a = 1 }, ...]`; the Python value is a list of dicts."""
    return _nested(Nesting.LIST, attributes, flags)


def set_nested(attributes: Mapping[str, Attribute], **flags: Unpack[Flags]) -> Attribute:
    """Like list_nested, unordered; compare with cty.values_equal."""
    return _nested(Nesting.SET, attributes, flags)


def map_nested(attributes: Mapping[str, Attribute], **flags: Unpack[Flags]) -> Attribute:
    """`x = { key = { a = 1 } }`; the Python value is a dict of dicts."""
    return _nested(Nesting.MAP, attributes, flags)


# --------------------------------------------------------------------------------------------
# Protocol form


def schema_to_proto(schema: Schema, pb: Any) -> Any:
    """The tfplugin6 Schema message (pb is the generated tfplugin6_pb2 module)."""
    block = pb.Schema.Block(
        version=schema.version,
        attributes=_attributes_to_proto(schema.attributes, pb),
        description=schema.description,
        description_kind=pb.MARKDOWN,
        deprecated=bool(schema.deprecated),
        deprecation_message=schema.deprecated,
    )
    return pb.Schema(version=schema.version, block=block)


def _attributes_to_proto(attributes: Mapping[str, Attribute], pb: Any) -> list[Any]:
    out = []
    for name in sorted(attributes):
        a = attributes[name]
        msg = pb.Schema.Attribute(
            name=name,
            description=_describe(a),
            description_kind=pb.MARKDOWN,
            required=a.required,
            optional=a.optional,
            computed=a.computed,
            sensitive=a.sensitive,
            write_only=a.write_only,
            deprecated=bool(a.deprecated),
            deprecation_message=a.deprecated,
        )
        if a.nested is not None:
            msg.nested_type.CopyFrom(
                pb.Schema.Object(
                    attributes=_attributes_to_proto(a.nested.attributes, pb), nesting=int(a.nested.nesting)
                )
            )
        else:
            assert a.type is not None
            msg.type = type_to_json_bytes(a.type)
        out.append(msg)
    return out


def _describe(a: Attribute) -> str:
    """Description plus the rules Terraform cannot show by itself (defaults, validators)."""
    parts = [a.description.strip()] if a.description.strip() else []
    if a.has_default and a.default is not None:
        parts.append(
            f"Default: `{a.default!r}`." if not isinstance(a.default, str) else f'Default: `"{a.default}"`.'
        )
    for v in a.validators:
        text = getattr(v, "description", "")
        if text:
            parts.append(f"{text[0].upper()}{text[1:]}.")
    for m in a.plan_modifiers:
        text = getattr(m, "description", "")
        if text:
            parts.append(f"{text[0].upper()}{text[1:]}.")
    return " ".join(parts)
