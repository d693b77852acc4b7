"""The docs cannot drift from the code: every setting and command is documented, the generated
parts are current, and every link between the documents leads somewhere."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter import config, docgen

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCUMENTS = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def cog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cogapp", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_every_setting_has_a_meaning_and_every_meaning_a_setting():
    keys = {f"{section}.{key}" for section, key, _ in docgen.setting_keys()}
    assert keys, "no settings found in config.Settings"
    undocumented = sorted(keys - set(config.KEY_DOCS))
    assert not undocumented, f"add these keys to config.KEY_DOCS: {undocumented}"
    stale = sorted(set(config.KEY_DOCS) - keys)
    assert not stale, f"config.KEY_DOCS names keys that do not exist: {stale}"
    assert all(meaning.strip() for meaning in config.KEY_DOCS.values())


def test_every_source_option_and_secret_has_a_meaning():
    options = {option for kind in config.SOURCE_OPTIONS.values() for option in kind}
    assert options == set(config.SOURCE_OPTION_DOCS)
    variables = docgen.secret_variables()
    assert "NEWSLETTER_SECRET_KEY" in variables
    assert set(variables) == set(config.SECRET_DOCS)


def test_the_configuration_page_lists_every_key_with_its_default():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    sections = re.split(r"^### \[(\w+)\]$", page, flags=re.M)
    tables = dict(zip(sections[1::2], sections[2::2], strict=True))
    for section, key, default in docgen.setting_keys():
        assert section in tables, f"docs/configuration.md has no [{section}] table"
        row = re.search(rf"^\| `{key}` \| (.*?) \|", tables[section], flags=re.M)
        assert row, f"docs/configuration.md: [{section}] {key} is not documented"
        assert row.group(1) == docgen._cell(docgen._default(default))


def test_the_cli_page_has_every_command_and_its_help():
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    paths = [path for path, _command, _ctx in docgen.commands()]
    assert "newsletter campaign send" in paths and "newsletter users reset-2fa" in paths
    for path, command, ctx in docgen.commands():
        assert f"\n### {path}\n" in page, f"docs/cli.md: `{path}` is not documented"
        assert command.get_help(ctx) in page, f"docs/cli.md: the help of `{path}` is stale"


def test_the_generated_parts_are_current():
    result = cog("--check", *map(str, DOCUMENTS))
    assert result.returncode == 0, (
        f"generated docs are stale; run `make docs`\n{result.stdout}{result.stderr}"
    )


def test_the_check_notices_a_stale_part(tmp_path):
    stale = tmp_path / "cli.md"
    shutil.copy(DOCS / "cli.md", stale)
    text = stale.read_text(encoding="utf-8")
    stale.write_text(text.replace("Show this message and exit.", "Show help."), encoding="utf-8")
    result = cog("--check", str(stale))
    assert result.returncode != 0
    assert "cli.md" in result.stdout + result.stderr


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_every_link_between_the_documents_leads_somewhere(document):
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    for link in local:
        target, _, anchor = link.partition("#")
        path = (document.parent / target).resolve() if target else document
        assert path.exists(), f"{document.name}: link to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{document.name}: no heading #{anchor} in {target}"


def test_the_readme_opens_with_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    opening = "\n".join(readme.splitlines()[:20])
    assert "make run" in opening and "make test" in opening
    assert len(readme.splitlines()) < 250, "the README is the front door; move reference to docs/"
    for page in ("configuration.md", "cli.md", "operations.md", "development.md"):
        assert f"docs/{page}" in readme, f"the README does not lead to docs/{page}"


def test_the_module_map_names_every_module_and_only_modules_that_exist():
    """The map in docs/development.md: each module or package of src/newsletter, and no
    name that no longer is one."""
    text = (DOCS / "development.md").read_text(encoding="utf-8")
    block = text.split("src/newsletter/\n", 1)[1].split("```", 1)[0]
    named = set(re.findall(r"^  ([a-z_]+(?:\.py|/))", block, flags=re.M))
    package = ROOT / "src" / "newsletter"
    present = {p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
    present |= {
        p.name + "/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    assert sorted(present - named) == [], "modules missing from the map"
    assert sorted(named - present) == [], "the map names modules that do not exist"
