"""Next-token choice for a whole batch, each row with its own sampling settings and RNG.

Greedy rows (temperature 0) share one argmax over the batch. Sampled rows are processed one by
one because each owns a `torch.Generator` seeded from the request: a request with a seed gets the
same tokens whatever else is in the batch, which a single batched multinomial could not promise.

Numerics are per row: a temperature so small that dividing by it overflows is the greedy choice
(its limit), and a row whose logits are not finite gets no token (None) - that request fails
alone (NumericalError), never the batch it shares; so does a row whose sampling raises.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from llm_runtime import types

log = logging.getLogger(__name__)

# Below this temperature sampling is greedy: softmax(logits / 1e-6) already puts all the mass on
# the top logit whenever it leads by more than ~1e-4, and smaller divisors risk overflow.
GREEDY_BELOW = 1e-6


@dataclasses.dataclass(frozen=True)
class RowSampling:
    """One row's sampling settings (already validated)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None

    @property
    def greedy(self) -> bool:
        """Temperature 0, or so close to it that sampling is the argmax (and dividing by it
        would overflow float32 into inf and NaN probabilities)."""
        return self.temperature < GREEDY_BELOW


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
    """Draw one token from a finite 1-D float logits row; probabilities that still come out
    non-finite (an extreme temperature) fall back to the greedy token, their limit."""
    scaled = filter_logits(logits / row.temperature, top_k=row.top_k, top_p=row.top_p)
    probs = torch.softmax(scaled, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0.0:
        return int(logits.argmax().item())
    return int(torch.multinomial(probs, 1, generator=row.generator).item())


def finite_rows(logits: torch.Tensor) -> list[bool]:
    """Whether each row of `logits` is all finite. A row's sum is finite only if every entry is
    (an inf makes it inf, a NaN or opposite infs make it NaN), so one sum clears the normal rows;
    the elementwise check runs only on rows whose sum is not finite (huge finite logits can
    overflow it). At [64, 49152] the elementwise check over everything took ~23 ms a step, the
    sum ~2 ms."""
    finite = [bool(ok) for ok in torch.isfinite(logits.sum(dim=-1)).tolist()]
    for index, ok in enumerate(finite):
        if not ok:
            finite[index] = bool(torch.isfinite(logits[index]).all())
    return finite


def choose_tokens(logits: torch.Tensor, rows: list[RowSampling]) -> list[int | types.RuntimeError_]:
    """Pick the next token for every row of `logits` ([rows, vocab], float32). A row whose logits
    are not all finite gets a NumericalError, a row whose sampling failed the error: that request
    fails, the others are unaffected."""
    finite = finite_rows(logits)
    # max(dim).indices is argmax (the first maximal index), and ran 1.6x faster at 64 rows.
    greedy = logits.max(dim=-1).indices.tolist()
    chosen: list[int | types.RuntimeError_] = [int(t) for t in greedy]
    for index, row in enumerate(rows):
        if not finite[index]:
            chosen[index] = types.NumericalError("the model produced non-finite logits")
        elif not row.greedy:
            chosen[index] = _sample_isolated(logits[index], row)
    return chosen


def _sample_isolated(logits: torch.Tensor, row: RowSampling) -> int | types.RuntimeError_:
    try:
        return sample_row(logits, row)
    except Exception as exc:  # a torch error for this row's settings: this request only
        log.exception("sampling failed for one row; the others go on")
        return types.RuntimeError_(f"sampling failed: {type(exc).__name__}")
