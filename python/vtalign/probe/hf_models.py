"""Loading the encoders `vtalign extract` runs, from a local folder or the local cache only.

Nothing is downloaded: every `from_pretrained` runs with `local_files_only=True`
(and `HF_HUB_OFFLINE=1` unless the caller set it), and a model that is not on
this machine is one ValueError line with the command that fetches it on a
connected machine. `trust_remote_code` is never set: no code from a model
folder runs.

- Video models (a config with `num_frames`: VideoMAE, TimeSformer, ViViT, ...)
  see clips of their native window; image models (ViT, DINOv2, CLIP/SigLIP's
  vision tower, ...) see frames one by one.
- Text models: encoders, decoder LLMs (pad token = EOS when none is set),
  encoder-decoders (their encoder), and sentence-transformers folders (the
  Transformer module named in modules.json).
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
from dataclasses import dataclass

import torch

from vtalign._optional import require

POOLS = ("avg", "cls")


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return require("transformers", "encoders", "loading Hugging Face models")


@contextlib.contextmanager
def _quiet(tf):
    """transformers' loading bars and warnings off while a model loads (ours is the one
    progress bar of a run), and the caller's settings back afterwards."""
    log = tf.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def _one_line(exc: Exception, most: int = 200) -> str:
    """A library's (often multi-line) message as one line of at most `most` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= most else text[:most - 3] + "..."


def _missing(option: str, name: str, exc: Exception) -> ValueError:
    """One line for a model that cannot be loaded from this machine."""
    if os.path.isdir(name):
        return ValueError(f"{option} {name}: the folder holds no loadable model ({_one_line(exc, 160)})")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name:
        return ValueError(f"{option} {name}: no such model folder")
    return ValueError(f"{option} {name}: not in the local Hugging Face cache (nothing is downloaded at run "
                      f"time); on a connected machine run: hf download {name}")


def pool_hidden(h: torch.Tensor, pool: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One hidden state `[B, T, D]` (or a conv map `[B, C, H, W]`) -> `[B, D]` float32:
    the mean over (non-padding) tokens, or the first token for `cls`."""
    h = h.float()
    if h.dim() == 4:
        if pool == "cls":
            raise ValueError("--pool cls: this model's hidden states are feature maps with no CLS token; use avg")
        return h.flatten(2).mean(-1)
    if pool == "cls":
        return h[:, 0]
    if mask is None:
        return h.mean(1)
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


@dataclass
class VisualEncoder:
    """A loaded video or image model with its processor.

    Attributes:
        native: the model's window n_o in frames (None for an image model).
    """
    name: str
    model: torch.nn.Module
    processor: object
    native: int | None
    pool: str
    device: torch.device

    @property
    def kind(self) -> str:
        return "image" if self.native is None else "video"

    def pixels(self, frames) -> torch.Tensor:
        """`[n, H, W, 3]` uint8 frames -> `[n, C, h, w]` float32, resized and normalised by the processor."""
        out = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]
        return out.reshape(-1, *out.shape[-3:]).float()

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Video model: clips `[B, n_o, C, h, w]`; image model: frames `[B, C, h, w]`.
        Returns `[B, L, D]` float32 on the CPU, every hidden state pooled."""
        out = self.model(pixel_values=pixels.to(self.device), output_hidden_states=True)
        return torch.stack([pool_hidden(h, self.pool) for h in out.hidden_states], 1).cpu()


@dataclass
class TextEncoder:
    """A loaded text model with its tokenizer (`max_length` tokens per text)."""
    name: str
    model: torch.nn.Module
    tokenizer: object
    max_length: int
    pool: str
    device: torch.device

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        """`B` strings -> `[B, L, D]` float32 (CPU): every hidden state mean-pooled over non-padding tokens."""
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        accepted = inspect.signature(self.model.forward).parameters
        # a tokenizer may add inputs its model does not take (token_type_ids for a decoder LLM)
        enc = {k: v.to(self.device) for k, v in enc.items() if k in accepted}
        out = self.model(**enc, output_hidden_states=True)
        hidden = out.hidden_states if getattr(out, "hidden_states", None) is not None else out.encoder_hidden_states
        mask = enc.get("attention_mask")
        return torch.stack([pool_hidden(h, self.pool, mask) for h in hidden], 1).cpu()


def _place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return model.to(device).eval()


def load_visual_encoder(name: str, *, pool: str = "avg", device: str | torch.device = "cpu",
                        option: str = "--model") -> VisualEncoder:
    """A video or image model and its image processor from `name` (a folder, or a
    hub id already in the local cache)."""
    if pool not in POOLS:
        raise ValueError(f"--pool must be one of {POOLS}, got {pool!r}")
    tf = _transformers()
    try:
        with _quiet(tf):
            config = tf.AutoConfig.from_pretrained(name, local_files_only=True)
            processor = tf.AutoImageProcessor.from_pretrained(name, local_files_only=True)
            model = tf.AutoModel.from_pretrained(name, local_files_only=True, config=config)
    except OSError as exc:
        raise _missing(option, name, exc) from None
    except ValueError as exc:  # an unknown architecture or a folder without a processor
        raise ValueError(f"{option} {name}: cannot load it as a video or image model: {_one_line(exc)}") from None
    if hasattr(model, "vision_model") and not hasattr(config, "num_frames"):  # CLIP / SigLIP: the image tower
        model = model.vision_model
    native = getattr(config, "num_frames", None)
    dev = torch.device(device)
    return VisualEncoder(name, _place(model, dev), processor, int(native) if native else None, pool, dev)


def _sentence_transformer_root(name: str) -> str:
    """The folder of the Transformer module of a sentence-transformers model folder
    (modules.json), or `name` itself when it is not one."""
    modules = os.path.join(name, "modules.json")
    if not os.path.isfile(modules):
        return name
    with open(modules) as f:
        for m in json.load(f):
            if str(m.get("type", "")).endswith("Transformer"):
                return os.path.join(name, m.get("path", "")) if m.get("path") else name
    return name


def load_text_encoder(name: str, *, pool: str = "avg", device: str | torch.device = "cpu", max_length: int = 512,
                      option: str = "--model") -> TextEncoder:
    """A text model and its tokenizer from `name` (a folder, a sentence-transformers
    folder, or a hub id already in the local cache)."""
    if pool not in POOLS:
        raise ValueError(f"--pool must be one of {POOLS}, got {pool!r}")
    tf = _transformers()
    root = _sentence_transformer_root(name) if os.path.isdir(name) else name
    try:
        with _quiet(tf):
            tok = tf.AutoTokenizer.from_pretrained(root, local_files_only=True)
            model = tf.AutoModel.from_pretrained(root, local_files_only=True)
    except OSError as exc:
        raise _missing(option, name, exc) from None
    except ValueError as exc:
        raise ValueError(f"{option} {name}: cannot load it as a text model: {_one_line(exc)}") from None
    if getattr(model.config, "is_encoder_decoder", False):
        model = model.get_encoder()
    if tok.pad_token is None:  # decoder LLMs: padding is masked out of the mean, any id will do
        tok.pad_token = tok.eos_token
    # padding on the right: a causal model's real tokens then keep their positions and never see
    # padding, so a text's features do not depend on what else is in its batch
    tok.padding_side = "right"
    limit = min(int(max_length), int(getattr(tok, "model_max_length", max_length) or max_length),
                int(getattr(model.config, "max_position_embeddings", max_length) or max_length))
    dev = torch.device(device)
    return TextEncoder(name, _place(model, dev), tok, limit, pool, dev)
