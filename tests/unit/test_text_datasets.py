"""Tests of the text dataset loaders (multinli, civilcomments, text-table) on small generated fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairdistill.data import load_dataset
from fairdistill.data.core import ensure_encoding
from fairdistill.data.multinli import has_negation
from fairdistill.data.sampling import proportional_sizes
from fairdistill.errors import ConfigError, DataError

# ------------------------------------------------------------------------------------------------ multinli

#: Hypotheses with the negation attribute decided by hand (whole words after lower-casing and deleting ASCII
#: punctuation; "nothingness", "know", "nobody's" → "nobodys" and "no-one" → "noone" do not count).
HYPOTHESES: list[tuple[str, int]] = [
    ("Nobody, in fact, came.", 1),
    ("There is no cat here", 1),
    ("NO!", 1),
    ("He never left the house.", 1),
    ("Nothing happened at all.", 1),
    ("They said\tno\tto it", 1),
    ("It arrived (never) late.", 1),
    ("The nothingness was vast.", 0),
    ("I know the answer.", 0),
    ("Nobody's home today.", 0),
    ("No-one came to the party.", 0),
    ("Notably, it rained.", 0),
    ("He didn't go.", 0),
    ("Nono is a name.", 0),
    ("A man plays a guitar.", 0),
]
NAMES = ["entailment", "neutral", "contradiction"]


@pytest.mark.parametrize(("hypothesis", "negated"), HYPOTHESES)
def test_negation_is_whole_word_after_stripping_punctuation(hypothesis: str, negated: int) -> None:
    assert has_negation(hypothesis) == bool(negated)


def _rows(source: str, n: int, unlabeled: int) -> list[dict]:
    """``n`` labeled rows (label i % 3, hypothesis HYPOTHESES[i % 15]) then ``unlabeled`` rows with label -1."""
    rows = []
    for i in range(n + unlabeled):
        hyp, _ = HYPOTHESES[(i * 7) % len(HYPOTHESES)]
        label = i % 3 if i < n else -1
        rows.append({"premise": f"{source} premise {i}", "hypothesis": hyp, "label": label})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture()
def mnli_dir(tmp_path: Path) -> Path:
    """train.jsonl (90 labeled), dev_matched.jsonl (30 + 2 unlabeled), and the original corpus' file name and
    keys for the mismatched dev set (30 + 3 unlabeled, gold_label names, '-' = unlabeled)."""
    folder = tmp_path / "mnli"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", _rows("train", 90, 0))
    _write_jsonl(folder / "dev_matched.jsonl", _rows("matched", 30, 2))
    original = [
        {
            "sentence1": r["premise"],
            "sentence2": r["hypothesis"],
            "gold_label": "-" if r["label"] < 0 else NAMES[r["label"]],
        }
        for r in _rows("mismatched", 30, 3)
    ]
    _write_jsonl(folder / "multinli_1.0_dev_mismatched.jsonl", original)
    return folder


def _truth(folder: Path) -> dict[str, tuple[int, int]]:
    """premise → (label, hand negation) for every labeled fixture row."""
    truth = {}
    for source, n, unl in (("train", 90, 0), ("matched", 30, 2), ("mismatched", 30, 3)):
        lookup = dict(HYPOTHESES)
        for r in _rows(source, n, unl):
            if r["label"] >= 0:
                truth[r["premise"]] = (r["label"], lookup[r["hypothesis"]])
    return truth


def test_multinli_random_protocol_groups_sizes_and_texts(mnli_dir: Path) -> None:
    splits = load_dataset("multinli", {"path": str(mnli_dir)})
    truth = _truth(mnli_dir)
    assert len(truth) == 150  # unlabeled rows dropped
    sizes = proportional_sizes(150, (0.5, 0.2, 0.3))
    assert [len(s) for _, s in splits.items()] == list(sizes) == [75, 30, 45]
    info = splits.info
    assert info.modality == "text" and info.class_names == tuple(NAMES)
    assert info.attr_names == ("no negation", "negation")
    assert info.group_names[0] == "entailment|no negation" and info.group_names[5] == "contradiction|negation"
    seen: list[str] = []
    for _, split in splits.items():
        assert split.encodings == {} and set(split.texts) == {"text", "text_pair"}
        for i, premise in enumerate(split.texts["text"]):
            label, neg = truth[premise]
            assert int(split.y[i]) == label and int(split.attr[i]) == neg
            assert int(split.group[i]) == label * 2 + neg
            assert has_negation(split.texts["text_pair"][i]) == bool(neg)
        seen += split.texts["text"]
    assert len(seen) == len(set(seen)) == 150 and set(seen) == set(truth)  # disjoint and complete
    assert splits.provenance["sources"]["validation_mismatched"]["unlabeled_dropped"] == 3


def test_multinli_random_split_is_stratified_and_seeded(mnli_dir: Path) -> None:
    a = load_dataset("multinli", {"path": str(mnli_dir), "split_seed": 1})
    b = load_dataset("multinli", {"path": str(mnli_dir), "split_seed": 1})
    c = load_dataset("multinli", {"path": str(mnli_dir), "split_seed": 2})
    for (_, sa), (_, sb) in zip(a.items(), b.items(), strict=True):
        assert sa.texts == sb.texts and torch.equal(sa.group, sb.group)
    assert a.train.texts["text"] != c.train.texts["text"]
    pooled = torch.cat([s.group for _, s in a.items()])
    for _, split in a.items():  # every group is shared ±1 in proportion to the split's size
        frac = len(split) / len(pooled)
        for g in range(6):
            assert abs(int((split.group == g).sum()) - frac * int((pooled == g).sum())) <= 1


def test_multinli_official_protocol(mnli_dir: Path) -> None:
    splits = load_dataset("multinli", {"path": str(mnli_dir), "split": "official"})
    assert [len(s) for _, s in splits.items()] == [90, 30, 30]
    assert all(t.startswith("train ") for t in splits.train.texts["text"])
    assert all(t.startswith("matched ") for t in splits.val.texts["text"])
    assert all(t.startswith("mismatched ") for t in splits.test.texts["text"])
    truth = _truth(mnli_dir)
    for _, split in splits.items():
        assert [truth[p][0] * 2 + truth[p][1] for p in split.texts["text"]] == split.group.tolist()


def test_multinli_max_examples_is_group_stratified(mnli_dir: Path) -> None:
    splits = load_dataset("multinli", {"path": str(mnli_dir), "max_examples": 60})
    assert [len(s) for _, s in splits.items()] == [30, 12, 18]
    assert sorted(set(splits.train.group.tolist())) == sorted(
        set(load_dataset("multinli", {"path": str(mnli_dir)}).train.group.tolist())
    )


def test_multinli_saved_arrow_and_hub_match_jsonl(mnli_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import datasets

    def part(rows: list[dict]) -> datasets.Dataset:
        return datasets.Dataset.from_list(rows)

    original = [json.loads(line) for line in (mnli_dir / "multinli_1.0_dev_mismatched.jsonl").read_text().splitlines()]
    mismatched = [
        {"premise": r["sentence1"], "hypothesis": r["sentence2"], "label": LABELS_BY_NAME[r["gold_label"]]}
        for r in original
    ]
    data = datasets.DatasetDict(
        {
            "train": part(_rows("train", 90, 0)),
            "validation_matched": part(_rows("matched", 30, 2)),
            "validation_mismatched": part(mismatched),
        }
    )
    saved = tmp_path / "saved"
    data.save_to_disk(str(saved))
    expected = load_dataset("multinli", {"path": str(mnli_dir)})
    from_arrow = load_dataset("multinli", {"path": str(saved)})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id: data)
    from_hub = load_dataset("multinli", {"hub": True})
    for other in (from_arrow, from_hub):
        for (_, s1), (_, s2) in zip(expected.items(), other.items(), strict=True):
            assert s1.texts == s2.texts and torch.equal(s1.group, s2.group) and torch.equal(s1.y, s2.y)
    assert from_hub.provenance["sources"]["train"]["hub_id"] == "nyu-mll/multi_nli"


LABELS_BY_NAME = {"entailment": 0, "neutral": 1, "contradiction": 2, "-": -1}


def test_multinli_hub_offline_says_it_needs_the_hub() -> None:
    with pytest.raises(
        DataError, match="set and there is no cached copy, so this can only be checked on a machine with hub access"
    ):
        load_dataset("multinli", {"hub": True})


def test_multinli_source_options_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either hub: true or path:"):
        load_dataset("multinli", {"hub": True, "path": str(tmp_path)})
    with pytest.raises(ConfigError, match="no source"):
        load_dataset("multinli", {})
    with pytest.raises(ConfigError, match="data.split"):
        load_dataset("multinli", {"path": str(tmp_path), "split": "preset"})


def test_multinli_missing_path_names_the_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=str(tmp_path / "nowhere")):
        load_dataset("multinli", {"path": "nowhere"})
    (tmp_path / "partial").mkdir()
    _write_jsonl(tmp_path / "partial" / "train.jsonl", _rows("train", 3, 0))
    with pytest.raises(DataError, match="no validation_matched file; expected one of validation_matched.jsonl"):
        load_dataset("multinli", {"path": "partial"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"train.jsonl: line 3 is not JSON"),
        ('["a", "b"]', r"line 3 is a JSON list"),
        ('{"premise": "p", "label": 0}', r"line 3: missing field 'hypothesis' \(or 'sentence2'\)"),
        ('{"premise": "p", "hypothesis": "h"}', r"line 3: missing field 'label' \(or 'gold_label'\)"),
        ('{"premise": null, "hypothesis": "h", "label": 0}', r"line 3: field 'premise' is NoneType"),
        ('{"premise": "p", "hypothesis": "h", "label": 3}', r"line 3: label 3 is not a valid label"),
        ('{"premise": "p", "hypothesis": "h", "label": true}', r"line 3: label True is not a valid label"),
        ('{"sentence1": "p", "sentence2": "h", "gold_label": "maybe"}', r"line 3: gold_label 'maybe' is not a valid"),
    ],
)
def test_multinli_bad_jsonl_lines(mnli_dir: Path, line: str, message: str) -> None:
    rows = (mnli_dir / "train.jsonl").read_text().splitlines()
    rows.insert(2, line)
    (mnli_dir / "train.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset("multinli", {"path": str(mnli_dir)})


def test_multinli_bad_arrow_label(tmp_path: Path) -> None:
    import datasets

    good = datasets.Dataset.from_list(_rows("x", 6, 0))
    bad = datasets.Dataset.from_list([*_rows("y", 4, 0), {"premise": "p", "hypothesis": "h", "label": 7}])
    datasets.DatasetDict({"train": good, "validation_matched": good, "validation_mismatched": bad}).save_to_disk(
        str(tmp_path / "d")
    )
    with pytest.raises(DataError, match=r"split 'validation_mismatched': label 7 at row index 4"):
        load_dataset("multinli", {"path": str(tmp_path / "d")})


def test_text_splits_follow_the_encoding_contract(mnli_dir: Path) -> None:
    splits = load_dataset("multinli", {"path": str(mnli_dir)})

    class Tokeniser:
        input_key = "tok"

        def encode_texts(self, texts: dict[str, list[str]]) -> dict[str, torch.Tensor]:
            n = len(texts["text"])
            assert len(texts["text_pair"]) == n
            return {"input_ids": torch.zeros(n, 4, dtype=torch.long)}

    ensure_encoding(Tokeniser(), splits)
    assert splits.train.encodings["tok"]["input_ids"].shape == (75, 4)
    assert set(splits.train[0]["inputs"]) == {"tok"}


# ------------------------------------------------------------------------------------------------ civilcomments

IDENTITIES = ["male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white"]


def _civil_rows() -> list[dict]:
    """(toxicity, identity values) with hand-computed labels: y = tox >= 0.5, any = some identity >= 0.5."""
    base = dict.fromkeys(IDENTITIES, 0.0)
    spec = [
        # split, toxicity, identity overrides, y, any, muslim
        ("train", 0.9, {"muslim": 0.8}, 1, 1, 1),
        ("train", 0.5, {}, 1, 0, 0),
        ("train", 0.49, {"female": 0.5}, 0, 1, 0),
        ("train", 0.0, {"male": 0.3, "white": 0.49}, 0, 0, 0),
        ("train", 0.7, {"black": 1.0, "muslim": 0.2}, 1, 1, 0),
        ("train", 0.1, {"muslim": 0.5}, 0, 1, 1),
        ("val", 0.6, {}, 1, 0, 0),
        ("val", 0.2, {"LGBTQ": 0.6}, 0, 1, 0),
        ("val", 0.3, {"other_religions": 0.9, "muslim": 0.9}, 0, 1, 1),
        ("test", 0.95, {"christian": 0.5}, 1, 1, 0),
        ("test", 0.05, {}, 0, 0, 0),
        ("test", 0.55, {"muslim": 0.51}, 1, 1, 1),
    ]
    rows = []
    for i, (split, tox, ids, y, any_, muslim) in enumerate(spec):
        text = f'comment {i}, with "quotes",\nand a newline' if i == 0 else f"comment {i}"
        rows.append({"id": i, "comment_text": text, "split": split, "toxicity": tox, "severe_toxicity": 0.0,
                     **base, **ids, "_y": y, "_any": any_, "_muslim": muslim})  # fmt: skip
    return rows


@pytest.fixture()
def civil_file(tmp_path: Path) -> Path:
    folder = tmp_path / "civilcomments_v1.0"
    folder.mkdir()
    frame = pd.DataFrame(_civil_rows()).drop(columns=["_y", "_any", "_muslim"])
    frame.to_csv(folder / "all_data_with_identities.csv", index=False)
    return folder / "all_data_with_identities.csv"


@pytest.mark.parametrize(("identity", "key"), [("any", "_any"), ("muslim", "_muslim")])
def test_civilcomments_groups_match_hand_labels(civil_file: Path, identity: str, key: str) -> None:
    splits = load_dataset("civilcomments", {"path": str(civil_file.parent.parent), "identity": identity})
    rows = {r["comment_text"]: r for r in _civil_rows()}
    assert [len(s) for _, s in splits.items()] == [6, 3, 3]
    for name, split in splits.items():
        assert split.encodings == {} and set(split.texts) == {"text"}
        for i, text in enumerate(split.texts["text"]):
            row = rows[text]
            assert row["split"] == name
            assert (int(split.y[i]), int(split.attr[i])) == (row["_y"], row[key])
            assert int(split.group[i]) == row["_y"] * 2 + row[key]
    subject = "identity" if identity == "any" else identity
    assert splits.info.attr_names == (f"{subject} not mentioned", f"{subject} mentioned")
    assert splits.info.group_names[3] == f"toxic|{subject} mentioned"
    assert splits.train.texts["text"][0] == 'comment 0, with "quotes",\nand a newline'


def test_civilcomments_errors(civil_file: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=str(tmp_path / "missing")):
        load_dataset("civilcomments", {"path": str(tmp_path / "missing")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no all_data_with_identities.csv in"):
        load_dataset("civilcomments", {"path": str(tmp_path / "empty")})
    frame = pd.read_csv(civil_file)
    frame.drop(columns=["muslim", "split"]).to_csv(civil_file, index=False)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['split', 'muslim'\]"):
        load_dataset("civilcomments", {"path": str(civil_file)})
    bad = frame.copy()
    bad["toxicity"] = bad["toxicity"].astype(object)
    bad.loc[3, "toxicity"] = "high"
    bad.to_csv(civil_file, index=False)
    with pytest.raises(DataError, match=r"column 'toxicity' is empty or not a number at row\(s\) 5 \(row 1 = header"):
        load_dataset("civilcomments", {"path": str(civil_file)})
    bad = frame.copy()
    bad.loc[10, "split"] = "extra"
    bad.to_csv(civil_file, index=False)
    with pytest.raises(DataError, match=r"column 'split' has value 'extra' at row\(s\) 12"):
        load_dataset("civilcomments", {"path": str(civil_file)})
    with pytest.raises(ConfigError, match="data.identity"):
        load_dataset("civilcomments", {"path": str(civil_file), "identity": "jewish"})


# ------------------------------------------------------------------------------------------------ text-table


def _table(n: int = 40) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sentence": [f"sentence {i}" for i in range(n)],
            "other": [f"other {i}" for i in range(n)],
            "sentiment": ["pos" if i % 2 else "neg" for i in range(n)],
            "dialect": ["b" if i % 4 < 1 else "a" for i in range(n)],
            "unused": range(n),
        }
    )


def test_text_table_single_csv_string_labels(tmp_path: Path) -> None:
    _table().to_csv(tmp_path / "t.csv", index=False)
    options = {"path": str(tmp_path / "t.csv"), "text": "sentence", "text_pair": "other", "label": "sentiment",
               "attr": "dialect"}  # fmt: skip
    splits = load_dataset("text-table", options)
    assert [len(s) for _, s in splits.items()] == [24, 8, 8]
    assert splits.info.class_names == ("neg", "pos") and splits.info.attr_names == ("a", "b")
    assert splits.info.group_names == ("neg|a", "neg|b", "pos|a", "pos|b")
    seen = []
    for _, split in splits.items():
        for i, text in enumerate(split.texts["text"]):
            k = int(text.split()[1])
            y, a = k % 2, int(k % 4 < 1)
            assert (int(split.y[i]), int(split.attr[i]), int(split.group[i])) == (y, a, y * 2 + a)
            assert split.texts["text_pair"][i] == f"other {k}"
        seen += split.texts["text"]
    assert len(set(seen)) == 40
    again = load_dataset("text-table", options)
    assert again.val.texts == splits.val.texts
    assert load_dataset("text-table", {**options, "split_seed": 5}).val.texts != splits.val.texts


def test_text_table_jsonl_train_test_holds_out_val_and_parquet_files(tmp_path: Path) -> None:
    frame = _table()
    for name, part in (("train", frame.iloc[:30]), ("test", frame.iloc[30:])):
        part.to_json(tmp_path / f"{name}.jsonl", orient="records", lines=True)
    splits = load_dataset("text-table", {"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl"),
                                         "text": "sentence", "label": "sentiment"})  # fmt: skip
    assert [len(s) for _, s in splits.items()] == [24, 6, 10]
    assert not splits.info.groups_known and splits.info.attr_names == ("all",)
    assert "text_pair" not in splits.train.texts
    coded = frame.assign(label=[i % 3 for i in range(40)])
    for name, part in (("train", coded.iloc[:20]), ("val", coded.iloc[20:30]), ("test", coded.iloc[30:])):
        part.to_parquet(tmp_path / f"{name}.parquet")
    options = {role: str(tmp_path / f"{role}.parquet") for role in ("train", "val", "test")}
    splits = load_dataset("text-table", {**options, "text": "sentence", "label": "label", "attr": "dialect"})
    assert [len(s) for _, s in splits.items()] == [20, 10, 10]
    assert splits.info.class_names == ("0", "1", "2")
    assert splits.test.y.tolist() == [i % 3 for i in range(30, 40)]


def test_text_table_errors(tmp_path: Path) -> None:
    base = {"text": "sentence", "label": "sentiment"}
    with pytest.raises(DataError, match=str(tmp_path / "none.csv")):
        load_dataset("text-table", {**base, "path": str(tmp_path / "none.csv")})
    _table().to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"has no column\(s\) \['txt'\]; its columns are \['sentence'"):
        load_dataset("text-table", {**base, "text": "txt", "path": str(tmp_path / "t.csv")})
    frame = _table()
    frame.loc[[2, 5], "sentiment"] = ""
    frame.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(
        DataError, match=r"t.csv: label column 'sentiment' is empty at row\(s\) 4, 7 \(row 1 = header\)"
    ):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.csv")})
    (tmp_path / "t.jsonl").write_text('{"sentence": "a", "sentiment": 0}\n\n{"sentence": "b", "sentiment": 1\n')
    with pytest.raises(DataError, match=r"t.jsonl: line 3 is not JSON"):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.jsonl")})
    (tmp_path / "t.jsonl").write_text('{"sentence": "a", "sentiment": 0}\n{"sentence": null, "sentiment": 1}\n')
    with pytest.raises(DataError, match=r"column 'sentence' has no value at line\(s\) 2"):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.jsonl")})
    _table().assign(sentiment=[0, 2] * 20).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"no row with id\(s\) \[1\]; .* set num_classes"):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.parquet")})
    _table().assign(sentiment=[0, -1] * 20).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"negative id -1 at data row\(s\) 2, 4, 6"):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.parquet")})
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset("text-table", {**base, "path": str(tmp_path / "t.txt")})
    with pytest.raises(ConfigError, match="either path"):
        load_dataset("text-table", {**base, "path": "a.csv", "train": "b.csv"})


def test_text_table_num_classes_allows_empty_classes(tmp_path: Path) -> None:
    _table().assign(sentiment=[0, 2] * 20).to_parquet(tmp_path / "t.parquet")
    splits = load_dataset("text-table", {"text": "sentence", "label": "sentiment", "num_classes": 3,
                                         "path": str(tmp_path / "t.parquet")})  # fmt: skip
    assert splits.info.class_names == ("0", "1", "2") and int((splits.train.y == 1).sum()) == 0
    assert np.isin(splits.train.y.numpy(), [0, 2]).all()
