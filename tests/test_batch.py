"""`zoo predict NAME PATH...` over many images: files, folders, globs, the changer's CSV of pairs, an
unreadable file among good ones, JSON lines or CSV out, and --resume (also after a last line cut short):
one row per input."""
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
    assert rows[:-1] == [row for row in first if not row.get("error")]  # the error row is replaced, not repeated
    assert rows[-1]["path"].endswith("broken.jpg") and "label" in rows[-1] and "error" not in rows[-1]


def cut_last_line(path: Path) -> str:
    """Cut the file in the middle of its last line, as a full disk or a power loss leaves it; return that line."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[:start + (len(data) - start) // 2])
    return data[start:].decode()


def assert_one_whole_row_per_input(out: Path, photos: Path) -> list[dict]:
    rows = rows_of(out)
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in photos.rglob("*.jpg"))
    good = sorted(p for p in photos.rglob("*.jpg") if p.name != "broken.jpg")
    assert {row["path"]: row["label"] for row in rows if not row.get("error")} == expected_labels(good)
    broken = [row for row in rows if row["path"].endswith("broken.jpg")]
    assert len(broken) == 1 and "not a readable image" in broken[0]["error"]
    for row in rows:
        if not row.get("error"):
            probs = row["probs"] if isinstance(row["probs"], dict) else json.loads(row["probs"])
            assert sum(probs.values()) == pytest.approx(1.0)
    return rows


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_after_a_cut_last_line_predicts_that_input_again(photos, tmp_path, suffix, capsys):
    out = tmp_path / f"results{suffix}"
    main(["predict", NAME, str(photos), "--out", str(out)])
    cut = cut_last_line(out)
    assert main(["predict", NAME, str(photos), "--out", str(out), "--resume"]) == 1  # broken.jpg still fails
    rows = assert_one_whole_row_per_input(out, photos)
    assert out.read_bytes().endswith(b"\n")
    assert sum(row["path"] in cut for row in rows) == 1  # the cut row's input, predicted again
    err = capsys.readouterr().err
    assert "Traceback" not in err and "removed 1 row(s) left incomplete" in err


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_cut_line_with_a_row_glued_to_it_is_removed_and_both_inputs_predicted_again(photos, tmp_path, suffix):
    """What resuming without repair used to leave: the next row written onto the end of a cut one."""
    out = tmp_path / f"results{suffix}"
    main(["predict", NAME, str(photos), "--out", str(out)])
    lines = out.read_text().splitlines(keepends=True)
    lines[2] = lines[2][:len(lines[2]) // 2] + lines[3]  # a cut row, glued to the next
    del lines[3]
    out.write_text("".join(lines))
    main(["predict", NAME, str(photos), "--out", str(out), "--resume"])
    assert_one_whole_row_per_input(out, photos)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resuming_twice_after_errors_adds_no_rows(photos, tmp_path, suffix):
    out = tmp_path / f"results{suffix}"
    (photos / "also-broken.jpg").write_bytes(b"\xff\xd8 not an image either")  # a second input that fails
    assert main(["predict", NAME, str(photos), "--out", str(out)]) == 1
    first = rows_of(out)
    for _ in range(2):
        assert main(["predict", NAME, str(photos), "--out", str(out), "--resume"]) == 1
        rows = rows_of(out)
        assert sorted(row["path"] for row in rows) == sorted(row["path"] for row in first)
        assert sum(bool(row.get("error")) for row in rows) == 2
    assert main(["predict", NAME, str(photos / "airplane.jpg"), "--out", str(out), "--resume"]) == 0
    assert sorted(row["path"] for row in rows_of(out)) == sorted(row["path"] for row in first)  # kept, not retried


def test_resume_refuses_a_file_that_is_not_zoo_results(tmp_path, capsys):
    out = tmp_path / "notes.csv"
    out.write_text("name,size\nx,1\n")
    assert main(["predict", NAME, str(ROOT / "zoo" / "examples" / "cifar10" / "cat.jpg"), "--out", str(out),
                 "--resume"]) == 1
    assert "not zoo's" in capsys.readouterr().err and out.read_text() == "name,size\nx,1\n"


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
