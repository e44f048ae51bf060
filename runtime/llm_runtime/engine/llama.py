"""A direct forward pass for Llama-family models over the slot KV cache, using the model's weights.

Why not call the HF model's forward: its cache and mask plumbing assume one shared sequence
length per batch (left padding) or paged attention over every cached token (continuous batching),
and both were measured slower here than needed. This forward is ~100 lines and does exactly two
things:

* `prefill` packs prompt chunks (whole prompts, or slices of a long one) into one
  `[tokens, hidden]` matrix, so the big matmuls (QKV, O, MLP) run once over all of them without
  padding, then runs causal attention per sequence and writes each sequence's K/V into its
  slot. Only each chunk's last position goes through the LM head (49k-wide for SmolLM2: the
  single largest matmul).
  A chunk may start after positions already cached (an earlier chunk of the same prompt, or
  the shared prefix): a prefix many prompts share (the chat template's system prompt: ~20 of
  SmolLM2's ~40 prompt tokens) is computed once by `set_prefix` and copied into each slot by
  `copy_prefix`, so prefill computes only the rest - half the work for typical chat requests.
* `decode` runs one token for every running sequence: batched matmuls over `[batch, hidden]`,
  and attention of each row against its own slot via one batched matmul with a length mask.

On CPU a decode step runs its small ops on one thread (`serial`): each op that torch splits over
the OpenMP threads (any tensor past 32k elements: a decode step at N >= 57, and attention at any
N) pays a wake-up of the idle, passive workers of ~40 us, more than the op itself. Only matmuls
with enough work (`PARALLEL_MACS`) still use every thread. Measured on the 2-vCPU EPYC (SmolLM2,
bf16): the decode step 1.7x faster at N=1, 1.25x at N=32, 1.5x at N=64.

Q/K/V and gate/up projections are fused into one matmul each (fewer, larger kernels); the
model's own Linear weights become views into the fused tensors. On CPU every projection runs
oneDNN's kernel on a prepacked weight (`Linear`), up to 1.8x faster than `F.linear`.
Supports model types whose layers have the Llama shape (llama, mistral without a sliding window
shorter than a slot, qwen2 with its QKV bias); `architectures` registers it for those types, and
`LlamaRunner` raises `runners.UnsupportedModelError` for a model it cannot serve after all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from llm_runtime.engine import kvcache

# Re-exported: the runner contract's types, under the names this module's callers have used.
from llm_runtime.engine.runners import Chunk as Chunk
from llm_runtime.engine.runners import UnsupportedModelError as UnsupportedModelError

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})

# A matmul of at least this many multiply-adds (rows x weight elements) in a decode step runs on
# every thread; smaller ones, like every other decode op, run on one. On the 2-vCPU EPYC a
# matmul below ~2^24 (100-200 us of one core) lost more to waking the second thread than it gained.
PARALLEL_MACS = 2**24


@contextlib.contextmanager
def serial(device: torch.device) -> Iterator[int]:
    """Run the body on one intra-op thread (CPU only); yields the thread count to restore, which
    `Linear` uses for its large matmuls (0: leave threads alone)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads <= 1:
        yield 0
        return
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def check_supported(model: Any, *, max_len: int) -> None:
    """Raise UnsupportedModelError unless `model` has the Llama layer shape this forward needs."""
    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModelError(
            f"model type {config.model_type!r} is not supported by the batching engine "
            f"(supported: {', '.join(sorted(SUPPORTED_MODEL_TYPES))})"
        )
    window = getattr(config, "sliding_window", None)
    if window is not None and window < max_len:
        raise UnsupportedModelError(f"sliding_window={window} is shorter than a slot ({max_len})")
    if hasattr(model.model.layers[0].self_attn, "q_norm"):
        raise UnsupportedModelError("attention with q/k norms is not supported")


def _fuse(linears: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate Linear weights (and biases) and re-point each Linear at its slice of the result."""
    weight = torch.cat([lin.weight.data for lin in linears], dim=0).contiguous()
    biases = [lin.bias for lin in linears]
    bias = None
    if all(b is not None for b in biases):
        bias = torch.cat([b.data for b in biases], dim=0).contiguous()
    start = 0
    for lin in linears:
        rows = lin.weight.shape[0]
        lin.weight.data = weight[start : start + rows]
        if bias is not None:
            lin.bias.data = bias[start : start + rows]
        start += rows
    return weight, bias


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm exactly: statistics in float32, scale in the model dtype. torch's fused
    kernel on the float32 copy replaces HF's five ops (pow, mean, add, rsqrt, mul) with one and
    gave bit-identical results (checked against the unfused form in the tests)."""
    normed = F.rms_norm(x.float(), (x.shape[-1],), eps=eps)
    return weight * normed.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding on `[tokens, heads, head_dim]` with `cos`/`sin` of `[tokens, 1, head_dim]`."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Linear:
    """`F.linear` with the weight prepacked for oneDNN when on CPU.

    Measured here (bf16, 2 threads): the packed kernel ran the 49k-wide LM head 1.8x faster at 32
    rows and 1.6x at 1 row, and the MLP projections 1.1-1.7x, with bit-identical results. The
    packed copy costs weight memory once more (~270 MB for SmolLM2); the HF model keeps its own.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, *, pack_rows: int) -> None:
        self.weight, self.bias = weight, bias
        self.packed: torch.Tensor | None = None
        if pack_rows and _can_pack(weight):
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, pack_rows)
            rng = torch.Generator().manual_seed(0)
            probe = torch.randn(3, weight.shape[1], generator=rng).to(weight.dtype)
            if not torch.allclose(self(probe), F.linear(probe, weight, bias), atol=1e-2, rtol=1e-2):
                self.packed = None  # never trust a kernel that disagrees with the reference

    def __call__(self, x: torch.Tensor, threads: int = 0) -> torch.Tensor:
        """`threads` > 0 (inside `serial`): use that many threads if the matmul is large enough."""
        if threads and x.shape[0] * self.weight.numel() >= PARALLEL_MACS:
            torch.set_num_threads(threads)
            try:
                return self._apply(x)
            finally:
                torch.set_num_threads(1)
        return self._apply(x)

    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(
                x, self.packed, self.bias, "none", [], ""
            )
            return out
        return F.linear(x, self.weight, self.bias)


def _can_pack(weight: torch.Tensor) -> bool:
    return (
        weight.device.type == "cpu"
        and weight.dtype in (torch.bfloat16, torch.float32)
        and bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]
    )


class _Layer:
    """The tensors one decoder layer needs, pulled out of the HF module once."""

    def __init__(self, layer: Any, *, pack_rows: int) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = Linear(*_fuse([attn.q_proj, attn.k_proj, attn.v_proj]), pack_rows=pack_rows)
        self.gate_up = Linear(*_fuse([mlp.gate_proj, mlp.up_proj]), pack_rows=pack_rows)
        self.o_proj = Linear(attn.o_proj.weight, attn.o_proj.bias, pack_rows=pack_rows)
        self.down_proj = Linear(mlp.down_proj.weight, mlp.down_proj.bias, pack_rows=pack_rows)
        self.act = mlp.act_fn
        self.in_norm_w = layer.input_layernorm.weight
        self.in_eps = float(layer.input_layernorm.variance_epsilon)
        self.post_norm_w = layer.post_attention_layernorm.weight
        self.post_eps = float(layer.post_attention_layernorm.variance_epsilon)


class LlamaRunner:
    """Runs prefill and decode steps of one model against one KVCache."""

    def __init__(self, model: Any, *, slots: int, max_len: int) -> None:
        check_supported(model, max_len=max_len)
        config = model.config
        self.model = model
        self.device: torch.device = next(model.parameters()).device
        self.dtype: torch.dtype = next(model.parameters()).dtype
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.head_dim = int(
            getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        )
        self.scale = self.head_dim**-0.5
        self.layers = [_Layer(layer, pack_rows=slots) for layer in model.model.layers]
        head = model.lm_head
        self.lm_head = Linear(head.weight, head.bias, pack_rows=slots)
        self.cache = kvcache.KVCache(
            layers=len(self.layers),
            slots=slots,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            max_len=max_len,
            dtype=self.dtype,
            device=self.device,
        )
        positions = torch.arange(max_len, device=self.device)[None, :]
        probe = torch.zeros(1, dtype=self.dtype, device=self.device)
        with torch.inference_mode():
            cos, sin = model.model.rotary_emb(probe, positions)
        self.cos, self.sin = cos[0], sin[0]  # [max_len, head_dim], model dtype, as HF computes
        self.prefix_ids: list[int] = []
        self.prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    @torch.inference_mode()
    def set_prefix(self, ids: list[int]) -> None:
        """Compute and keep the K/V of a prompt prefix many requests share (the chat template's
        system prompt), so `copy_prefix` can put it in a slot instead of recomputing it. Call
        only while no sequence runs: slot 0 is used as scratch."""
        self.prefix_ids, self.prefix_kv = [], None
        if not ids:
            return
        self.prefill([Chunk(slot=0, start=0, ids=list(ids))])
        n = len(ids)
        self.prefix_kv = (
            self.cache.k[:, 0, :, :n].clone(),
            self.cache.v[:, 0, :, :n].clone(),
        )
        self.prefix_ids = list(ids)

    def cached_prefix(self, prompt: list[int]) -> int:
        """How many leading tokens of `prompt` the shared prefix covers (0 or its length); at
        least one prompt token is always left to compute, since its logits are needed."""
        n = len(self.prefix_ids)
        if n and len(prompt) > n and prompt[:n] == self.prefix_ids:
            return n
        return 0

    def copy_prefix(self, slot: int, prompt: list[int]) -> int:
        """Put the shared prefix's K/V in `slot` when `prompt` starts with it; tokens covered."""
        n = self.cached_prefix(prompt)
        if n and self.prefix_kv is not None:
            self.cache.grow(n)
            self.cache.k[:, slot, :, :n] = self.prefix_kv[0]
            self.cache.v[:, slot, :, :n] = self.prefix_kv[1]
        return n

    def prefill(self, chunks: list[Chunk]) -> torch.Tensor:
        """Compute K/V for each chunk (positions `start..` of its slot, whose earlier positions
        are already cached) and return float32 logits of each chunk's last token."""
        lengths = [len(c.ids) for c in chunks]
        self.cache.grow(max(c.start + len(c.ids) for c in chunks))
        ids = torch.tensor([t for c in chunks for t in c.ids], device=self.device)
        positions = torch.cat(
            [torch.arange(c.start, c.start + len(c.ids), device=self.device) for c in chunks]
        )
        token_slots = torch.cat(
            [torch.full((len(c.ids),), c.slot, device=self.device) for c in chunks]
        )
        starts = [sum(lengths[:i]) for i in range(len(lengths))]
        masks = [self._prefill_mask(c.start, len(c.ids)) for c in chunks]
        x = self.model.model.embed_tokens(ids)
        cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        for index, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, cos, sin)
            self.cache.k[index][token_slots, :, positions] = k
            self.cache.v[index][token_slots, :, positions] = v
            outs = []
            for row, chunk, mask in zip(starts, chunks, masks, strict=True):
                n, end = len(chunk.ids), chunk.start + len(chunk.ids)
                outs.append(
                    F.scaled_dot_product_attention(
                        q[row : row + n].transpose(0, 1)[None],
                        self.cache.k[index, chunk.slot : chunk.slot + 1, :, :end],
                        self.cache.v[index, chunk.slot : chunk.slot + 1, :, :end],
                        attn_mask=mask,
                        is_causal=mask is None,
                        scale=self.scale,
                        enable_gqa=True,
                    )[0].transpose(0, 1)
                )
            x = self._finish_layer(layer, x, torch.cat(outs).reshape(x.shape[0], -1))
        last = torch.tensor([s + n - 1 for s, n in zip(starts, lengths, strict=True)])
        return self._logits(x[last.to(self.device)])

    def _prefill_mask(self, skip: int, n: int) -> torch.Tensor | None:
        """Causal mask for `n` new queries after `skip` cached keys (None: plain causal)."""
        if skip == 0:
            return None
        keys = torch.arange(skip + n, device=self.device)[None, :]
        queries = torch.arange(skip, skip + n, device=self.device)[:, None]
        return keys <= queries

    def decode(self, tokens: list[int], positions: list[int]) -> torch.Tensor:
        """One step for slots 0..len(tokens)-1: token i sits at `positions[i]`. Float32 logits."""
        with serial(self.device) as threads:
            return self._decode(tokens, positions, threads)

    def _decode(self, tokens: list[int], positions: list[int], threads: int) -> torch.Tensor:
        batch = len(tokens)
        self.cache.grow(max(positions) + 1)
        ids = torch.tensor(tokens, device=self.device)
        pos = torch.tensor(positions, device=self.device)
        rows = torch.arange(batch, device=self.device)
        cap = self.cache.capacity
        visible = torch.arange(cap, device=self.device)[None, :] <= pos[:, None]
        # 0 or -inf: adding it in the model dtype is exact, so the float32 softmax below sees
        # what adding it in float32 gave, without a float32 copy of the scores per layer.
        bias = torch.zeros(visible.shape, dtype=self.dtype, device=self.device)
        bias = bias.masked_fill(~visible, float("-inf"))[:, None, None, :]
        groups = self.heads // self.kv_heads
        x = self.model.model.embed_tokens(ids)
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]
        for index, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, x, cos, sin, threads)
            self.cache.k[index][rows, :, pos] = k
            self.cache.v[index][rows, :, pos] = v
            keys, values = self.cache.k[index, :batch], self.cache.v[index, :batch]
            grouped = (q * self.scale).view(batch, self.kv_heads, groups, self.head_dim)
            scores = grouped @ keys.transpose(-1, -2) + bias
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(self.dtype)
            x = self._finish_layer(layer, x, (probs @ values).reshape(batch, -1), threads)
        return self._logits(x, threads)

    def _qkv(
        self, layer: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, threads: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = _rms_norm(x, layer.in_norm_w, layer.in_eps)
        qkv = layer.qkv(h, threads).view(x.shape[0], -1, self.head_dim)
        qk = _rope(qkv[:, : self.heads + self.kv_heads], cos, sin)
        return qk[:, : self.heads], qk[:, self.heads :], qkv[:, self.heads + self.kv_heads :]

    def _finish_layer(
        self, layer: _Layer, x: torch.Tensor, attn: torch.Tensor, threads: int = 0
    ) -> torch.Tensor:
        x = x + layer.o_proj(attn, threads)
        h = _rms_norm(x, layer.post_norm_w, layer.post_eps)
        gate, up = layer.gate_up(h, threads).chunk(2, dim=-1)
        return x + layer.down_proj(layer.act(gate) * up, threads)

    def _logits(self, x: torch.Tensor, threads: int = 0) -> torch.Tensor:
        return self.lm_head(self.model.model.norm(x), threads).float()
