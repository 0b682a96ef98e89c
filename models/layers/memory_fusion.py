"""The Memory Fusion Network core: a system of LSTMs, delta-memory attention, multi-view gated memory.

Paper: A. Zadeh, P. P. Liang, N. Mazumder, S. Poria, E. Cambria, L.-P. Morency, "Memory Fusion
Network for Multi-view Sequential Learning", AAAI 2018 (Sections 3.1-3.3). Reference code: MMSA
2.2.1 src/MMSA/models/singleTask/MFN.py (from pliang279/MFN); layer names and the order of the
concatenations follow it so that parameter counts match.

Used by `mfm` (its multimodal discriminative encoder, as in MMSA's MFM.py). The block stops at the
final state [h_1, ..., h_M, u] (MMSA's `last_hs`); a model puts its own head on top.

Padding: one step per time index up to the longest present modality; a modality whose mask is
False at a step keeps its LSTM state, and the memory keeps its value when no modality is real at
that step, so the final state is the state after each modality's last real step and padded values
never reach it. On word-aligned input (all masks equal) this is MFN on the real prefix; MMSA runs
over the padding too.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _two_layer(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.ModuleDict:
    return nn.ModuleDict({"fc1": nn.Linear(in_dim, hidden), "drop": nn.Dropout(dropout),
                          "fc2": nn.Linear(hidden, out_dim)})


def _run_two_layer(net: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
    return net["fc2"](net["drop"](F.relu(net["fc1"](x))))


class MemoryFusionCore(nn.Module):
    """MFN over the given modalities; `forward` returns (B, sum(hidden) + mem_size).

    `input_dims` / `hidden_dims`: per modality code, in the order of the concatenations (MMSA:
    text, audio, vision). `attention` = (width, dropout) of the delta-memory attention network D_a
    (MMSA NN1Config); `memory` of the network proposing the memory update û (NN2Config); `gamma1`
    / `gamma2` of the retain / update gates (gamma1Config, gamma2Config). The window is two steps
    (c[t-1], c[t]), as in the paper and MMSA.
    """

    def __init__(self, input_dims: dict[str, int], hidden_dims: dict[str, int], mem_size: int,
                 attention: tuple[int, float], memory: tuple[int, float],
                 gamma1: tuple[int, float], gamma2: tuple[int, float]):
        super().__init__()
        if list(input_dims) != list(hidden_dims) or not input_dims:
            raise ValueError("memory fusion needs the same non-empty modalities in input_dims and hidden_dims")
        self.hidden_dims = dict(hidden_dims)
        self.mem_size = int(mem_size)
        self.lstms = nn.ModuleDict({m: nn.LSTMCell(int(input_dims[m]), int(h)) for m, h in hidden_dims.items()})
        window = 2 * sum(self.hidden_dims.values())  # [c(t-1), c(t)]
        self.attention = _two_layer(window, attention[0], window, attention[1])
        self.memory = _two_layer(window, memory[0], self.mem_size, memory[1])
        self.gamma1 = _two_layer(window + self.mem_size, gamma1[0], self.mem_size, gamma1[1])
        self.gamma2 = _two_layer(window + self.mem_size, gamma2[0], self.mem_size, gamma2[1])

    @property
    def out_dim(self) -> int:
        return sum(self.hidden_dims.values()) + self.mem_size

    def forward(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """`inputs`: modality -> ((B, T_m, D_m) values, (B, T_m) bool mask of real steps)."""
        first = inputs[next(iter(self.hidden_dims))][0]
        b, device = first.shape[0], first.device
        h = {m: first.new_zeros(b, d) for m, d in self.hidden_dims.items()}
        c = {m: first.new_zeros(b, d) for m, d in self.hidden_dims.items()}
        mem = first.new_zeros(b, self.mem_size)
        steps = max(inputs[m][0].shape[1] for m in self.hidden_dims)
        for t in range(steps):
            prev_c = torch.cat([c[m] for m in self.hidden_dims], dim=1)
            any_real = torch.zeros(b, 1, dtype=torch.bool, device=device)
            for m in self.hidden_dims:
                x, mask = inputs[m]
                if t >= x.shape[1]:
                    continue
                real = mask[:, t].unsqueeze(1)  # (B, 1)
                new_h, new_c = self.lstms[m](x[:, t].float(), (h[m], c[m]))
                h[m] = torch.where(real, new_h, h[m])
                c[m] = torch.where(real, new_c, c[m])
                any_real = any_real | real
            c_star = torch.cat([prev_c] + [c[m] for m in self.hidden_dims], dim=1)  # (B, window)
            attended = F.softmax(_run_two_layer(self.attention, c_star), dim=1) * c_star
            proposal = torch.tanh(_run_two_layer(self.memory, attended))  # (B, mem)
            both = torch.cat([attended, mem], dim=1)
            retain = torch.sigmoid(_run_two_layer(self.gamma1, both))
            update = torch.sigmoid(_run_two_layer(self.gamma2, both))
            mem = torch.where(any_real, retain * mem + update * proposal, mem)
        return torch.cat([h[m] for m in self.hidden_dims] + [mem], dim=1)  # (B, out_dim)
