"""Tiny models built locally in seconds, no downloads: a Qwen2-architecture causal LM with random
weights and a byte-level BPE tokenizer trained on a local corpus, with a ChatML chat template
that marks assistant tokens (`{% generation %}`), saved as a Hugging Face directory.

    swerl models tiny --out models/tiny                  # defaults: ~0.5M parameters, 2k vocab
    build_tiny_model("models/tiny", corpus=texts, hidden_size=128, layers=4)

Real models load the same way, from any local Hugging Face directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import swerl
from swerl.lake import Lake

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

STAGE = "tiny_model"

# torch / transformers / tokenizers are imported inside the functions, so that importing this
# module (the CLI does) stays fast.

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as Qwen2.5 renders it but with no injected default system prompt, and with generation
# markers so `return_assistant_tokens_mask` works.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Sizes of a tiny model; every field is configurable from the CLI."""

    vocab_size: int = 2048
    """Target BPE vocabulary size (the corpus may support fewer merges)."""
    hidden_size: int = 64
    """Width of the residual stream."""
    layers: int = 2
    """Number of transformer blocks."""
    heads: int = 4
    """Attention heads (hidden_size must divide by it)."""
    kv_heads: int = 2
    """Key/value heads (grouped-query attention, as Qwen2)."""
    intermediate_size: int = 176
    """Width of the MLP."""
    max_positions: int = 32768
    """Longest sequence the position embedding supports."""
    seed: int = 0
    """Seed of the random weights."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} must divide by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must divide by kv_heads {self.kv_heads}")
        if self.vocab_size < 300:
            raise ValueError(
                f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}"
            )


def default_corpus() -> list[str]:
    """The text of swerl's own source and prompts: local, and close to what agents read."""
    root = Path(swerl.__file__).resolve().parent
    texts = [p.read_text() for p in sorted(root.rglob("*.py"))]
    prompts = root.parent / "configs" / "prompts"
    if prompts.is_dir():
        texts += [p.read_text() for p in sorted(prompts.rglob("*")) if p.is_file()]
    return texts


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (any text round-trips) with the ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out: str | Path, spec: TinySpec = TinySpec(), corpus: Iterable[str] | None = None
) -> Path:
    """Train the tokenizer, initialise the model, and save both to `out` (a new directory)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    tokenizer = train_tokenizer(default_corpus() if corpus is None else corpus, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "swerl_tiny.json").write_text(json.dumps(asdict(spec), indent=2))
    return out


def publish_tiny_model(lake: Lake, spec: TinySpec = TinySpec(), name: str = "tiny") -> str:
    """Build a tiny model straight into the lake as a `models` version named `name` (the base
    policy of the dev-tiny config); the same spec and code return the existing version."""
    parameters = asdict(spec)
    existing = lake.find(
        "models", lake.fingerprint("models", stage=STAGE, parameters=parameters, name=name)
    )
    if existing is not None:
        return existing.version
    with lake.directory("models", stage=STAGE, parameters=parameters, name=name) as w:
        build_tiny_model(w.path, spec)
    return w.version
