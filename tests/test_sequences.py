"""Token-sequence datasets: the synthetic majority task (labels recounted independently) and IMDB
read from a small aclImdb tree in the real folder layout, written here."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from hydra import initialize_config_dir

from conftest import CONF, compose_config, run_train
from initlab.config import ConfigError, to_experiment
from initlab.data import DatasetUnavailable, load_data
from initlab.data.sequences import PAD, UNK, tokenize


def dataset_cfg(*overrides: str):
    return to_experiment(compose_config(*overrides)).dataset


# --- majority -----------------------------------------------------------------------------------
@pytest.mark.parametrize("extra,votes", [
    ([], 16),                                                                       # defaults: 32 tokens, half vote
    (["dataset.vocab_size=3", "dataset.n_classes=3", "dataset.seq_len=7"], 7),      # no distractors: all vote
    (["dataset.vocab_size=50", "dataset.n_classes=2", "dataset.seq_len=5"], 3),     # odd count rounded up
    (["dataset.vocab_size=1000", "dataset.n_classes=10", "dataset.seq_len=12"], 6),
])
def test_majority_label_is_the_unique_most_frequent_voting_token(extra, votes):
    cfg = dataset_cfg("dataset=majority", "dataset.n_train=600", "dataset.n_test=300", *extra)
    data = load_data(cfg)
    k = cfg.n_classes
    assert data.kind == "sequences" and data.vocab_size == cfg.vocab_size and data.n_classes == k
    assert data.x_train.shape == (600, cfg.seq_len) and data.x_test.shape == (300, cfg.seq_len)
    assert data.x_train.dtype == torch.long and data.input_shape == cfg.input_shape() == (cfg.seq_len,)
    x = torch.cat([data.x_train, data.x_test]).numpy()
    y = torch.cat([data.y_train, data.y_test]).numpy()
    assert x.min() >= 0 and x.max() < cfg.vocab_size
    for seq, label in zip(x, y):
        counts = np.bincount(seq[seq < k], minlength=k)
        assert counts.sum() == votes
        assert counts[label] == counts.max() and (counts == counts.max()).sum() == 1
    assert np.bincount(y, minlength=k).tolist() == [900 // k] * k  # balanced classes
    if 0 < cfg.vocab_size - k <= 50:  # a few distractors: every one of them appears
        assert set(x[x >= k].tolist()) == set(range(k, cfg.vocab_size))


def test_majority_is_deterministic_and_seeded():
    base = ["dataset=majority", "dataset.n_train=200", "dataset.n_test=50"]
    a, b = load_data(dataset_cfg(*base)), load_data(dataset_cfg(*base))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    c = load_data(dataset_cfg(*base, "dataset.seed=1"))
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("overrides,train,test", [
    # balanced over train + test, then cut: the defaults' test split held [259, 256, 236, 249]
    ([], [1000] * 4, [250] * 4),
    (["dataset.n_train=201", "dataset.n_test=50"], [51, 50, 50, 50], [13, 13, 12, 12]),
    (["dataset.n_train=300", "dataset.n_test=100", "dataset.n_classes=3"], [100] * 3, [34, 33, 33]),
])
def test_majority_classes_are_balanced_in_each_split(overrides, train, test):
    data = load_data(dataset_cfg("dataset=majority", *overrides))
    k = data.n_classes
    assert np.bincount(data.y_train.numpy(), minlength=k).tolist() == train
    assert np.bincount(data.y_test.numpy(), minlength=k).tolist() == test


def test_majority_needs_voting_tokens_inside_the_vocabulary():
    with pytest.raises(ConfigError, match=r"^dataset.n_classes must be <= dataset.vocab_size \(8; .*\), got 9$"):
        dataset_cfg("dataset=majority", "dataset.vocab_size=8", "dataset.n_classes=9")


# --- IMDB ---------------------------------------------------------------------------------------
REVIEWS = {
    ("train", "pos"): ["A great film!<br /><br />Great acting, great story.", "Loved it; the cast is GREAT.",
                       "Wonderful. Simply wonderful"],
    ("train", "neg"): ["A dull film. Dull, dull, dull.<br />Avoid it", "The story? Boring and dull",
                       "Terrible acting - avoid!"],
    ("test", "pos"): ["great great wonderful", "An unseen word: splendid"],
    ("test", "neg"): ["dull", "Boring film, terrible story and dull cast"],
}


def make_imdb_like(root: Path, reviews=REVIEWS) -> None:
    """aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, plus the parts a loader must ignore."""
    base = root / "aclImdb"
    for (split, label), texts in reviews.items():
        folder = base / split / label
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{8 if label == 'pos' else 2}.txt").write_text(text, encoding="utf-8")
    (base / "train" / "unsup").mkdir()
    (base / "train" / "unsup" / "0_0.txt").write_text("unlabelled unlabelled unlabelled", encoding="utf-8")
    (base / "imdb.vocab").write_text("the\nand\n", encoding="utf-8")
    (base / "README").write_text("Large Movie Review Dataset v1.0", encoding="utf-8")


def reference_words(text: str) -> list[str]:
    """An independent tokenizer: drop line breaks, keep maximal runs of ASCII letters, lowercase."""
    words, current = [], ""
    for ch in text.replace("<br />", " "):
        if ch.isascii() and ch.isalpha():
            current += ch.lower()
        elif current:
            words.append(current)
            current = ""
    return words + ([current] if current else [])


def test_tokenizer_lowercases_drops_line_breaks_and_splits_on_non_letters():
    assert tokenize("A great film!<br /><br />Don't MISS it...x2") == ["a", "great", "film", "don", "t", "miss", "it", "x"]
    for texts in REVIEWS.values():
        for text in texts:
            assert tokenize(text) == reference_words(text)


def expected_ids(split: str, vocab_size: int, seq_len: int) -> tuple[list[list[int]], list[int]]:
    """Reviews in (neg, pos) then file-name order, ids from train's counts (ties alphabetical)."""
    counts = Counter(w for label in ("neg", "pos") for t in REVIEWS["train", label] for w in reference_words(t))
    ranked = sorted(counts, key=lambda w: (-counts[w], w))[:vocab_size - 2]
    ids = {w: i + 2 for i, w in enumerate(ranked)}
    rows, labels = [], []
    for label, name in enumerate(("neg", "pos")):
        for text in REVIEWS[split, name]:
            words = reference_words(text)[:seq_len]
            rows.append([ids.get(w, UNK) for w in words] + [PAD] * (seq_len - len(words)))
            labels.append(label)
    return rows, labels


@pytest.mark.parametrize("vocab_size,seq_len", [(19, 12), (6, 4), (3, 20)])  # 19: all 17 words
def test_imdb_reads_the_aclimdb_layout(tmp_path, vocab_size, seq_len):
    make_imdb_like(tmp_path)
    cfg = dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", f"dataset.vocab_size={vocab_size}",
                      f"dataset.seq_len={seq_len}")
    data = load_data(cfg)
    assert data.kind == "sequences" and data.vocab_size == vocab_size and data.n_classes == 2
    assert data.input_shape == cfg.input_shape() == (seq_len,) and data.x_train.dtype == torch.long
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        rows, labels = expected_ids(split, vocab_size, seq_len)
        assert x.tolist() == rows, split
        assert y.tolist() == labels, split
    assert int(data.x_train.max()) < vocab_size


def test_imdb_vocabulary_is_ranked_by_training_counts(tmp_path):
    make_imdb_like(tmp_path)
    data = load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", "dataset.vocab_size=5",
                                 "dataset.seq_len=3"))
    # train counts: dull 5, great 4, then 2 each for a, acting, avoid, film, it, story, the, wonderful:
    # ids dull 2, great 3, a 4 (alphabetically first of the 2s); film and wonderful fall outside
    assert data.x_test.tolist() == [[2, PAD, PAD], [UNK, UNK, UNK],  # neg: "dull"; "boring film terrible"
                                    [3, 3, UNK], [UNK, UNK, UNK]]    # pos: "great great wonderful"; unseen


def test_imdb_validation_split_is_stratified_from_train(tmp_path):
    reviews = {key: [f"{key[1]} review number {i} {'good' if key[1] == 'pos' else 'bad'}" for i in range(10)]
               for key in REVIEWS}
    make_imdb_like(tmp_path, reviews)
    data = load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", "dataset.val_size=6",
                                 "dataset.vocab_size=8"))  # pos, neg, review, number, good, bad + PAD + UNK
    assert len(data.y_val) == 6 and len(data.y_train) == 14 and sorted(data.y_val.tolist()) == [0, 0, 0, 1, 1, 1]


def test_a_review_that_is_not_utf8_is_named_in_one_line(tmp_path):
    """A Latin-1 review (an altered or foreign file) was a UnicodeDecodeError traceback naming no file."""
    make_imdb_like(tmp_path)
    bad = tmp_path / "aclImdb" / "train" / "pos" / "0_8.txt"
    bad.write_bytes("Un film tr\xe8s r\xe9ussi".encode("latin-1"))
    with pytest.raises(DatasetUnavailable) as info:
        load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}"))
    assert str(info.value) == (f"dataset imdb: {bad.resolve()} is not UTF-8 text (invalid continuation byte at byte "
                               f"10); replace it with its original from the files of aclImdb_v1.tar.gz")


@pytest.mark.parametrize("make,absent", [
    ("nothing", "missing: aclImdb"),
    ("empty_folder", "missing: aclImdb/train, aclImdb/test"),
    ("train_only", "missing: aclImdb/test"),
    ("no_test_neg", "missing: aclImdb/test/neg"),  # was the layout alone, naming no folder
    ("empty_test_neg", "no .txt reviews in aclImdb/test/neg"),
])
def test_imdb_missing_files_is_one_clear_line_naming_the_folder(tmp_path, make, absent):
    root = tmp_path / "nowhere"
    if make == "empty_folder":
        (root / "aclImdb").mkdir(parents=True)
    elif make == "train_only":
        make_imdb_like(root, {k: v for k, v in REVIEWS.items() if k[0] == "train"})
    elif make in ("no_test_neg", "empty_test_neg"):
        make_imdb_like(root, {k: v for k, v in REVIEWS.items() if k != ("test", "neg")})
    if make == "empty_test_neg":  # a folder named like a review and a file that is none: no reviews
        (root / "aclImdb" / "test" / "neg" / "0_2.txt").mkdir(parents=True)
        (root / "aclImdb" / "test" / "neg" / "notes.md").write_text("dull", encoding="utf-8")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(DatasetUnavailable) as info:
        load_data(dataset_cfg("dataset=imdb", f"dataset.root={root}"))
    assert str(info.value) == (f"dataset imdb: files not found under {root.resolve()} ({absent}); put "
                               "aclImdb/{train,test}/{pos,neg}/*.txt (aclImdb_v1.tar.gz unpacked) there or set "
                               "dataset.root")
    assert sorted(tmp_path.rglob("*")) == before, "a failed load creates nothing"


def test_a_directory_named_like_a_review_is_skipped(tmp_path):
    """aclImdb/train/pos/dir.txt, a folder: was an IsADirectoryError traceback; only regular files are reviews."""
    make_imdb_like(tmp_path)
    (tmp_path / "aclImdb" / "train" / "pos" / "dir.txt").mkdir()
    (tmp_path / "aclImdb" / "train" / "pos" / "dir.txt" / "9_9.txt").write_text("nested", encoding="utf-8")
    data = load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", "dataset.vocab_size=6",
                                 "dataset.seq_len=4"))
    for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
        assert (x.tolist(), y.tolist()) == expected_ids(split, 6, 4), split


# --- vocab_size against the reviews -------------------------------------------------------------
def vocab_error(vocab_size: int) -> str:
    """The one line for REVIEWS' training reviews: 17 distinct words, 19 ids with PAD and UNK."""
    return (f"dataset.vocab_size={vocab_size} exceeds the 19 token ids the training reviews give (17 words + PAD + "
            "UNK); valid: 3..19")


@pytest.mark.parametrize("vocab_size", [20, 2500000000])
def test_a_vocab_size_beyond_the_reviews_is_refused_in_one_line(tmp_path, vocab_size):
    """Was accepted: unused embedding rows counted in n_params and the weight norm, or (2.5e9) a
    640 GB embedding allocated after loading, a traceback and a run folder left."""
    make_imdb_like(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", f"dataset.vocab_size={vocab_size}"))
    assert str(info.value) == vocab_error(vocab_size)
    assert load_data(dataset_cfg("dataset=imdb", f"dataset.root={tmp_path}", "dataset.vocab_size=19")).vocab_size == 19


def test_a_vocab_size_beyond_the_reviews_stops_train_py_before_any_model(tmp_path):
    make_imdb_like(tmp_path / "data")
    run_dir = tmp_path / "outputs" / "run"
    done = run_train("model=transformer", "dataset=imdb", f"dataset.root={tmp_path / 'data'}",
                     "dataset.vocab_size=2500000000", "epochs=1", "threads=1", f"hydra.run.dir={run_dir}")
    assert (done.returncode, done.stderr) == (2, f"error: {vocab_error(2500000000)}\n"), done.stderr
    assert not run_dir.exists(), "no run folder left"


def test_a_vocab_size_beyond_the_reviews_stops_a_sweep_before_its_first_job(tmp_path):
    from initlab.sweeps import validate_jobs
    from test_sweeps import _compose_multirun

    make_imdb_like(tmp_path)
    jobs = [["model=transformer", "dataset=imdb", f"dataset.root={tmp_path}", f"dataset.vocab_size={v}"]
            for v in (19, 50)]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = _compose_multirun("epochs=0")
        assert len(validate_jobs(cfg, jobs[:1])) == 1
        with pytest.raises(ConfigError) as info:
            validate_jobs(cfg, jobs)
    assert str(info.value) == f"job {' '.join(jobs[1])}: {vocab_error(50)}"
