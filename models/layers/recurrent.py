"""The LSTM subnetwork of MMSA's BERT-era models, shared by `self_mm` and `mmim`.

`RecurrentSubNet` is MMSA's AuViSubNet (models/multiTask/SELF_MM.py) and, with
`bidirectional=True`, MMIM's RNNEncoder (models/singleTask/MMIM.py): an LSTM over the real steps
of a sequence (a packed sequence, so padding never enters), the last layer's final hidden state
(both directions concatenated when bidirectional), dropout, one Linear.

MMSA reads `final_states[0].squeeze(0)` (Self-MM) or `final_states[0][0]` and `[0][1]` (MMIM):
with their one-layer default both are the last layer's states, which is what this reads for any
depth.
"""

from __future__ import annotations

import torch
from torch import nn

from msabench.models.layers.subnets import lstm_last_state


class RecurrentSubNet(nn.Module):
    """(B, T, D) with a (B, T) prefix mask -> (B, out)."""

    def __init__(self, in_size: int, hidden: int, out: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__()
        self.directions = 2 if bidirectional else 1
        # nn.LSTM applies dropout between layers only (MMSA passes it for one layer too, where it does nothing)
        self.rnn = nn.LSTM(in_size, hidden, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                           bidirectional=bidirectional, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_1 = nn.Linear(self.directions * hidden, out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        # x: (B, T, D), mask: (B, T) -> (B, out)
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return self.linear_1(self.dropout(lstm_last_state(self.rnn, x, mask)))
