"""`zoo predict NAME PATH...` over many images: files, folders, globs, the changer's CSV of pairs, an
unreadable file among good ones, JSON lines or CSV out, and --resume."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

import zoo
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
NAME = "cnn"
pytestmark = pytest.mark.skipif(not {NAME, "changer"} <= set(zoo.list()), reason="cnn and changer are not shipped")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of the example photos, one in a subfolder, and an unreadable .jpg among them."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    examples = sorted((ROOT / "zoo" / "examples" / "cifar10").glob("*.jpg"))
    for path in examples[:-1]:
        shutil.copyfile(path, folder / path.name)
    shutil.copyfile(examples[-1], folder / "more" / examples[-1].name)
    (folder / "more" / "broken.jpg").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not searched: not an image suffix")
    return folder


def rows_of(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    return [json.loads(line) for line in path.read_text().splitlines()]


def expected_labels(paths: list[Path]) -> dict[str, str]:
    model = zoo.load(NAME, device="cpu")
    return {str(path): model.predict(path).label for path in paths}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_folder_is_searched_recursively_and_a_bad_file_becomes_an_error_row(photos, tmp_path, suffix, capsys):
    out = tmp_path / f"results{suffix}"
    assert main(["predict", NAME, str(photos), "--out", str(out)]) == 1  # one input failed
    rows = rows_of(out)
    good = sorted(p for p in photos.rglob("*.jpg") if p.name != "broken.jpg")
    assert [row["path"] for row in rows] == sorted(str(p) for p in photos.rglob("*.jpg"))
    assert {row["path"]: row["label"] for row in rows if not row.get("error")} == expected_labels(good)
    broken = next(row for row in rows if row["path"].endswith("broken.jpg"))
    assert "not a readable image" in broken["error"] and not broken.get("label")
    assert f"{len(rows)} images, 1 errors" in capsys.readouterr().err


def test_files_and_globs_print_json_lines_and_exit_0_when_all_are_predicted(photos, capsys):
    first = sorted(photos.glob("*.jpg"))[0]
    assert main(["predict", NAME, str(first), str(photos / "more" / "*.jpg").replace("*.jpg", "[!b]*.jpg")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    paths = [first, *sorted((photos / "more").glob("[!b]*.jpg"))]
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    assert {row["path"]: row["label"] for row in rows} == expected_labels(paths)
    assert all(sum(row["probs"].values()) == pytest.approx(1.0) for row in rows)


def test_resume_skips_what_was_predicted_and_retries_errors(photos, tmp_path):
    out = tmp_path / "results.jsonl"
    main(["predict", NAME, str(photos), "--out", str(out)])
    first = rows_of(out)
    (photos / "more" / "broken.jpg").unlink()
    shutil.copyfile(sorted(photos.glob("*.jpg"))[0], photos / "more" / "broken.jpg")  # now readable
    assert main(["predict", NAME, str(photos), "--out", str(out), "--resume"]) == 0
    rows = rows_of(out)
    assert rows[:len(first)] == first and len(rows) == len(first) + 1
    assert rows[-1]["path"].endswith("broken.jpg") and "label" in rows[-1]


def test_the_changer_reads_pairs_from_a_csv(tmp_path):
    a, b = sorted((ROOT / "zoo" / "examples" / "pair").glob("*.jpg"))[:2]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"a,b\n{a},{b}\n{b},{a}\n{a},{tmp_path / 'missing.jpg'}\n")
    out = tmp_path / "changes.jsonl"
    assert main(["predict", "changer", str(pairs), "--out", str(out)]) == 1
    rows = rows_of(out)
    model = zoo.load("changer", device="cpu")
    for row, (x, y) in zip(rows, [(a, b), (b, a)]):
        expected = model.predict(x, y)
        assert row["label"] == expected.label and row["changes"] == pytest.approx(expected.changes)
        assert row["params"] == pytest.approx(expected.params)
    assert "does not exist" in rows[2]["error"]


@pytest.mark.parametrize("argv, message", [
    (["predict", NAME, "x.jpg", "--out", "results.txt"], "a .jsonl or .csv file"),
    (["predict", NAME, "x.jpg", "--resume"], "--resume continues an --out file"),
    (["predict", "changer", "."], "give them as A B"),
])
def test_runs_that_cannot_start_say_why(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert message in capsys.readouterr().err
