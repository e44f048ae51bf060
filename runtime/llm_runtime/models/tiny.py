"""Tiny random models for fast tests: a real tokenizer and a real architecture, random weights.

`make_tiny_model` writes a plain HF directory (config, safetensors, tokenizer with a ChatML chat
template like SmolLM2's) in well under two seconds, so unit tests can build one per test. Its
greedy output is gibberish, which the canary tests rely on: it loads, serves, and does not
answer "Paris".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# ChatML, as SmolLM2 uses it (without SmolLM2's default system prompt, to keep prompts short).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# A few sentences are enough for a byte-level BPE: every byte is in the base alphabet anyway.
_CORPUS = (
    "What is the capital of France? The capital of France is Paris.",
    "You are a helpful assistant. Answer the question briefly and politely.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps.",
    "Kubernetes operators deploy language models and roll out canaries safely.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and punctuation , . ; : ! ? ( ) [ ] { } ' \" - _",
)
ARCHITECTURES = ("llama",)
VOCAB_SIZE = 512
CONTEXT_LENGTH = 512


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer with ChatML special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS, trainer=trainer)
    fast: Any = PreTrainedTokenizerFast  # transformers leaves its __init__ unannotated
    return fast(
        tokenizer_object=raw,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=CONTEXT_LENGTH,
    )


def tiny_config(
    tokenizer: Any, *, arch: str = "llama", context_length: int = CONTEXT_LENGTH
) -> Any:
    """Two layers, hidden size 64, grouped-query attention: every code path of a real Llama."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown tiny architecture {arch!r}; choose one of {ARCHITECTURES}")
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def make_tiny_model(
    dst: str | Path, *, seed: int = 0, arch: str = "llama", context_length: int = CONTEXT_LENGTH
) -> Path:
    """Write a tiny random causal LM + tokenizer to `dst` (an HF directory) and return it.
    A longer `context_length` lets a test ask for generations that outlast a deadline.

    The same seed gives the same weights; torch's global RNG is left as it was.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(dst)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, arch=arch, context_length=context_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        auto: Any = AutoModelForCausalLM
        model = auto.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _permute_for_gguf(weight: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order (interleaved rotary halves); transformers undoes it on load."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _gguf_tensors(model: Any, config: Any) -> dict[str, Any]:
    """The model's weights under llama.cpp tensor names, as float32 numpy arrays."""
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    hf_names = {
        "attn_norm": "input_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    for i in range(config.num_hidden_layers):
        for gguf_name, hf_name in hf_names.items():
            weight = state[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name == "attn_q":
                weight = _permute_for_gguf(weight, config.num_attention_heads)
            elif gguf_name == "attn_k":
                weight = _permute_for_gguf(weight, config.num_key_value_heads)
            out[f"blk.{i}.{gguf_name}.weight"] = weight
    return out


def _add_gguf_tokenizer(writer: Any, tokenizer: Any) -> None:
    import json

    spec = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab: dict[str, int] = spec["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if t in SPECIAL_TOKENS else 1 for t in tokens])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_unk_token_id(tokenizer.unk_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)


def make_tiny_gguf(dst: str | Path, *, seed: int = 0) -> Path:
    """Write the tiny model of `make_tiny_model(seed=seed)` as a float32 GGUF file at `dst`, so
    unit tests cover the GGUF path without the 98 MB default model."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(dst)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        auto: Any = AutoModelForCausalLM
        model = auto.from_config(config, dtype=torch.float32)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(path.stem)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    _add_gguf_tokenizer(writer, tokenizer)
    for name, array in _gguf_tensors(model, config).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
