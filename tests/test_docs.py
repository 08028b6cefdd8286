"""The documentation agrees with the code and with itself: the generated settings table is current,
and every relative link in the README, the model card, the changelog and docs/ leads somewhere."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [ROOT / "README.md", ROOT / "MODEL_CARD.md", ROOT / "CHANGELOG.md", ROOT / "campaign" / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)


def settings_table_module():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "docs" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_table_is_current():
    module = settings_table_module()
    page = module.PAGE.read_text(encoding="utf-8")
    found = module.page_block(page)
    assert found is not None, f"{module.PAGE.relative_to(ROOT)} lost its settings-table markers"
    assert found == module.block(), (
        f"the settings table in {module.PAGE.relative_to(ROOT)} is out of date with service/settings.py: "
        f"run `{module.COMMAND}`"
    )


def test_settings_table_has_every_setting():
    module = settings_table_module()
    table = module.table()
    for name in module.Settings.model_fields:
        assert f"`REDSEG_{name.upper()}`" in table


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where link-like text is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    found: set[str] = set(_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    return _LINK.findall(prose(page.read_text(encoding="utf-8")))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        if path_part and not resolved.exists():
            broken.append(f"{target}: no such file or folder")
            continue
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
            continue
        if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            broken.append(f"{target}: no heading or anchor '#{fragment}' in {resolved.relative_to(ROOT)}")
    return broken


def test_pages_exist():
    assert (ROOT / "docs" / "api.md") in PAGES
    for page in PAGES:
        assert page.is_file(), page


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    assert links(page) or page.name == "CHANGELOG.md", f"{page.relative_to(ROOT)} has no links at all: is the pattern broken?"
    assert not broken_links(page), f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(broken_links(page))


def test_readme_links_every_docs_page():
    readme = set(links(ROOT / "README.md"))
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"


def test_slug_matches_github():
    assert slug("POST /segment: the request") == "post-segment-the-request"
    assert slug("The default model (full width): `checkpoints/redseg-default.safetensors`") == (
        "the-default-model-full-width-checkpointsredseg-defaultsafetensors"
    )
    assert slug("bf16 against fp32") == "bf16-against-fp32"


_CODE_PATH = re.compile(r"(?<![\w./-])((?:model|service|training|tests|bench)/[\w/-]*(?:\.py|/))")


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "CHANGELOG.md"], ids=lambda page: str(page.relative_to(ROOT)))
def test_named_code_paths_exist(page: Path):
    """Every module or code folder a reference page names (link or not) exists; the changelog may name old ones."""
    text = page.read_text(encoding="utf-8")
    missing = sorted({path for path in _CODE_PATH.findall(text) if not (ROOT / path).exists() and not (page.parent / path).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names code paths that do not exist: {missing}"
