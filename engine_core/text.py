"""UMT5 prompt encoding, as the ShotStream reference does it, with an LRU cache of embeddings.

Reference behaviour reproduced here (``utils/wan_wrapper.py``, ``wan/modules/tokenizers.py``):
the shot prompt is ``global_caption + "shot{i}:" + shot_caption``; text is cleaned with
``clean='whitespace'`` (ftfy, html-unescape twice, whitespace collapse); tokens are padded and
truncated to ``text_len`` (512) with ``</s>`` appended; encoder outputs at padding positions are
set to zero. Long prompts are silently truncated by the reference; here truncation is reported
(:meth:`TextEncoder.prompt_info` and a log warning) but is not an error.

Game events repeat prompts (every shot re-encodes captions 0..k), hence the cache.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import ftfy
import torch
from transformers import ByT5Tokenizer, PreTrainedTokenizerBase, UMT5Config, UMT5EncoderModel

from engine_core.config import TextConfig
from engine_core.transfer import upload

logger = logging.getLogger(__name__)

_WHITESPACE = re.compile(r"\s+")


def format_prompt(global_caption: str, shot_index: int, shot_caption: str) -> str:
    """The reference's prompt for shot ``shot_index`` (0-based): a plain concatenation, no separator."""
    if shot_index < 0:
        raise ValueError(f"shot_index must be >= 0 (0-based), got {shot_index}")
    return global_caption + f"shot{shot_index}:" + shot_caption


def clean_prompt(text: str) -> str:
    """The reference tokenizer's ``clean='whitespace'``: fix mojibake, unescape HTML, collapse whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return _WHITESPACE.sub(" ", text).strip()


def build_text_encoder(cfg: TextConfig) -> UMT5EncoderModel:
    """A randomly initialised UMT5 encoder with the config's sizes (weights are loaded later)."""
    config = UMT5Config(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        d_kv=cfg.d_kv,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
    )
    return UMT5EncoderModel(config).eval().requires_grad_(False)


def build_byte_tokenizer() -> ByT5Tokenizer:
    """A file-free byte-level tokenizer (384 ids, T5's pad/eos ids) for configs without a real vocabulary."""
    return ByT5Tokenizer()


@dataclass(frozen=True)
class PromptInfo:
    """How a prompt fits the text window: tokens kept (incl. ``</s>``) and tokens cut off the end."""

    num_tokens: int
    truncated_tokens: int

    @property
    def truncated(self) -> bool:
        return self.truncated_tokens > 0


class TextEncoder:
    """Encodes prompts to ``[n, text_len, d_model]`` embeddings, caching each prompt's embedding.

    The cache is an LRU of ``cache_size`` prompts keyed by the prompt string, held on the model's
    device: at full size one entry is ``512 x 4096`` values (4 MiB in bf16). Thread-safe.
    """

    def __init__(
        self,
        model: UMT5EncoderModel,
        tokenizer: PreTrainedTokenizerBase,
        text_len: int,
        max_prompt_chars: int = 10_000,
        cache_size: int = 256,
    ) -> None:
        if text_len < 1 or max_prompt_chars < 1 or cache_size < 0:
            raise ValueError(
                f"need text_len >= 1, max_prompt_chars >= 1, cache_size >= 0; got {text_len}, "
                f"{max_prompt_chars}, {cache_size}"
            )
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} ids but the text encoder's vocabulary is "
                f"{model.config.vocab_size}; load the tokenizer that belongs to this checkpoint"
            )
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len
        self.max_prompt_chars = max_prompt_chars
        self.cache_size = cache_size
        self.cache_hits = 0
        self.cache_misses = 0
        self._cache: OrderedDict[str, tuple[torch.Tensor, PromptInfo]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Embed ``prompts`` -> ``[n, text_len, d_model]``; padding rows are exactly zero.

        All prompts are validated before anything runs; prompts not in the cache run through the
        model in one batch.
        """
        if isinstance(prompts, str):
            raise ValueError("encode takes a list of prompts, not a single string; wrap it: encode([prompt])")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("encode needs at least one prompt")
        cleaned = {p: self._clean_checked(p, f"prompt {i}") for i, p in enumerate(prompts)}
        with self._lock:
            found: dict[str, torch.Tensor] = {}
            for p in dict.fromkeys(prompts):
                if p in self._cache:
                    self._cache.move_to_end(p)
                    found[p] = self._cache[p][0]
            missing = [p for p in dict.fromkeys(prompts) if p not in found]
            self.cache_misses += len(missing)
            self.cache_hits += len(prompts) - len(missing)
            if missing:
                fresh = self._run([cleaned[p] for p in missing])
                for p, embedding in zip(missing, fresh):
                    info = self._info(cleaned[p])
                    if info.truncated:
                        logger.warning(
                            "prompt truncated to %d tokens, %d tokens dropped from the end: %.80r...",
                            self.text_len, info.truncated_tokens, cleaned[p],
                        )
                    found[p] = embedding = embedding.clone()  # do not pin the whole batch in the cache
                    self._remember(p, embedding, info)
            return torch.stack([found[p] for p in prompts])

    def prompt_info(self, prompt: str) -> PromptInfo:
        """Token count after cleaning and how many tokens the ``text_len`` window cuts off."""
        with self._lock:
            if prompt in self._cache:
                return self._cache[prompt][1]
        return self._info(self._clean_checked(prompt, "prompt"))

    def _clean_checked(self, prompt: object, what: str) -> str:
        if not isinstance(prompt, str):
            raise ValueError(f"{what} must be a str, got {type(prompt).__name__}")
        if len(prompt) > self.max_prompt_chars:
            raise ValueError(
                f"{what} is {len(prompt)} characters long; the limit is {self.max_prompt_chars} "
                "(max_prompt_chars). Shorten it"
            )
        cleaned = clean_prompt(prompt)
        if not cleaned:
            raise ValueError(f"{what} is empty or only whitespace; give the shot some text")
        return cleaned

    def _info(self, cleaned: str) -> PromptInfo:
        ids = self.tokenizer(cleaned, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
        total = len(ids)
        kept = min(total, self.text_len)
        return PromptInfo(num_tokens=kept, truncated_tokens=total - kept)

    @torch.no_grad()
    def _run(self, cleaned: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            cleaned,
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = upload(batch["input_ids"], self.device)
        mask = upload(batch["attention_mask"], self.device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden.masked_fill(mask.unsqueeze(-1) == 0, 0.0)

    def _remember(self, prompt: str, embedding: torch.Tensor, info: PromptInfo) -> None:
        if self.cache_size == 0:
            return
        self._cache[prompt] = (embedding, info)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
