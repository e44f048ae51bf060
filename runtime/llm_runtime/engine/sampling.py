"""Next-token choice for a whole batch, each row with its own sampling settings and RNG.

Greedy rows (temperature 0) share one argmax over the batch. Sampled rows are processed one by
one because each owns a `torch.Generator` seeded from the request: a request with a seed gets the
same tokens whatever else is in the batch, which a single batched multinomial could not promise.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass(frozen=True)
class RowSampling:
    """One row's sampling settings (already validated)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def make_generator(*, seed: int | None, device: torch.device) -> torch.Generator:
    """A per-request RNG: seeded when the client asks for reproducibility, random otherwise."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)
    return generator


def filter_logits(logits: torch.Tensor, *, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) every logit outside the top-k and outside the top-p nucleus of a 1-D row."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_row(logits: torch.Tensor, row: RowSampling) -> int:
    """Draw one token from a 1-D float logits row."""
    scaled = filter_logits(logits / row.temperature, top_k=row.top_k, top_p=row.top_p)
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=row.generator).item())


def choose_tokens(logits: torch.Tensor, rows: list[RowSampling]) -> list[int]:
    """Pick the next token for every row of `logits` ([rows, vocab], float32)."""
    chosen = logits.argmax(dim=-1).tolist()
    for index, row in enumerate(rows):
        if not row.greedy:
            chosen[index] = sample_row(logits[index], row)
    return [int(token) for token in chosen]
