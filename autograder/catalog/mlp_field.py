"""mlp_field: mutants and alternatives (the notebook gives the constructor)."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

from cfgflow_ref import MLP, ConditionalVectorField

from . import alternative, mutant

P = "mlp_field"


class _Given(ConditionalVectorField):
    """The notebook's constructor."""

    def __init__(self, dim, hidden_dim, class_dim, num_classes):
        super().__init__()
        self.mlp = MLP([dim + class_dim + 1, hidden_dim, hidden_dim, dim])
        self.class_embedding = nn.Embedding(num_classes + 1, class_dim)


@mutant(P, "batch size 1")
class SqueezeT(_Given):
    """t.squeeze() then t[:, None]: breaks at batch size 1."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), t.squeeze()[:, None]], dim=-1))


@mutant(P, "(b, 1, 1, 1)")
class FlatTOnly(_Given):
    """t[:, None] assumes t of shape (b,)."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), t[:, None]], dim=-1))


@mutant(P, "num_classes + 1")
class NoNullRow(_Given):
    """nn.Embedding(num_classes, ...) as in the lab's hint: no row for the null label."""

    def __init__(self, dim, hidden_dim, class_dim, num_classes):
        super().__init__(dim, hidden_dim, class_dim, num_classes)
        self.class_embedding = nn.Embedding(num_classes, class_dim)

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), t.reshape(-1, 1)], dim=-1))


@mutant(P, "does not depend on the label")
class IgnoresLabel(_Given):
    """Embeds a zero label instead of y."""

    def forward(self, x, t, y):
        e = self.class_embedding(torch.zeros_like(y))
        return self.mlp(torch.cat([x, e, t.reshape(-1, 1)], dim=-1))


@mutant(P, "does not depend on t")
class ForgetsT(_Given):
    """A zero column where t belongs."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), torch.zeros(x.shape[0], 1)], dim=-1))


@mutant(P, "batch size 1")
class SqueezeEmbedding(_Given):
    """class_embedding(y).squeeze() loses the batch axis at b = 1."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y).squeeze(), t.reshape(-1, 1)], dim=-1))


@alternative(P)
class ViewCat(_Given):
    """t.view(-1, 1), torch.cat in the notebook's order."""

    def forward(self, x, t, y):
        return self.mlp(torch.cat([x, self.class_embedding(y), t.view(-1, 1)], dim=-1))


@alternative(P)
class TimeFirstHstack(ConditionalVectorField):
    """Own constructor: [t, x, emb(y)] order with torch.hstack and einops."""

    def __init__(self, dim, hidden_dim, class_dim, num_classes):
        super().__init__()
        self.net = MLP([1 + dim + class_dim, hidden_dim, hidden_dim, dim])
        self.labels = nn.Embedding(num_classes + 1, class_dim)

    def forward(self, x, t, y):
        return self.net(torch.hstack([rearrange(t, "b ... -> b (...)"), x, self.labels(y)]))
