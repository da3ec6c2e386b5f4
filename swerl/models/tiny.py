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
    copy_steps: int = 0
    """Steps of the copying warm-up (`warm_up_copying`); 0 leaves the weights random."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} must divide by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must divide by kv_heads {self.kv_heads}")
        if self.copy_steps < 0:
            raise ValueError(f"copy_steps must be >= 0, got {self.copy_steps}")
        if self.vocab_size < 300:
            raise ValueError(
                f"vocab_size must be >= 300 (256 bytes + specials), got {self.vocab_size}"
            )


def default_corpus() -> list[str]:
    """The text of swerl's own source and prompts: local, and close to what agents read. It
    changes with swerl's source, and so does a tokenizer trained on it: for a model that must be
    the same at every commit, train on `prompt_corpus()` and the tasks' own text instead."""
    root = Path(swerl.__file__).resolve().parent
    return [p.read_text() for p in sorted(root.rglob("*.py"))] + prompt_corpus()


def prompt_corpus() -> list[str]:
    """The text of the prompt files under configs/prompts (none if swerl is installed without
    its configs)."""
    prompts = Path(swerl.__file__).resolve().parents[1] / "configs" / "prompts"
    if not prompts.is_dir():
        return []
    return [p.read_text() for p in sorted(prompts.rglob("*")) if p.is_file()]


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
    record: dict = asdict(spec)
    if spec.copy_steps:
        losses = warm_up_copying(
            model, spec.copy_steps, first_id=len(SPECIAL_TOKENS), seed=spec.seed
        )
        tail = losses[-min(50, len(losses)) :]
        # whether copying was learned: ~ln(vocab) before, ~0.1 once it is
        record["copy_loss"] = {"first": losses[0], "last_50_mean": sum(tail) / len(tail)}
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "swerl_tiny.json").write_text(json.dumps(record, indent=2))
    return out


def warm_up_copying(
    model,
    steps: int,
    *,
    first_id: int = 0,
    lr: float = 1e-3,
    batch_size: int = 32,
    length: int = 96,
    seed: int = 0,
) -> list[float]:
    """Teach a random model to copy, the one skill of pretrained models an agent needs most
    (a path or name from the issue into its command). Each sequence is `length` random tokens in
    which a random span (4 to `length // 4` tokens) occurs twice, at random places; the loss is
    on the repeat after its first token, the part that only copying predicts. Lengths and
    distances vary, so a fixed-offset attention cannot solve it: the model must find the earlier
    occurrence of the current token and continue it (an induction head). Token ids below
    `first_id` (the special tokens) never occur. Returns the loss of every step.

    Measured (benchmarks/learning.py's model: 128 wide, 2 layers, 1,024 tokens): the loss stays
    near ln(vocab) for ~1,000 steps, then drops within ~200 to ~0.1, when greedy decoding repeats
    a span seen once (the usual sudden arrival of an induction head); ~2.5 min on 2 CPU cores for
    1,500 steps. A version with a fixed distance between the copies was learned in 200 steps,
    by attending to that offset, which copies nothing from a real prompt."""
    import torch

    vocab = model.config.vocab_size
    rng = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        ids, labels = copy_batch(rng, batch_size, length, vocab, first_id)
        logits = model(input_ids=ids).logits[:, :-1].float()
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return losses


def copy_batch(rng, batch_size: int, length: int, vocab: int, first_id: int = 0):
    """(ids, labels) of `warm_up_copying`: random ids in [first_id, vocab) where each row's span
    of 4 to `length // 4` tokens occurs a second time after the first; labels are the repeat's
    tokens after its first, -100 elsewhere."""
    import torch

    if length < 16:
        raise ValueError(f"copy sequences need length >= 16, got {length}")
    ids = torch.randint(first_id, vocab, (batch_size, length), generator=rng)
    labels = torch.full((batch_size, length), -100)
    for row in range(batch_size):
        n = int(torch.randint(4, length // 4 + 1, (), generator=rng))
        first = int(torch.randint(0, length - 2 * n + 1, (), generator=rng))
        second = int(torch.randint(first + n, length - n + 1, (), generator=rng))
        ids[row, second : second + n] = ids[row, first : first + n]
        labels[row, second + 1 : second + n] = ids[row, second + 1 : second + n]
    return ids, labels


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
