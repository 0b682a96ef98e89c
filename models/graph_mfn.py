"""`graph_mfn`: Graph Memory Fusion Network (MFN with a Dynamic Fusion Graph).

Paper: A. Zadeh, P. P. Liang, J. Vanbriesen, S. Poria, E. Tong, E. Cambria, M. Chen,
L.-P. Morency, "Multimodal Language Analysis in the Wild: CMU-MOSEI Dataset and Interpretable
Dynamic Fusion Graph", ACL 2018 (DFG code: A2Zadeh/CMU-MultimodalSDK, mmsdk/mmmodelsdk/fusion/
dynamic_fusion_graph). Reference code followed: MMSA (thuiar/MMSA,
src/MMSA/models/singleTask/Graph_MFN.py, trainer trains/singleTask/Graph_MFN.py).

Architecture (as in MMSA), over word-aligned sequences (`NEEDS_ALIGNED`):
- System of LSTMs as in `mfn` (`msabench.models.layers.mfn_memory.ModalityLSTMs`);
- singleton vertices: per modality, relu(Linear([h_{t-1}; h_t])) back to the LSTM width (MMSA's
  l/a/v_transform; hidden states, where MFN's attention reads cell states);
- Dynamic Fusion Graph in place of the delta-memory attention: one vertex per non-empty subset of
  the modalities; a multimodal vertex's network (Linear to `dfg_hidden`, Linear to
  `inner_node_dim`, no activation in between, as MMSA builds it) reads every proper sub-vertex
  scaled by its efficacy; the top vertex tau reads all vertices the same way; the efficacies (19
  for three modalities) come from the singletons through Linear(`dfg_hidden`), Linear(`inner_node_dim`),
  Linear(#efficacies), unbounded (MMSA and the SDK apply no output activation);
- Multi-view Gated Memory of width `mem_dim` over tau (`GatedMemory`);
- output: [final h of each LSTM; final memory] -> Linear+ReLU (`out_hidden`) -> dropout -> Linear.

Defaults and presets: MMSA src/MMSA/config/config_regression.json, entry "graph_mfn",
datasetParams (mosi = the defaults; mosei; sims): hidden_dims [text, audio, video] (also the
singleton widths, as in MMSA), memsize -> mem_dim, inner_node_dim, NNConfig -> proposal_*,
gamma1Config, gamma2Config, outConfig, batch_size, learning_rate, weight_decay; commonParams
early_stop 8 -> patience. `dfg_hidden` 100: MMSA's Graph_MFN.py builds the pattern and efficacy
cores as nn.Linear(100, inner_node_dim). Trainer: Adam with weight decay, L1 / cross-entropy.

Deviations:
- MMSA keeps the multimodal vertex networks in a plain dict (`self.networks = {}`), so they are not
  registered: never trained, not in `parameters()` or the state dict; MMSA trains a DFG whose
  bimodal and trimodal vertices are fixed random projections. We register and train them, as the
  paper describes; `freeze_vertex_nets=True` reproduces MMSA (they stay at their initial values).
- Padding, vectorisation, unaligned input, modality subsets, text input, heads, presets and epoch
  cap as in `mfn` (see its Deviations). The DFG runs over all steps at once. With one modality the
  graph has only its singleton: tau reads it scaled by one efficacy (MMSA fails there).
- MMSA's "graph_mfn" entry has need_normalized false, so MMSA runs it on aligned sequences, as we do.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel
from msabench.models.layers.mfn_memory import (
    GatedMemory,
    ModalityLSTMs,
    OutputHead,
    SequenceInputs,
    mmsa_memory_preset,
    step_mask,
)
from msabench.models.layers.subnets import output_width


@dataclass(frozen=True)
class GraphMFNConfig:
    # MMSA config_regression.json "graph_mfn" / "mosi": hidden_dims, memsize, inner_node_dim
    text_hidden: int = 256
    audio_hidden: int = 32
    video_hidden: int = 256
    mem_dim: int = 300
    inner_node_dim: int = 64
    # NNConfig (memory proposal D_u)
    proposal_hidden: int = 32
    proposal_dropout: float = 0.0
    # gamma1Config, gamma2Config
    gamma1_hidden: int = 128
    gamma1_dropout: float = 0.5
    gamma2_hidden: int = 64
    gamma2_dropout: float = 0.5
    # outConfig
    out_hidden: int = 256
    out_dropout: float = 0.0
    # MMSA Graph_MFN.py: nn.Linear(100, inner_node_dim) cores of the vertex and efficacy networks
    dfg_hidden: int = 100
    # True = MMSA 2.2.1's untrained (unregistered) multimodal vertex networks
    freeze_vertex_nets: bool = False
    # msabench: embedding width when text comes as token ids
    token_embed_dim: int = 128


def _vertex_name(key: tuple[int, ...]) -> str:
    return "_".join(str(i) for i in key)


class DynamicFusionGraph(nn.Module):
    """The DFG over n singleton inputs (vectorised over any leading dims).

    Vertices are the non-empty subsets of range(n) in MMSA's order (by size, then lexicographic).
    """

    def __init__(self, in_dims: list[int], inner: int, hidden: int):
        super().__init__()
        n = len(in_dims)
        self.vertices = [key for r in range(1, n + 1) for key in combinations(range(n), r)]
        self.vertex_nets = nn.ModuleDict()
        self.inputs_of: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        n_efficacies = 0
        for key in self.vertices[n:]:
            parts = [sub for sub in self.vertices if set(sub) < set(key)]
            self.inputs_of[key] = parts
            self.vertex_nets[_vertex_name(key)] = self._vertex_net(self._width(parts, in_dims, inner), inner, hidden)
            n_efficacies += len(parts)
        self.inputs_of[()] = list(self.vertices)  # the top vertex tau reads every vertex
        n_efficacies += len(self.vertices)
        self.t_network = self._vertex_net(self._width(self.vertices, in_dims, inner), inner, hidden)
        self.efficacy_model = nn.Sequential(nn.Linear(sum(in_dims), hidden), nn.Linear(hidden, inner),
                                            nn.Linear(inner, n_efficacies))
        self.n_efficacies = n_efficacies

    @staticmethod
    def _width(parts: list[tuple[int, ...]], in_dims: list[int], inner: int) -> int:
        return sum(in_dims[p[0]] if len(p) == 1 else inner for p in parts)

    @staticmethod
    def _vertex_net(in_dim: int, inner: int, hidden: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.Linear(hidden, inner))

    def forward(self, singletons: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """singletons: n tensors (..., d_i) -> (tau (..., inner), efficacies (..., #efficacies))."""
        efficacies = self.efficacy_model(torch.cat(singletons, dim=-1))
        outputs = {(i,): x for i, x in enumerate(singletons)}
        used = 0
        for key, parts in self.inputs_of.items():
            weighted = [outputs[p] * efficacies[..., used + j : used + j + 1] for j, p in enumerate(parts)]
            used += len(parts)
            net = self.t_network if key == () else self.vertex_nets[_vertex_name(key)]
            outputs[key] = net(torch.cat(weighted, dim=-1))
        return outputs[()], efficacies


@MODELS.register()
class GraphMFN(MSAModel):
    name: ClassVar[str] = "graph_mfn"
    config_cls: ClassVar[type] = GraphMFNConfig
    impl_version: ClassVar[int] = 1
    NEEDS_ALIGNED: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",
        "train.lr": 2e-3,
        "train.batch_size": 32,
        "train.weight_decay": 5e-3,
        "train.epochs": 100,
        "train.patience": 8,
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": mmsa_memory_preset((256, 32, 256), 300, (32, 0.0), (128, 0.5), (64, 0.5), (256, 0.0),
                                   32, 2e-3, 5e-3, inner_node_dim=64),
        "mosei": mmsa_memory_preset((64, 16, 64), 300, (32, 0.5), (64, 0.0), (256, 0.7), (128, 0.7),
                                    64, 2e-3, 1e-3, inner_node_dim=128),
        "sims": mmsa_memory_preset((256, 32, 256), 64, (256, 0.5), (32, 0.2), (32, 0.7), (256, 0.2),
                                   64, 5e-4, 1e-3, inner_node_dim=128),
    }

    def __init__(self, cfg: GraphMFNConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        self.inputs = SequenceInputs(spec, cfg.token_embed_dim)
        widths = {"t": cfg.text_hidden, "a": cfg.audio_hidden, "v": cfg.video_hidden}
        self.lstms = ModalityLSTMs(self.inputs.dims, widths)
        hidden = self.lstms.hidden
        # singleton widths = LSTM widths (MMSA: singleton_*_size = hidden_dims)
        self.transforms = nn.ModuleDict({m: nn.Linear(2 * hidden[m], hidden[m]) for m in self.lstms.order})
        self.graph = DynamicFusionGraph([hidden[m] for m in self.lstms.order], cfg.inner_node_dim, cfg.dfg_hidden)
        if cfg.freeze_vertex_nets:
            self.graph.vertex_nets.requires_grad_(False)
        self.memory = GatedMemory(cfg.inner_node_dim, cfg.mem_dim, (cfg.proposal_hidden, cfg.proposal_dropout),
                                  (cfg.gamma1_hidden, cfg.gamma1_dropout), (cfg.gamma2_hidden, cfg.gamma2_dropout))
        self.head = OutputHead(sum(hidden.values()) + cfg.mem_dim, cfg.out_hidden, cfg.out_dropout, output_width(spec))

    @classmethod
    def tiny(cls) -> GraphMFNConfig:
        return GraphMFNConfig(text_hidden=6, audio_hidden=4, video_hidden=4, mem_dim=6, inner_node_dim=6,
                              proposal_hidden=8, proposal_dropout=0.1, gamma1_hidden=8, gamma1_dropout=0.1,
                              gamma2_hidden=8, gamma2_dropout=0.1, out_hidden=8, out_dropout=0.1,
                              dfg_hidden=8, token_embed_dim=8)

    def forward(self, batch: Batch) -> ModelOutput:
        seqs, steps = self.inputs(batch)
        traces = self.lstms(seqs, steps)
        order = self.lstms.order
        singletons = [F.relu(self.transforms[m](torch.cat([traces[m].previous(traces[m].h), traces[m].h], dim=-1)))
                      for m in order]  # each (B, T, H_m)
        tau, efficacies = self.graph(singletons)  # (B, T, inner), (B, T, #efficacies)
        real = step_mask([mask for _, mask in seqs.values()], steps)  # (B, T)
        mem = self.memory(tau, real)  # (B, M)
        final = {m: traces[m].h[:, -1] for m in order}  # (B, H_m): the last real state (held)
        fused = torch.cat([final[m] for m in order] + [mem], dim=-1)
        out = self.head(fused)
        if self.spec.task == "regression":
            out = out.squeeze(-1)
        features = dict(final)
        features["memory"] = mem
        features["fusion"] = fused
        # efficacies at each sample's last real step: the DFG's interpretable weights (paper Sec. 5)
        last = (real.sum(dim=1).clamp_min(1) - 1).view(-1, 1, 1).expand(-1, 1, efficacies.shape[-1])
        features["efficacies"] = efficacies.gather(1, last).squeeze(1)
        return ModelOutput(pred=out, features=features)
