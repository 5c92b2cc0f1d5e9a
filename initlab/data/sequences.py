"""Token-sequence sets (N, T) of int64 ids: ``majority`` (synthetic) and ``imdb`` (aclImdb files)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from initlab.config import ConfigError
from initlab.data import files
from initlab.data.tensors import Data, balanced_labels

PAD, UNK = 0, 1


def _counts(tokens: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) occurrences of each token 0..k-1 in each row of ``tokens``."""
    offsets = k * np.arange(len(tokens))[:, None]
    return np.bincount((tokens + offsets).ravel(), minlength=k * len(tokens)).reshape(len(tokens), k)


def majority_tokens(sizes: tuple[int, ...], cfg, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """sum(``sizes``) sequences of ``cfg.seq_len`` tokens whose label is the most frequent voting
    token, for consecutive splits of ``sizes`` samples (train, test).

    Tokens 0..n_classes-1 vote, the others are distractors. Every sequence holds ``votes`` voting
    tokens (all of seq_len when vocab_size == n_classes, else seq_len // 2 rounded up) at random
    positions, drawn uniformly, and uniform distractors elsewhere. Draws whose largest count is
    shared are redrawn, so every label is unique. Labels are balanced in each split on its own
    (``balanced_labels``), set by swapping that token with the winner.
    """
    k, length, n = cfg.n_classes, cfg.seq_len, sum(sizes)
    votes = length if cfg.vocab_size == k else (length + 1) // 2
    chosen = np.empty((0, votes), dtype=np.int64)
    while len(chosen) < n:
        draw = rng.integers(0, k, size=(2 * (n - len(chosen)) + 16, votes))
        counts = _counts(draw, k)
        unique = (counts == counts.max(axis=1, keepdims=True)).sum(axis=1) == 1
        chosen = np.concatenate([chosen, draw[unique]])
    chosen = chosen[:n]
    winner = _counts(chosen, k).argmax(axis=1)
    label = balanced_labels(sizes, k, rng)
    swapped = np.where(chosen == winner[:, None], label[:, None],
                       np.where(chosen == label[:, None], winner[:, None], chosen))
    tokens = rng.integers(k, cfg.vocab_size, size=(n, length)) if cfg.vocab_size > k else np.empty((n, length), np.int64)
    positions = np.argsort(rng.random((n, length)), axis=1)[:, :votes]
    np.put_along_axis(tokens, positions, swapped, axis=1)
    return tokens.astype(np.int64), label


def majority(cfg) -> Data:
    rng = np.random.default_rng(cfg.seed)
    x, y = majority_tokens((cfg.n_train, cfg.n_test), cfg, rng)
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    return Data(x[:cfg.n_train], y[:cfg.n_train], x[cfg.n_train:], y[cfg.n_train:], kind="sequences",
                n_classes=cfg.n_classes, vocab_size=cfg.vocab_size)


# --- IMDB ---------------------------------------------------------------------------------------
IMDB_LABELS = ("neg", "pos")  # label 0, 1
IMDB_LAYOUT = "aclImdb/{train,test}/{pos,neg}/*.txt"


def tokenize(text: str) -> list[str]:
    """Lowercase, drop the reviews' ``<br />`` line breaks, split on anything but letters a-z."""
    return re.findall(r"[a-z]+", text.lower().replace("<br />", " "))


def build_vocabulary(texts: list[list[str]], size: int) -> dict[str, int]:
    """The ``size`` - 2 most frequent tokens (ties: alphabetical) -> ids 2.. in that order; 0 is
    padding (``PAD``), 1 unknown (``UNK``)."""
    counts = Counter(token for text in texts for token in text)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size - 2]
    return {token: i + 2 for i, (token, _) in enumerate(ranked)}


def check_vocab_size(vocab_size: int, vocabulary: dict[str, int]) -> None:
    """Refuse a ``vocab_size`` above the ids the training reviews give (their distinct tokens + PAD
    + UNK), in one line naming the valid range: the extra ids would be embedding rows no token
    uses, counted in n_params and the weight norms, and a huge one an allocation that fails after
    loading (2.5e9 x d_model floats). Called after the vocabulary is built, before any model is."""
    largest = len(vocabulary) + 2
    if vocab_size > largest:
        valid = f"3..{largest}" if largest >= 3 else "none (the training reviews hold no words)"
        raise ConfigError(f"dataset.vocab_size={vocab_size} exceeds the {largest} token ids the training reviews "
                          f"give ({len(vocabulary)} words + PAD + UNK); valid: {valid}")


def encode(texts: list[list[str]], vocabulary: dict[str, int], seq_len: int) -> torch.Tensor:
    """(N, seq_len) int64 ids: each text's first ``seq_len`` tokens, then ``PAD`` up to ``seq_len``."""
    out = torch.full((len(texts), seq_len), PAD, dtype=torch.long)
    for i, text in enumerate(texts):
        ids = [vocabulary.get(token, UNK) for token in text[:seq_len]]
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def _reviews(folder: Path) -> list[Path]:
    """The review files of one label folder, in name order: its regular ``*.txt`` files (a folder
    named ``x.txt`` is no review: skipped, not read as one)."""
    return sorted(path for path in folder.glob("*.txt") if path.is_file())


def _missing_folders(base: Path) -> str:
    """What of the aclImdb layout under ``base`` is absent, for the missing-files line (the
    layout alone does not say which of its four folders is missing or empty): e.g.
    ' (missing: aclImdb/test/neg)', ' (no .txt reviews in aclImdb/train/pos)'; '' when complete."""
    if not base.is_dir():
        return " (missing: aclImdb)"
    missing, empty = [], []
    for split in ("train", "test"):
        if not (base / split).is_dir():
            missing.append(f"aclImdb/{split}")
            continue
        for name in IMDB_LABELS:
            folder = base / split / name
            if not folder.is_dir():
                missing.append(f"aclImdb/{split}/{name}")
            elif not _reviews(folder):
                empty.append(f"aclImdb/{split}/{name}")
    parts = ([f"missing: {', '.join(missing)}"] if missing else []) + \
        ([f"no .txt reviews in {', '.join(empty)}"] if empty else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _read_split(folder: Path) -> tuple[list[list[str]], torch.Tensor]:
    """Tokens and labels of one split's reviews. Raises DatasetUnavailable naming a review that is
    not UTF-8 (the release's encoding: an altered or foreign file)."""
    texts, labels = [], []
    for label, name in enumerate(IMDB_LABELS):
        for path in _reviews(folder / name):
            try:
                texts.append(tokenize(path.read_text(encoding="utf-8")))
            except UnicodeDecodeError as err:
                raise files.unreadable("imdb", path, f"is not UTF-8 text ({err.reason} at byte {err.start})",
                                       "the files of aclImdb_v1.tar.gz", download=False) from None
            labels.append(label)
    return texts, torch.tensor(labels, dtype=torch.long)


def imdb(cfg) -> Data:
    """Maas et al.'s Large Movie Review Dataset from its aclImdb folders under ``cfg.root``; the
    vocabulary comes from the training reviews (the validation split, when asked for, included)."""
    root = files.resolved_root(cfg.root)
    base = root / "aclImdb"
    absent = _missing_folders(base)
    if absent:
        raise files.missing("imdb", root, f"{IMDB_LAYOUT} (aclImdb_v1.tar.gz unpacked)", absent)
    train_texts, y_train = _read_split(base / "train")
    vocabulary = build_vocabulary(train_texts, cfg.vocab_size)
    check_vocab_size(cfg.vocab_size, vocabulary)  # short only when the reviews hold fewer words
    test_texts, y_test = _read_split(base / "test")
    return Data(encode(train_texts, vocabulary, cfg.seq_len), y_train, encode(test_texts, vocabulary, cfg.seq_len),
                y_test, kind="sequences", n_classes=len(IMDB_LABELS), vocab_size=cfg.vocab_size, pad_id=PAD)


LOADERS = {"majority": majority, "imdb": imdb}
