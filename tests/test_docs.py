"""README.md and docs/: the model tables are the cards' (as `python -m export.report` prints them), the serving
tables are the saved benchmark's, int8 rows name only shipped models, and the user documentation speaks of the
product, not of how it was made."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import zoo
from bench.tables import decode_table, ray_table, serving_table
from export.report import carplane_table, model_table, robustness_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _linked(table: str) -> str:
    """The model table as the README shows it: each model name links the model's README."""
    return re.sub(r"^\| `([^`]+)` \|", lambda m: f"| [`{m.group(1)}`](zoo/models/{m.group(1)}/README.md) |",
                  table, flags=re.M)


#: Each table printed by export.report, the file that shows it, and how that file shows it.
SHOWN = [
    ("model table", model_table, README, _linked),
    ("robustness table", robustness_table, ROOT / "docs" / "findings.md", lambda t: t),
    ("car/plane table", carplane_table, ROOT / "docs" / "findings.md", lambda t: t),
]


@pytest.mark.parametrize("what, make, path, shown", SHOWN, ids=[s[0] for s in SHOWN])
def test_the_cards_tables_appear_verbatim(what, make, path, shown):
    table = make()
    assert table, f"the cards give no {what}"
    assert shown(table) in path.read_text(), f"{path.name}: its {what} differs from `python -m export.report`"


@pytest.mark.parametrize("make", [decode_table, serving_table, ray_table], ids=lambda make: make.__name__)
def test_the_scale_benchmark_tables_appear_verbatim(make):
    report = json.loads((ROOT / "docs" / "bench-scale-cpu.json").read_text())
    assert make(report) in (ROOT / "docs" / "performance.md").read_text(), (
        "docs/performance.md differs from `python -m bench.scale --from-json docs/bench-scale-cpu.json`")


def table_rows(text: str) -> list[list[str]]:
    """Every row of every markdown table (separator lines left out), as stripped cells."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines()
            if line.lstrip().startswith("|") and not re.fullmatch(r"[\s|:-]+", line)]


def model_name(cell: str) -> str:
    """A table's first cell as a model name: `cnn`, [`cnn`](...), deformable-cnn\\* all give the name."""
    return re.sub(r"\]\(.*?\)|[`\[\]*\\]", "", cell).strip()


def unshipped_models(text: str) -> list[str]:
    """Models that tables of the text list, but zoo does not ship: any `NAME-int8` in a row, and the first cell
    of every row of a table headed `model`."""
    shipped, wrong, in_model_table = set(zoo.list()), [], False
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            in_model_table = False
            continue
        if re.fullmatch(r"[\s|:-]+", line):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "model":
            in_model_table = True
            continue
        names = set(re.findall(r"\b[a-z0-9][a-z0-9.-]*-int8\b", line))
        if in_model_table:
            names.add(model_name(cells[0]))
        wrong += sorted(names - shipped)
    return wrong


@pytest.mark.parametrize("path", [ROOT / "docs" / "training.md", ROOT / "docs" / "performance.md", README],
                         ids=lambda p: p.name)
def test_int8_and_model_rows_name_only_shipped_models(path):
    assert unshipped_models(path.read_text()) == []


def test_a_table_listing_an_unshipped_variant_fails_the_check():
    shipped = "| model | shipped |\n| --- | --- |\n| `carplane-joint` | yes: `carplane-joint-int8` |\n"
    assert unshipped_models(shipped) == []
    assert unshipped_models(shipped + "| cnn-int8 | 0.15/0.22 |\n") == ["cnn-int8"]
    assert unshipped_models("| engine | x |\n| --- | --- |\n| zoo | `cnn-int8`: yes |\n") == ["cnn-int8"]


#: Words about how the project was made, not about the product.
MAKING_OF = re.compile(r"\bissues?\b|\b(?:this|that|an earlier|earlier|previous|next|no) sessions?\b|"
                       r"\bhelpers?\b|\blent\b|\bborrowed\b|team's|device tool|the report's Q\d", re.I)


@pytest.mark.parametrize("path", [README, *DOCS, ROOT / "app.py", ROOT / "zoo" / "app.py", ROOT / "export" / "report.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_documentation_is_about_the_product(path):
    found = [(n, m.group(0)) for n, line in enumerate(path.read_text().splitlines(), 1)
             if (m := MAKING_OF.search(line))]
    assert found == [], f"{path.name}: {found}"


def test_readme_keeps_the_install_and_test_commands_and_links_every_doc():
    text = README.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert 'pip install -e ".[all]"' in commands and "python -m pytest" in commands
    for doc in DOCS:
        assert f"(docs/{doc.name})" in text, f"README.md does not link docs/{doc.name}"
    assert len(text.splitlines()) <= 200
