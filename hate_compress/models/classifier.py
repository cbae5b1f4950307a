"""The classifier every stage trains, distils, prunes and quantizes: encoder + pooling + MLP head.

Teacher and student share this one class, so KD, compression, export and prediction never need
to know which backbone is inside. The head is a small MLP (Linear-ReLU-Dropout-Linear, width
`head.hidden`) rather than one Linear layer, over the [CLS] vector or the mask-aware mean of the last hidden layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hate_compress.errors import ConfigError
from hate_compress.models.outputs import ModelOutputs

POOLINGS = ("cls", "mean")


def pool(hidden: Tensor, attention_mask: Tensor, how: str) -> Tensor:
    """[CLS] vector or the mean over real (unpadded) tokens."""
    if how == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


class HateClassifier(nn.Module):
    def __init__(
        self,
        encoder: nn.Module,
        num_labels: int,
        *,
        pooling: str = "cls",
        head_hidden: int | None = None,
        dropout: float = 0.1,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"head.pooling={pooling!r} is not one of {list(POOLINGS)}")
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        head_hidden = int(head_hidden or hidden)
        self.head = nn.Sequential(
            nn.Linear(hidden, head_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, num_labels),
        )
        self.pooling = pooling
        self.num_labels = num_labels
        self.head_config = {"pooling": pooling, "head_hidden": head_hidden, "dropout": dropout,
                            "num_labels": num_labels}

    @property
    def num_layers(self) -> int:
        cfg = self.encoder.config
        return int(getattr(cfg, "num_hidden_layers", getattr(cfg, "n_layers", 0)))

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutputs:
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        pooled = pool(out.last_hidden_state, attention_mask, self.pooling)
        logits = self.head(pooled)
        return ModelOutputs(
            logits=logits,
            attention_mask=attention_mask,
            pooled=pooled,
            hidden_states=out.hidden_states if output_hidden_states else None,
            attentions=out.attentions if output_attentions else None,
        )

    def freeze_encoder(self) -> None:
        """Feature-extraction baseline: only the head learns."""
        self.encoder.requires_grad_(False)

    def use_eager_attention(self) -> None:
        """SDPA kernels cannot return attention maps; attention KD needs the eager path."""
        setter = getattr(self.encoder, "set_attn_implementation", None)
        if setter is not None:
            setter("eager")


def home_device(model) -> torch.device:
    """Where `model`'s weights are (CPU for a model without parameters)."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return first.device if first is not None else torch.device("cpu")


def predict_logits(model: nn.Module, dataloader, key: str,
                   device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Logits and labels over a whole dataloader, in order (eval mode, no grad), on CPU.

    `device` (the training GPU): the model runs there for the pass and goes back afterwards."""
    was_training = model.training
    model.eval()
    home = home_device(model)
    if device is not None:
        model.to(device)
    logits, labels = [], []
    try:
        with torch.inference_mode():
            for batch in dataloader:
                inputs = batch["inputs"][key]
                ids, mask = inputs["input_ids"], inputs["attention_mask"]
                if device is not None:
                    ids, mask = ids.to(device), mask.to(device)
                out = model(ids, mask)
                logits.append(out.logits.float().cpu())
                labels.append(batch["labels"])
    finally:
        if device is not None:
            model.to(home)
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def is_text_level(model) -> bool:
    """Whether `model` reads raw strings (`predict_texts`, `text_level = True`: char_ngram and
    ensemble teachers) instead of token ids; such models are scored and timed on the texts."""
    return bool(getattr(model, "text_level", False))
