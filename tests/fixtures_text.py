"""Offline stand-in for the real UMT5 tokenizer folder, for tests that load tokenizers from disk.

The real ``google/umt5-xxl`` vocabulary (256k pieces) only arrives with the checkpoint. A tiny
Unigram model trained in-process and saved as a ``T5Tokenizer`` gives a folder that
``AutoTokenizer.from_pretrained`` loads the same way (same class, same special tokens:
``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2). No network, no sentencepiece, about 0.05 s.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import T5Tokenizer

SPECIAL_TOKENS = ["<pad>", "</s>", "<unk>"]  # T5Tokenizer hard-codes unk_id=2, so this order matters


def write_test_tokenizer(path: str | Path, corpus: Iterable[str], vocab_size: int = 120) -> Path:
    """Train a small Unigram vocabulary on ``corpus`` and save it as a T5 tokenizer folder at ``path``.

    Returns the folder; ``AutoTokenizer.from_pretrained(path)`` reloads it. The vocabulary has at
    most ``vocab_size`` pieces (fewer if the corpus is small), so pair it with a model whose
    ``vocab_size`` is at least that.
    """
    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    unigram.train_from_iterator(list(corpus), trainer=trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    if [piece for piece, _ in vocab[:3]] != SPECIAL_TOKENS:
        raise RuntimeError(f"trained vocabulary does not start with {SPECIAL_TOKENS}: {vocab[:3]}")
    folder = Path(path)
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(folder)
    return folder
