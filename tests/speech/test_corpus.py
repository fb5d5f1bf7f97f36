import builtins
import hashlib
import json

import pytest

from coupled.domains.speech.corpus import (ACCENTS, DIGITS, KEYWORDS, CorpusConfig, build_corpus, load_split, speakers,
                                           variant_split)
from coupled.errors import CoupledError

from .conftest import TINY


def _digest(root):
    h = hashlib.sha256()
    for it in json.loads((root / "manifest.json").read_text())["items"]:
        h.update(it["file"].encode() + (root / it["file"]).read_bytes())
    return h.hexdigest()


def test_corpus_is_deterministic_for_a_seed(tiny_corpus, tmp_path):
    again = build_corpus(TINY, tmp_path / "again", progress=False)
    assert _digest(again) == _digest(tiny_corpus)
    other = build_corpus(CorpusConfig(seed=1, speakers=TINY.speakers, digit_strings=3), tmp_path / "other", progress=False)
    assert _digest(other) != _digest(tiny_corpus)


def test_speakers_are_disjoint_across_splits(tiny_corpus):
    m = json.loads((tiny_corpus / "manifest.json").read_text())
    variants = {}
    for s in m["speakers"]:
        variants.setdefault(s["split"], set()).add(s["variant"])
        assert s["accent"] in ACCENTS
    assert variants["train"].isdisjoint(variants["val"]) and variants["train"].isdisjoint(variants["test"])
    assert variants["val"].isdisjoint(variants["test"])
    full = variant_split(CorpusConfig())
    assert len(set(full["train"]) | set(full["val"]) | set(full["test"])) == sum(map(len, full.values()))
    by_split = {}
    for it in m["items"]:
        by_split.setdefault(it["split"], set()).add(it["speaker"])
    assert by_split["train"].isdisjoint(by_split["test"]) and by_split["val"].isdisjoint(by_split["test"])
    assert len(speakers(CorpusConfig())) == 64 + 12 + 16


def test_manifest_and_audio(tiny_corpus):
    m = json.loads((tiny_corpus / "manifest.json").read_text())
    assert m["generator"] == "coupled-speech-corpus/1" and m["sample_rate"] == 16000
    assert m["config"] == TINY.to_dict()
    assert {"file", "text", "task", "speaker", "split"} <= set(m["items"][0])
    utts = load_split(tiny_corpus, "train")
    assert len(utts) == 3 * (3 + len(DIGITS) + len(KEYWORDS))
    for u in utts:
        w = u.wave
        assert 0.85 < abs(w).max() <= 0.9 + 1e-4  # normalised to the peak
        assert 0.2 < len(w) / 16000 < 6
        words = u.text.split()
        if u.task == "digits":
            assert 1 <= len(words) <= 7 and set(words) <= set(DIGITS)
        else:
            assert len(words) == 1 and words[0] in DIGITS + KEYWORDS
    assert len(load_split(tiny_corpus, "train", max_items=4)) == 8


def test_cache_is_reused_and_a_different_config_refused(tiny_corpus):
    assert build_corpus(TINY, tiny_corpus, progress=False) == tiny_corpus
    with pytest.raises(CoupledError, match="different speech corpus"):
        build_corpus(CorpusConfig(seed=5), tiny_corpus, progress=False)


def test_unknown_corpus_option_and_missing_corpus(tmp_path):
    with pytest.raises(CoupledError, match="valid:.*digit_strings"):
        CorpusConfig.from_dict({"digit_strngs": 3})
    with pytest.raises(CoupledError, match="coupled data speech"):
        load_split(tmp_path, "test")


def test_missing_synthesiser_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name == "espeakng_loader":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(CoupledError) as e:
        build_corpus(TINY, tmp_path / "c", progress=False)
    assert "pip install espeakng-loader" in str(e.value) and "\n" not in str(e.value)


def test_coupled_data_never_deletes_a_folder_it_did_not_create(tmp_path, capsys):
    """Issue 17: `coupled data speech` with data.root at a user's folder ran shutil.rmtree on it."""
    import yaml

    from coupled.cli import main

    user = tmp_path / "my_recordings"
    (user / "sub").mkdir(parents=True)
    (user / "thesis.txt").write_text("years of work")
    (user / "sub" / "take1.wav").write_bytes(b"RIFF")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"domain": "speech", "data": {"root": str(user)},
                                   "corpus": {"speakers": {"train": 1, "val": 1, "test": 1}, "digit_strings": 1}}))
    code = main(["evaluate", str(cfg), "--methods", "noisy", "--checkpoint", "checkpoints/speech", "--quiet",
                 "--out", str(tmp_path / "ev")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "no speech corpus manifest" in err
    assert f"coupled data speech --config {cfg}" in err  # the command that builds this config's corpus
    code = main(["data", "speech", "--config", str(cfg), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert (user / "thesis.txt").read_text() == "years of work" and (user / "sub" / "take1.wav").is_file()
    assert code == 2 and len(err.splitlines()) == 1
    assert "2 files" in err and "manifest.json" in err and "--root" in err
    assert not (tmp_path / "my_recordings.partial").exists()


def test_an_empty_folder_is_built_into_and_a_foreign_partial_folder_is_left_alone(tmp_path):
    small = CorpusConfig(speakers={"train": 1, "val": 1, "test": 1}, digit_strings=1)
    (tmp_path / "empty").mkdir()
    assert (build_corpus(small, tmp_path / "empty", progress=False) / "manifest.json").is_file()
    # a leftover <root>.partial the build did not start (no marker) is someone else's: refused, untouched
    (tmp_path / "new.partial").mkdir()
    (tmp_path / "new.partial" / "notes.txt").write_text("mine")
    with pytest.raises(CoupledError, match="new.partial"):
        build_corpus(small, tmp_path / "new", progress=False)
    assert (tmp_path / "new.partial" / "notes.txt").read_text() == "mine" and not (tmp_path / "new").exists()
