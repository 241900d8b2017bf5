"""Prompt formatting, cleaning and UMT5 encoding (tiny random encoder, byte and Unigram tokenizers)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from fixtures_text import write_test_tokenizer
from transformers import AutoTokenizer, T5Tokenizer

from engine_core.config import TINY
from engine_core.text import (
    PromptInfo,
    TextEncoder,
    build_byte_tokenizer,
    build_text_encoder,
    clean_prompt,
    format_prompt,
)

TEXT_LEN = TINY.text.text_len
D_MODEL = TINY.text.d_model


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_text_encoder(TINY.text)


@pytest.fixture(scope="module")
def tokenizer():
    return build_byte_tokenizer()


@pytest.fixture
def encoder(model, tokenizer) -> TextEncoder:
    return TextEncoder(model, tokenizer, TEXT_LEN)


@contextmanager
def count_forwards(model: torch.nn.Module) -> Iterator[list[int]]:
    """Record the batch size of every model forward inside the block."""
    batches: list[int] = []
    def hook(_module, _args, kwargs, _output) -> None:
        batches.append(kwargs["input_ids"].shape[0])

    handle = model.register_forward_hook(hook, with_kwargs=True)
    try:
        yield batches
    finally:
        handle.remove()


def direct_embedding(model, tokenizer, prompt: str) -> torch.Tensor:
    """What the reference computes for one prompt, without any of TextEncoder's machinery."""
    batch = tokenizer([prompt], padding="max_length", truncation=True, max_length=TEXT_LEN,
                      add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return out[0] * batch["attention_mask"][0, :, None]


def test_format_prompt_is_plain_concatenation() -> None:
    assert format_prompt("A rainy city at night.", 0, "A cat.") == "A rainy city at night.shot0:A cat."
    assert format_prompt("G ", 12, " s") == "G shot12: s"
    with pytest.raises(ValueError, match="0-based"):
        format_prompt("G", -1, "s")


def test_clean_prompt() -> None:
    assert clean_prompt("  a \n\t b\u00a0 c  ") == "a b c"
    assert clean_prompt("Tom &amp;amp; Jerry &lt;3") == "Tom & Jerry <3"  # unescaped twice
    assert clean_prompt("The cat doesnâ€™t care") == "The cat doesn't care"  # mojibake fixed by ftfy
    assert clean_prompt(" \n ") == ""


def test_encode_shape_dtype_and_padding_rows(encoder: TextEncoder) -> None:
    out = encoder.encode(["hello", "a knight in the rain"])
    assert out.shape == (2, TEXT_LEN, D_MODEL) and out.dtype == torch.float32
    real = len("hello") + 1  # byte tokens + </s>
    assert torch.all(out[0, :real].abs().sum(-1) > 0)
    assert torch.equal(out[0, real:], torch.zeros(TEXT_LEN - real, D_MODEL))
    assert encoder.prompt_info("hello") == PromptInfo(num_tokens=real, truncated_tokens=0)


def test_encode_follows_model_dtype(tokenizer) -> None:
    torch.manual_seed(0)
    bf16 = TextEncoder(build_text_encoder(TINY.text).to(torch.bfloat16), tokenizer, TEXT_LEN)
    assert bf16.encode(["hello"]).dtype == torch.bfloat16


def test_embedding_independent_of_batch_and_equals_direct_call(encoder, model, tokenizer) -> None:
    prompt = "A lighthouse keeper climbs the stairs."
    alone = TextEncoder(model, tokenizer, TEXT_LEN).encode([prompt])[0]
    batched = encoder.encode(["short", prompt, "x" * 100])[1]
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(alone, direct_embedding(model, tokenizer, prompt), atol=1e-6, rtol=0)


def test_cache_hits_skip_the_model(encoder: TextEncoder, model) -> None:
    with count_forwards(model) as batches:
        first = encoder.encode(["a", "b"])
        assert batches == [2] and (encoder.cache_hits, encoder.cache_misses) == (0, 2)
        again = encoder.encode(["b", "a", "b"])
        assert batches == [2] and (encoder.cache_hits, encoder.cache_misses) == (3, 2)
        assert torch.equal(again[0], first[1]) and torch.equal(again[1], first[0])
        encoder.encode(["a", "c", "d", "c"])  # only the two new prompts run, as one batch
        assert batches == [2, 2] and (encoder.cache_hits, encoder.cache_misses) == (5, 4)
    again[0].zero_()  # callers get copies; the cache is untouched
    assert torch.equal(encoder.encode(["b"])[0], first[1])


def test_cache_evicts_least_recently_used(model, tokenizer) -> None:
    encoder = TextEncoder(model, tokenizer, TEXT_LEN, cache_size=2)
    with count_forwards(model) as batches:
        encoder.encode(["a"])
        encoder.encode(["b"])
        encoder.encode(["a"])  # hit: "a" is now the most recent
        encoder.encode(["c"])  # evicts "b"
        assert len(batches) == 3
        encoder.encode(["a", "c"])
        assert len(batches) == 3
        encoder.encode(["b"])
        assert len(batches) == 4
    assert (encoder.cache_hits, encoder.cache_misses) == (3, 4)

    uncached = TextEncoder(model, tokenizer, TEXT_LEN, cache_size=0)
    with count_forwards(model) as batches:
        uncached.encode(["a"])
        uncached.encode(["a"])
    assert batches == [1, 1]


def test_more_new_prompts_than_cache_size(model, tokenizer) -> None:
    encoder = TextEncoder(model, tokenizer, TEXT_LEN, cache_size=1)
    out = encoder.encode(["a", "b", "c"])
    torch.testing.assert_close(out[0], direct_embedding(model, tokenizer, "a"), atol=1e-6, rtol=0)


def test_truncation_is_reported_not_raised(encoder: TextEncoder, caplog) -> None:
    long_prompt = "The hero walks on. " * 10
    cleaned_len = len(clean_prompt(long_prompt))
    info = encoder.prompt_info(long_prompt)
    assert info == PromptInfo(num_tokens=TEXT_LEN, truncated_tokens=cleaned_len + 1 - TEXT_LEN)
    assert info.truncated
    with caplog.at_level(logging.WARNING, logger="engine_core.text"):
        out = encoder.encode([long_prompt])
        encoder.encode([long_prompt])
    assert torch.all(out[0].abs().sum(-1) > 0)  # the whole window is real tokens
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1 and f"{info.truncated_tokens} tokens dropped" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ([""], "prompt 0 is empty or only whitespace"),
        (["ok", " \n\t "], "prompt 1 is empty or only whitespace"),
        (["ok", None], "prompt 1 must be a str, got NoneType"),
        ([b"bytes"], "prompt 0 must be a str, got bytes"),
        (["x" * 51], "prompt 0 is 51 characters long; the limit is 50"),
        ("a bare string", r"not a single string; wrap it: encode\(\[prompt\]\)"),
        ([], "at least one prompt"),
    ],
)
def test_encode_errors(model, tokenizer, prompts, message) -> None:
    encoder = TextEncoder(model, tokenizer, TEXT_LEN, max_prompt_chars=50)
    with count_forwards(model) as batches, pytest.raises(ValueError, match=message):
        encoder.encode(prompts)
    assert batches == []  # everything is validated before the model runs


def test_prompt_info_errors(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        encoder.prompt_info("   ")
    with pytest.raises(ValueError, match="must be a str, got int"):
        encoder.prompt_info(3)


def test_constructor_checks(model, tokenizer) -> None:
    small_vocab = build_text_encoder(dataclasses.replace(TINY.text, vocab_size=100))
    with pytest.raises(ValueError, match="tokenizer has 384 ids but the text encoder's vocabulary is 100"):
        TextEncoder(small_vocab, tokenizer, TEXT_LEN)
    with pytest.raises(ValueError, match="text_len >= 1"):
        TextEncoder(model, tokenizer, 0)


def test_tokenizer_folder_loads_and_encodes(tmp_path, model) -> None:
    corpus = [
        "A knight rides through the misty forest at dawn.",
        "shot0:The dragon wakes up in its cave and roars.",
        "The castle gates open slowly while torches flicker in the wind.",
    ] * 4
    folder = write_test_tokenizer(tmp_path / "tokenizer", corpus)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert isinstance(tokenizer, T5Tokenizer)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)

    encoder = TextEncoder(model, tokenizer, TEXT_LEN)
    prompt = format_prompt("A knight. ", 0, "The dragon.")
    out = encoder.encode([prompt])
    info = encoder.prompt_info(prompt)
    assert out.shape == (1, TEXT_LEN, D_MODEL) and 1 < info.num_tokens < TEXT_LEN
    assert torch.all(out[0, : info.num_tokens].abs().sum(-1) > 0)
    assert torch.equal(out[0, info.num_tokens :], torch.zeros(TEXT_LEN - info.num_tokens, D_MODEL))
    torch.testing.assert_close(out[0], direct_embedding(model, tokenizer, prompt), atol=1e-6, rtol=0)
