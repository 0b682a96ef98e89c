"""The parts of the Memory Fusion Network family shared by `mfn` and `graph_mfn`.

Zadeh et al., "Memory Fusion Network for Multi-view Sequential Learning", AAAI 2018 (MFN), and
Zadeh et al., "Multimodal Language Analysis in the Wild: CMU-MOSEI Dataset and Interpretable
Dynamic Fusion Graph", ACL 2018 (Graph-MFN) share two of MFN's three parts:

- the System of LSTMs (`ModalityLSTMs`): one LSTM per modality over a shared, word-aligned time
  axis; the LSTMs never see the memory, so each input projection covers all steps in one matrix
  product and only the recurrence itself loops;
- the Multi-view Gated Memory (`GatedMemory`): u_t = gamma1 * u_{t-1} + gamma2 * tanh(D_u(x_t)),
  gamma_k = sigmoid(D_gamma_k([x_t; u_{t-1}])), where x_t is the fusion block's output at step t
  (MFN: the attended memories; Graph-MFN: the fusion graph's top vertex). Only u depends on the
  previous step, so D_u and the x_t half of D_gamma run over all steps at once and the loop keeps
  one small matrix product per step.

Each model keeps its own fusion block (MFN: delta-memory attention; Graph-MFN: the Dynamic
Fusion Graph). Layer names and widths follow MMSA 2.2.1 (models/singleTask/MFN.py, Graph_MFN.py)
so parameter counts can be compared one to one.

Padding (masks are prefixes, real positions first): an LSTM holds its last real state over its
padding, and the memory holds its value on steps where no modality is real. MMSA runs both over
the padding and reads the states after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import Batch, InputSpec, TextInput, masked_mean

# MMSA's order of the three views: language, audio, vision.
MODALITY_ORDER = ("t", "a", "v")


class SequenceInputs(nn.Module):
    """The present modalities of a batch as (values, mask) sequences: text through `TextInput`
    (a trainable embedding of `token_embed_dim` for token ids), audio and vision as they come.

    `time_averaged` modalities are replaced at every real position by their mean over the real
    positions (MMSA's need_normalized loader option, which averages audio and vision over time).
    """

    def __init__(self, spec: InputSpec, token_embed_dim: int, time_averaged: tuple[str, ...] = ()):
        super().__init__()
        self.time_averaged = tuple(time_averaged)
        self.order = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.order:
            raise ValueError("the memory fusion models need at least one modality")
        self.dims = {m: int(spec.dims[m]) for m in self.order if m != "t"}
        if "t" in self.order:
            self.text_input = TextInput(spec, token_embed_dim if spec.text_kind == "tokens" else None)
            self.dims["t"] = self.text_input.out_dim

    def forward(self, batch: Batch) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
        """-> (modality -> ((B, T_m, D_m), (B, T_m) bool), the shared number of steps max T_m)."""
        seqs = {}
        for m in self.order:
            if m == "t":
                seqs[m] = self.text_input(batch)
            else:
                x, mask = batch.modality(m)
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                if m in self.time_averaged:
                    x = masked_mean(x.float(), mask).unsqueeze(1).expand(-1, x.shape[1], -1)
                seqs[m] = (x, mask.bool())
        return seqs, max(x.shape[1] for x, _ in seqs.values())


@dataclass
class LSTMTrace:
    """One modality's LSTM states on the shared time axis, padding filled with the last real state."""

    h: torch.Tensor  # (B, T, H) hidden states h_1..h_T
    c: torch.Tensor  # (B, T, H) cell states (MFN's "memories") c_1..c_T

    def previous(self, states: torch.Tensor) -> torch.Tensor:
        """states shifted one step later, the zero initial state first: (B, T, H) of s_0..s_{T-1}."""
        return torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)


class ModalityLSTMs(nn.Module):
    """MFN's System of LSTMs: one LSTM cell per present modality (MMSA: lstm_l/_a/_v, same layout).

    The input projections W_ih x_t of all steps are one matrix product per modality; only the
    recurrent product W_hh h_{t-1} and the cell update run step by step.
    """

    def __init__(self, in_dims: dict[str, int], hidden: dict[str, int]):
        super().__init__()
        self.order = tuple(m for m in MODALITY_ORDER if m in in_dims)
        self.hidden = {m: int(hidden[m]) for m in self.order}
        self.cells = nn.ModuleDict({m: nn.LSTMCell(int(in_dims[m]), self.hidden[m]) for m in self.order})

    def forward(self, inputs: dict[str, tuple[torch.Tensor, torch.Tensor]], steps: int) -> dict[str, LSTMTrace]:
        """inputs: modality -> ((B, T_m, D_m) values, (B, T_m) bool mask); steps: the shared T >= T_m."""
        return {m: self._run(self.cells[m], *inputs[m], steps) for m in self.order}

    @staticmethod
    def _run(cell: nn.LSTMCell, x: torch.Tensor, mask: torch.Tensor, steps: int) -> LSTMTrace:
        b = x.shape[0]
        x = torch.where(mask.unsqueeze(-1), x.float(), 0.0)  # padding never reaches a gate
        projected = F.linear(x, cell.weight_ih, cell.bias_ih + cell.bias_hh)  # (B, T_m, 4H)
        # float32 states (x is float32) even when autocast makes the products bf16
        h = x.new_zeros(b, cell.hidden_size)
        c = x.new_zeros(b, cell.hidden_size)
        hs, cs = [], []
        for t in range(x.shape[1]):
            # PyTorch's gate order: input, forget, cell, output
            i, f, g, o = (projected[:, t] + F.linear(h, cell.weight_hh)).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            real = mask[:, t : t + 1]  # (B, 1): padding holds the last real state
            h, c = torch.where(real, h_new, h), torch.where(real, c_new, c)
            hs.append(h)
            cs.append(c)
        # past its own length T_m (unaligned input only) a modality holds its final state
        hs += [h] * (steps - len(hs))
        cs += [c] * (steps - len(cs))
        return LSTMTrace(h=torch.stack(hs, dim=1), c=torch.stack(cs, dim=1))


def step_mask(masks: list[torch.Tensor], steps: int) -> torch.Tensor:
    """(B, steps) bool: True where any modality has a real position (masks padded to `steps`)."""
    out = torch.zeros(masks[0].shape[0], steps, dtype=torch.bool, device=masks[0].device)
    for mask in masks:
        out[:, : mask.shape[1]] |= mask.bool()
    return out


class GatedMemory(nn.Module):
    """MFN's Multi-view Gated Memory (MMSA: att2_* = D_u, gamma1_*, gamma2_*).

    D_u proposes tanh(fc2(dropout(relu(fc1(x_t))))); the retain gate gamma1 and the update gate
    gamma2 are sigmoid(fc2(dropout(relu(fc1([x_t; u_{t-1}]))))); u_0 = 0.
    """

    def __init__(self, in_dim: int, mem_dim: int, proposal: tuple[int, float], gamma1: tuple[int, float],
                 gamma2: tuple[int, float]):
        super().__init__()
        self.in_dim, self.mem_dim = int(in_dim), int(mem_dim)
        self.proposal_fc1 = nn.Linear(in_dim, proposal[0])
        self.proposal_fc2 = nn.Linear(proposal[0], mem_dim)
        self.proposal_dropout = nn.Dropout(proposal[1])
        self.gamma1_fc1 = nn.Linear(in_dim + mem_dim, gamma1[0])
        self.gamma1_fc2 = nn.Linear(gamma1[0], mem_dim)
        self.gamma1_dropout = nn.Dropout(gamma1[1])
        self.gamma2_fc1 = nn.Linear(in_dim + mem_dim, gamma2[0])
        self.gamma2_fc2 = nn.Linear(gamma2[0], mem_dim)
        self.gamma2_dropout = nn.Dropout(gamma2[1])

    def forward(self, x: torch.Tensor, steps_real: torch.Tensor) -> torch.Tensor:
        """x: (B, T, in_dim) fusion output per step; steps_real: (B, T) bool -> final memory (B, mem_dim)."""
        proposal = torch.tanh(self.proposal_fc2(self.proposal_dropout(F.relu(self.proposal_fc1(x)))))  # (B, T, M)
        # fc1([x; u]) = W_x x + W_u u + b: the x half for all steps at once, the u half per step
        w1, w2 = self.gamma1_fc1.weight, self.gamma2_fc1.weight
        from_x = torch.cat([F.linear(x, w1[:, : self.in_dim], self.gamma1_fc1.bias),
                            F.linear(x, w2[:, : self.in_dim], self.gamma2_fc1.bias)], dim=-1)  # (B, T, G1+G2)
        w_mem = torch.cat([w1[:, self.in_dim:], w2[:, self.in_dim:]], dim=0)  # (G1+G2, M)
        split = w1.shape[0]
        mem = x.new_zeros(x.shape[0], self.mem_dim)  # (B, M)
        for t in range(x.shape[1]):
            hidden = F.relu(from_x[:, t] + F.linear(mem, w_mem))  # (B, G1+G2)
            retain = torch.sigmoid(self.gamma1_fc2(self.gamma1_dropout(hidden[:, :split])))
            update = torch.sigmoid(self.gamma2_fc2(self.gamma2_dropout(hidden[:, split:])))
            new_mem = retain * mem + update * proposal[:, t]
            mem = torch.where(steps_real[:, t : t + 1], new_mem, mem)
        return mem


def mmsa_memory_preset(hidden_dims: tuple[int, int, int], memsize: int, proposal: tuple[int, float],
                       gamma1: tuple[int, float], gamma2: tuple[int, float], out: tuple[int, float],
                       batch_size: int, lr: float, weight_decay: float, **model: Any) -> dict[str, Any]:
    """A preset in the shape of MMSA's "mfn"/"graph_mfn" config entries: hidden_dims [l, a, v],
    memsize, (shapes, drop) pairs of NN2Config/NNConfig (proposal), gamma1Config, gamma2Config,
    outConfig; extra model.* keys by name."""
    text, audio, video = hidden_dims
    preset = {
        "model.text_hidden": text, "model.audio_hidden": audio, "model.video_hidden": video,
        "model.mem_dim": memsize,
        "model.proposal_hidden": proposal[0], "model.proposal_dropout": proposal[1],
        "model.gamma1_hidden": gamma1[0], "model.gamma1_dropout": gamma1[1],
        "model.gamma2_hidden": gamma2[0], "model.gamma2_dropout": gamma2[1],
        "model.out_hidden": out[0], "model.out_dropout": out[1],
    }
    preset.update({f"model.{k}": v for k, v in model.items()})
    preset.update({"train.batch_size": batch_size, "train.lr": lr, "train.weight_decay": weight_decay})
    return preset


class OutputHead(nn.Module):
    """MMSA's out_fc1 -> ReLU -> dropout -> out_fc2 over [h_T of each LSTM; u_T]."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, out_dim: int):
        super().__init__()
        self.out_fc1 = nn.Linear(in_dim, hidden)
        self.out_fc2 = nn.Linear(hidden, out_dim)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_fc2(self.out_dropout(F.relu(self.out_fc1(x))))
