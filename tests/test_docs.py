"""The docs stand alone (issue 14): every relative link in README.md and docs/*.md resolves to
a file inside the repository (and to a heading, when it names one), nothing points outside it,
and the commands docs/operators.md gives for an emergency stop work against the project's own
example VirtualService."""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from k8s_server import FakeKube

from analyzer.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_VS = REPO / "deploy" / "examples" / "istio-canary" / "virtualservice.yaml"

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(path: Path) -> list[str]:
    return _LINK.findall(prose(path.read_text(encoding="utf-8")))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {anchor(h) for h in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))}


def link_problem(source: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``source``) does not resolve inside the repository, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
        return None if target.startswith(("https://", "http://", "mailto:")) else (
            f"{target}: scheme not allowed")
    if target.startswith("/"):
        return f"{target}: absolute path (means nothing outside this checkout)"
    path_part, _, fragment = target.partition("#")
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not resolved.is_relative_to(REPO):
        return f"{target}: points outside the repository"
    if not resolved.exists():
        return f"{target}: {resolved.relative_to(REPO)} does not exist"
    if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
        return f"{target}: no heading #{fragment} in {resolved.relative_to(REPO)}"
    return None


def test_every_relative_link_resolves_inside_the_repository() -> None:
    assert len(DOCS) >= 8, DOCS
    problems = [f"{doc.relative_to(REPO)}: {problem}" for doc in DOCS for target in links(doc)
                if (problem := link_problem(doc, target)) is not None]
    assert not problems, "\n".join(problems)


def test_no_doc_refers_to_files_outside_the_repository() -> None:
    """Not even in prose: users of the repository do not have ../shared or DESIGN.md."""
    pattern = re.compile(r"\.\./shared|shared/|DESIGN(\.md| §)")
    found = [f"{doc.relative_to(REPO)}:{n}: {line.strip()}" for doc in DOCS
             for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
             if pattern.search(line)]
    assert not found, "\n".join(found)


def test_readme_links_every_doc_page() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    missing = [d.name for d in DOCS[1:] if d.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_link_checker_catches_mistakes(tmp_path: Path) -> None:
    doc = REPO / "docs" / "api.md"
    assert link_problem(doc, "../shared/DESIGN.md") is not None
    assert "outside" in (link_problem(doc, "../../x.md") or "")
    assert "does not exist" in (link_problem(doc, "nope.md") or "")
    assert "no heading" in (link_problem(doc, "config.md#no-such-heading") or "")
    assert "absolute" in (link_problem(doc, "/etc/passwd") or "")
    assert link_problem(doc, "config.md#judge") is None
    assert link_problem(doc, "#status-codes") is None
    assert anchor("6. Alerts") == "6-alerts"
    assert anchor("`POST /api/v1/judge` and `GET /api/v1/judge`") == (
        "post-apiv1judge-and-get-apiv1judge")
    assert links_in("see [a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n") == ["x.md"]


def links_in(text: str) -> list[str]:
    return _LINK.findall(prose(text))


# --------------------------------------------------------------------------------------------
# The emergency stop of docs/operators.md, against deploy/examples/istio-canary


def emergency_section() -> str:
    text = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    match = re.search(r"^## 5\. Stop a bad canary by hand$(.*?)^## ", text, re.M | re.S)
    assert match, "docs/operators.md has no section 5 'Stop a bad canary by hand'"
    return match.group(1)


def shell_commands(section: str) -> list[list[str]]:
    """The commands of the section's ```sh blocks: continuation lines joined, and a quoted
    argument may span lines (as a multi-line JSON patch does)."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", section, re.M | re.S):
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending += line + "\n"
            try:
                words = shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            if words:
                commands.append(words)
            pending = ""
        assert not pending, f"unterminated command: {pending}"
    return commands


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube()
    fake.serve_resource("networking.istio.io", "virtualservices", "VirtualService",
                        {"v1", "v1beta1"})
    fake.start()
    yield fake
    fake.stop()


def example_vs(canary: int) -> dict:
    """The example VirtualService as Argo Rollouts leaves it mid-rollout."""
    vs = yaml.safe_load(EXAMPLE_VS.read_text(encoding="utf-8"))
    vs["metadata"]["namespace"] = "shop"
    for destination in vs["spec"]["http"][0]["route"]:
        is_canary = destination["destination"]["host"] == "checkout-canary"
        destination["weight"] = canary if is_canary else 100 - canary
    return vs


def weights(vs: dict) -> dict[str, int]:
    return {d["destination"]["host"]: d["weight"] for d in vs["spec"]["http"][0]["route"]}


def test_documented_emergency_stop_works_on_the_example_virtualservice(
        kube: FakeKube, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (command,) = [c for c in shell_commands(emergency_section())
                  if c[:3] == ["canary-analyzer", "weights", "set"]]
    kube.put("networking.istio.io", "virtualservices", example_vs(canary=25))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    assert main([*command[1:], "--kubeconfig", str(kubeconfig)]) == 0, capsys.readouterr().err
    stopped = kube.get("networking.istio.io", "virtualservices", "shop", "checkout")
    assert weights(stopped) == {"checkout-stable": 100, "checkout-canary": 0}


def test_documented_kubectl_patch_sends_all_traffic_to_stable() -> None:
    (command,) = [c for c in shell_commands(emergency_section()) if c[:2] == ["kubectl", "-n"]]
    assert command[2:5] == ["shop", "patch", "virtualservice"] and command[5] == "checkout"
    assert command[command.index("--type") + 1] == "json"
    operations = json.loads(command[command.index("-p") + 1])
    vs = copy.deepcopy(example_vs(canary=25))
    for op in operations:
        assert op["op"] == "replace"
        *parents, last = op["path"].strip("/").split("/")
        node = vs
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = op["value"]
    assert weights(vs) == {"checkout-stable": 100, "checkout-canary": 0}
