"""`m3sa`: Modulation Model for Multimodal Sentiment Analysis (re-implementation from the paper; no public code).

Paper: "Modulation Model for Multimodal Sentiment Analysis" (M3SA), ../shared/papers/m3sa.txt:
sections 3.2-3.4 (eqs. 4-21), 4.1, appendices A-C. Reference code: none is public for M3SA. Where
the paper is silent, the numbers come from the code of the same group's Multimodal Information
Bottleneck (TmacMai/Multimodal-Information-Bottleneck, MIB_github/cmib.py and main_mib.py), whose
unimodal networks are exactly M3SA's appendix A (BERT -> Conv1D -> last step for text; Conv1D ->
MulT's Transformer -> last step for audio and vision) and whose fusion classes are appendix B's four
(graph fusion after ARGF, TmacMai/ARGF_multimodal_fusion); read for facts, not copied.

Architecture (Fig. 1):
- Unimodal networks F_m (eqs. 4, 22-23): text through `TextInput` (a fine-tuned BERT by default,
  `text.encoder`), then a bias-free Conv1D (kernel `conv_kernel_t`, "same" padding) to the shared
  width d (`hidden`); audio and vision through the same kind of Conv1D (`conv_kernel_a/v`), then a
  self-attention Transformer (`layers` pre-LN MulT layers of `num_heads` heads, sqrt(d) scaling,
  sinusoidal positions, the shared `CrossModalEncoder`). The unimodal embedding x^m is each
  sequence's last real step.
- One classifier C, shared by the unimodal and the multimodal paths (eqs. 5, 9): Linear(d, d) ->
  ReLU -> Linear(d, outputs).
- Modality filter module (MFM, eqs. 14-16): x' = Linear(x^t (+) x^a (+) x^v) in R^d; the feature
  shift x^m_shift = ReLU(x' - x^m); a filter network FC = Linear(d, d) -> ReLU -> Linear per modality
  (`shared_filter=true`: one for all, see Deviations) gives s^m; the filtered embedding
  x^m_2 = s^m x^m + (1 - s^m) b^m with a learned baseline embedding b^m per modality.
  * soft filter (`filter=soft`, eqs. 17-20): z^m in R^2, s^m = softmax(lambda z^m) with lambda =
    `soft_scale` = 1000 (appendix C.4); x^m_2 = s^m_1 x^m + s^m_2 b^m; penalty
    l_p = 1 - (s^m_1 - s^m_2)^2, averaged over samples and modalities, weight `penalty_weight`,
    added to the multimodal loss.
  * hard filter (`filter=hard`, eq. 21): a Hard Concrete gate (Louizos et al.): z^m in R (log
    alpha), u ~ U(0, 1), s_hat = sigmoid((log(u / (1 - u)) + z^m) / beta), s_bar = s_hat (zeta -
    gamma) + gamma; in training s^m = min(1, max(0, s_bar)) (exact 0 and 1 have mass; gradients by
    reparameterisation); at evaluation s^m = 1 iff sigmoid(z^m)(zeta - gamma) + gamma > 0.5, else 0
    (binary). beta = `hard_temperature`, gamma/zeta = `hard_stretch_low/high`.
- Fusion F_M (appendix B, `fusion`): `add` x^M = sum of x^m_2 (eq. 24, the default); `concat`
  Linear(3d -> d) of the concatenation (eq. 25); `tensor` Linear((d+1)^3 -> d) of the outer product
  of [x^m_2, 1] (eqs. 26-27); `graph` ARGF's graph fusion (below). y^M = C(x^M).

Training (section 4.1, eqs. 5-13), two optimisers and two phases per batch:
1. unimodal phase: the unimodal networks (`unimodal` optimiser: convolutions, transformers and the
   text encoder, the latter at train.text_lr) step on the modulation losses. Per utterance i and
   modality m, l^m_i = |C(x^m_i) - y_i| through C with detached weights (C is not updated here);
   alpha_i = M / sum_m (1 / l^m_i) (the harmonic mean, eq. 11); alpha^m_i = alpha_i prod_{k != m}
   l^k_i (eq. 12); l^m_2 = l^m alpha^m (eq. 13), averaged over the batch and summed over modalities
   (each sum term reaches only its own network). The weights alpha^m are constants of the step.
2. multimodal phase: the unimodal embeddings are computed again with the updated networks, and the
   whole model (both optimisers) steps on l^M = |y - C(x^M)| (+ the soft filter's penalty).
`unimodal_loss`: `modulated` (eqs. 10-13), `plain` (the unmodulated l^m: a switch for analysis,
no paper row) or `none` (no unimodal phase: Table 3's W/O ML).

Switches and variants (protocols/templates.py, m3sa-table1..4): `filter` soft | hard; `shared_filter`;
`modality_filter=false` is W/O MFM (x^m_2 = x^m); `baseline_embedding=false` is W/O BE
(x^m_2 = s^m x^m); `unimodal_loss=none` is W/O ML; `fusion` add | concat | tensor | graph. Variants:
m3sa@{hard,soft}, m3sa@{hard,soft}-no-ml, -no-mfm, -no-be, -concat, -tensor, -graph. The plain
`m3sa` is m3sa@soft (the better MOSI row of Table 1 and the filter of the paper's Fig. 2).

Per-epoch numbers: the mean filter gate per modality over the epoch's training samples (`mask_t`,
`mask_a`, `mask_v`: s^m_1 of the soft filter, the Hard Concrete gate of the hard one) goes into
every record of the epoch as `model_values` (`on_validation_end`); `forward` returns the gates per
sample in `ModelOutput.features` (`mask_t` ...; binary at evaluation for the hard filter), next to
the unimodal embeddings (`t`, `a`, `v`) and `fusion`, for the test-set means of the paper's Fig. 2.

Defaults and presets: learning rate 1e-5 with Adam, L1 (MAE) loss, lambda = 1000 (appendix C.4;
train.lr = train.text_lr = 1e-5). Not in the paper, from the MIB code (same group, same backbone):
d = 50 (`d_l`), Conv1D kernel 3 with padding 1 and no bias for every modality, audio/vision
Transformers of 3 layers and 5 heads with attention dropout 0.5, ReLU dropout 0.3, residual dropout
0.3, embedding dropout 0.2 and no future mask (`get_network`), batch size 32 and 50 epochs
(README's command), and the graph fusion's 64-wide pair networks. Hard Concrete beta = 2/3,
gamma = -0.1, zeta = 1.1: Louizos, Welling, Kingma, "Learning Sparse Neural Networks through L0
Regularization", ICLR 2018 (the paper's reference), whose defaults these are. Text: presets for the
English families (mosi, mosei, meld, iemocap) fine-tune bert-base-uncased (appendix A, C.3: "the
same feature extraction as MAG-BERT"); sims fine-tunes bert-base-chinese (MMSA's Chinese BERT).

Deviations (a re-implementation: every choice the paper leaves open is listed):
- No public code; the numbers above that the paper does not give come from the MIB code.
- Last time step: each sample's last *real* step (text: [SEP] through BERT), not the last padded
  step the MIB code reads (`outputs[:, :, -1]`, `outputa[-1]` on sequences padded to 50); padded
  positions are zeroed before each Conv1D and never attended to, so padding never changes the output.
- The classifier C's form is not given: a one-hidden-layer MLP (a linear C would make addition
  fusion a mere sum of unimodal predictions, with no interaction between modalities).
- The filter network FC ("fully-connected network activated by ReLU") is Linear -> ReLU -> Linear,
  one per modality (`shared_filter=false`). For the soft filter its output layer starts at 1/lambda of
  PyTorch's default initialisation, so that lambda z starts at an ordinary layer's scale (s near 0.5):
  a default-initialised z times 1000 would fix each sample's gate at a random 0 or 1 from the start,
  with no gradient to move it. Eq. 15's theta_f carries no modality index, so one shared network is
  the literal reading (`shared_filter=true`); we measured that its one output bias moves every
  modality's gate together, and at lambda = 1000 all three soft gates then locked at the same 0 or 1
  within the first few dozen steps (tiny model, noisy audio, 3 of 3 seeds). The baseline embeddings
  start at zero.
- Soft filter dynamics (measured, not a code change): lambda multiplies the filter logits, so under
  Adam the gates move about lambda times faster than any other output and lock at 0 or 1 (below
  ~1e-8 gradient, Adam's epsilon freezes them) within the first epoch, before the unimodal networks
  and C have learned what a modality is worth. On a toy with pure-noise audio (tiny model, 100
  steps at lr 3e-3, 5 seeds) the soft filter at lambda = 1000 ended at text 1 / audio below 0.5 in 2
  seeds and at text 0 / audio 1 in 3; at lambda = 1 without the penalty it kept text (0.82-0.99) and
  half-closed audio (0.41-0.54) in 5 of 5; the hard filter (defaults) in 5 of 5 (text 0.92-0.98,
  audio 0.31-0.75). The paper's Fig. 2 pattern (text 0.998, audio 0.012) is therefore not
  reproduced reliably by the soft filter at the paper's lambda here; `soft_scale` and
  `penalty_weight` are keys, so other values are runs, not code edits.
- Eq. 21 writes s^m = 1 iff s_bar > 0.5 for training too, which has no gradient; we use the Hard
  Concrete sample in training (the reparameterisation the text describes) and the binary rule at
  evaluation. u is uniform (the text says "Gaussian", a slip: Hard Concrete draws u ~ U(0, 1)).
- The modulation weights alpha^m are treated as constants (no gradient through them): the paper calls
  them weights and says a high-loss modality gets a low weight, which is what the detached form does.
  Losses are clamped at 1e-8 inside the harmonic mean. The paper's loss is MAE; classification uses
  per-sample cross-entropy and multilabel per-sample mean BCE as l^m. With M < 3 modalities the same
  formulas run over the modalities present (one modality: alpha^m = l^m).
- The soft penalty's weight (1) and its averaging over modalities are not stated.
- Concatenation and tensor fusion are the single Linear of eqs. 25 and 27 (the MIB code adds a ReLU
  after the concatenation's Linear and an MLP with dropout after the tensor).
- Graph fusion (ARGF as in the MIB code): node weights s_m = tanh(w x_m); the unimodal layer
  (sum s_m x_m) / M; bimodal nodes tanh(w_ij G(x_i (+) x_j)) with w_ij the softmax over pairs of
  (s_i + s_j) / (<softmax x_i, softmax x_j> + 0.5), G = Linear(2d, 64) -> LeakyReLU(0.2) ->
  Linear(64, d) -> Tanh; trimodal nodes from two bimodal nodes or a bimodal node and the third
  modality, weighted likewise, through a second such network. The MIB code concatenates the three
  layers and maps them through a 3-layer tanh MLP to a scalar; M3SA needs a d-wide representation
  for its shared classifier and says the graph representation is the average of the node
  embeddings: we average the three layers' outputs (each a weighted sum of its nodes).
- W/O MFM ignores `filter`: m3sa@hard-no-mfm and m3sa@soft-no-mfm compute the same thing (the paper
  prints different numbers for them, run-to-run variation).
- The two phases step the unimodal optimiser twice per batch (once per phase), as the paper's
  "first ... after which the whole model" implies; train.grad_accum must be 1 (two phases of one
  batch cannot be split into micro-batches), and a per-step (linear) scheduler on the unimodal
  optimiser would advance twice per batch (the paper uses none; train.scheduler defaults to none).
- Early stopping: the MIB code trains a fixed 50 epochs and keeps the best-validation epoch;
  train.patience = train.epochs does the same.
- Text as token ids without a Hugging Face encoder (`text.encoder=tokens`) goes through a trainable
  embedding of width `token_embed_dim`; precomputed features (MMSA's BERT vectors) go straight to
  the Conv1D (a frozen BERT).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from msabench.api import MODELS, Batch, InputSpec, ModelOutput, MSAModel, TextInput, UserError
from msabench.models.layers.transformer import CrossModalEncoder, last_real_step

MODALITY_ORDER = ("t", "a", "v")
UNIMODAL_LOSSES = ("modulated", "plain", "none")
FILTERS = ("soft", "hard")
FUSIONS = ("add", "concat", "tensor", "graph")
LOSS_FLOOR = 1e-8  # keeps 1 / l finite in the harmonic mean of eq. 11


@dataclass(frozen=True)
class M3SAConfig:
    # MIB code (TmacMai/Multimodal-Information-Bottleneck, cmib.py): d_l, Conv1d kernels, get_network
    hidden: int = 50
    conv_kernel_t: int = 3
    conv_kernel_a: int = 3
    conv_kernel_v: int = 3
    num_heads: int = 5
    layers: int = 3
    attn_dropout: float = 0.5
    relu_dropout: float = 0.3
    res_dropout: float = 0.3
    embed_dropout: float = 0.2
    # eqs. 10-13; "none" is Table 3's W/O ML, "plain" the unmodulated unimodal losses
    unimodal_loss: str = "modulated"
    # eqs. 14-21; modality_filter=false is W/O MFM, baseline_embedding=false W/O BE
    modality_filter: bool = True
    filter: str = "soft"
    shared_filter: bool = False  # one filter network for every modality (eq. 15's theta_f has no index)
    soft_scale: float = 1000.0  # lambda, eq. 18 and appendix C.4
    penalty_weight: float = 1.0  # l_p, eq. 19 (weight not stated)
    hard_temperature: float = 2.0 / 3.0  # beta, eq. 21 (Louizos et al.)
    hard_stretch_low: float = -0.1  # gamma
    hard_stretch_high: float = 1.1  # zeta
    baseline_embedding: bool = True
    # appendix B; add is the default (Table 4)
    fusion: str = "add"
    graph_hidden: int = 64  # MIB/ARGF graph_fusion: Linear(2d, 64)
    # msabench: embedding width when text comes as token ids without an encoder
    token_embed_dim: int = 128


def _variants() -> dict[str, dict[str, Any]]:
    variants: dict[str, dict[str, Any]] = {}
    ablations = {"no-ml": {"model.unimodal_loss": "none"}, "no-mfm": {"model.modality_filter": False},
                 "no-be": {"model.baseline_embedding": False}, "concat": {"model.fusion": "concat"},
                 "tensor": {"model.fusion": "tensor"}, "graph": {"model.fusion": "graph"}}
    for kind in FILTERS:
        variants[kind] = {"model.filter": kind}
        for suffix, keys in ablations.items():
            variants[f"{kind}-{suffix}"] = {"model.filter": kind, **keys}
    return variants


def _text_preset(encoder: str) -> dict[str, Any]:
    return {"text.encoder": encoder, "text.frozen": False}


class SameConv(nn.Module):
    """Bias-free Conv1d over time that keeps the length ("same" padding) on zeroed padding."""

    def __init__(self, in_dim: int, out_dim: int, kernel: int):
        super().__init__()
        self.pad = ((kernel - 1) // 2, kernel // 2)
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size=kernel, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (B, T, D_in), mask: (B, T) -> (B, T, D_out)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        x = F.pad(x.transpose(1, 2), self.pad)  # (B, D_in, T + k - 1)
        return self.conv(x).transpose(1, 2)


class UnimodalNetworks(nn.Module):
    """F_m of eqs. 4, 22-23: one embedding x^m in R^d per modality (the last real step)."""

    def __init__(self, cfg: M3SAConfig, spec: InputSpec, modalities: tuple[str, ...]):
        super().__init__()
        self.modalities = modalities
        kernels = {"t": cfg.conv_kernel_t, "a": cfg.conv_kernel_a, "v": cfg.conv_kernel_v}
        if "t" in modalities:
            self.text_input = TextInput(spec, cfg.token_embed_dim if spec.text_kind == "tokens" else None)
        self.conv = nn.ModuleDict()
        self.transformer = nn.ModuleDict()
        for m in modalities:
            in_dim = self.text_input.out_dim if m == "t" else int(spec.dims[m])
            self.conv[m] = SameConv(in_dim, cfg.hidden, kernels[m])
            if m != "t":  # BERT already contextualises the text (appendix A)
                self.transformer[m] = CrossModalEncoder(
                    cfg.hidden, cfg.num_heads, cfg.layers, attn_dropout=cfg.attn_dropout,
                    relu_dropout=cfg.relu_dropout, res_dropout=cfg.res_dropout, embed_dropout=cfg.embed_dropout,
                    future_mask=False)

    def text_encoder(self) -> nn.Module | None:
        """The fine-tuned Hugging Face encoder inside `TextInput`, when there is one."""
        return getattr(self.text_input, "encoder", None) if "t" in self.modalities else None

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = {}
        for m in self.modalities:
            if m == "t":
                x, mask = self.text_input(batch)  # (B, T, D_t), (B, T)
            else:
                x, mask = batch.modality(m)
                x = x.float()
                if mask is None:
                    mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            mask = mask.bool()
            h = self.conv[m](x, mask)  # (B, T, d)
            if m != "t":
                h = self.transformer[m](h, mask).hidden  # (B, T, d)
            out[m] = last_real_step(h, mask)  # (B, d)
        return out


class Classifier(nn.Module):
    """C of eqs. 5 and 9, shared by the unimodal and multimodal paths."""

    def __init__(self, d: int, n_out: int):
        super().__init__()
        self.fc1 = nn.Linear(d, d)
        self.fc2 = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        # x: (B, d) -> (B, n_out); detached weights: the unimodal phase must not move C
        layers = [(fc.weight.detach(), fc.bias.detach()) if detach_weights else (fc.weight, fc.bias)
                  for fc in (self.fc1, self.fc2)]
        h = F.relu(F.linear(x, *layers[0]))
        return F.linear(h, *layers[1])


@dataclass
class FilterOutput:
    keep: dict[str, torch.Tensor]  # m -> (B,) s^m (soft: s^m_1), the share of x^m kept
    penalty: torch.Tensor | None = None  # soft filter's l_p (scalar)


class ModalityFilter(nn.Module):
    """MFM's feature shift and filter (eqs. 14-15, 17-19, 21): the gate s^m of each modality."""

    def __init__(self, cfg: M3SAConfig, modalities: tuple[str, ...]):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden
        self.shift_proj = nn.Linear(len(modalities) * d, d)  # theta_L of eq. 14
        networks = ("shared",) if cfg.shared_filter else modalities
        n_out = 2 if cfg.filter == "soft" else 1
        # soft: the output layer starts at 1/lambda of the default initialisation, so that lambda z
        # starts at the scale of an ordinary layer (a default-initialised z times 1000 would fix each
        # sample's gate at a random 0 or 1 from the start, with no gradient to move it)
        scale = 1.0 / cfg.soft_scale if cfg.filter == "soft" else 1.0
        self.networks = nn.ModuleDict({k: self._network(d, n_out, scale) for k in networks})

    @staticmethod
    def _network(d: int, n_out: int, output_scale: float) -> nn.Module:
        net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, n_out))
        with torch.no_grad():
            net[2].weight.mul_(output_scale)
            net[2].bias.mul_(output_scale)
        return net

    def forward(self, unimodal: dict[str, torch.Tensor]) -> FilterOutput:
        joint = self.shift_proj(torch.cat(list(unimodal.values()), dim=-1))  # (B, d), x'
        logits = {m: self.networks["shared" if self.cfg.shared_filter else m](F.relu(joint - x))
                  for m, x in unimodal.items()}  # m -> (B, 2) | (B, 1)
        if self.cfg.filter == "soft":
            shares = {m: torch.softmax(self.cfg.soft_scale * z.float(), dim=-1) for m, z in logits.items()}
            penalty = torch.stack([1.0 - (s[:, 0] - s[:, 1]) ** 2 for s in shares.values()]).mean()
            return FilterOutput(keep={m: s[:, 0] for m, s in shares.items()}, penalty=penalty)
        return FilterOutput(keep={m: self.hard_gate(z.squeeze(-1).float()) for m, z in logits.items()})

    def hard_gate(self, log_alpha: torch.Tensor) -> torch.Tensor:
        """Hard Concrete (eq. 21): a stretched, clipped sample in training, binary at evaluation."""
        low, high = self.cfg.hard_stretch_low, self.cfg.hard_stretch_high
        if not self.training:
            return (torch.sigmoid(log_alpha) * (high - low) + low > 0.5).to(log_alpha.dtype)
        u = torch.rand_like(log_alpha).clamp(1e-6, 1.0 - 1e-6)
        s_hat = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / self.cfg.hard_temperature)
        return (s_hat * (high - low) + low).clamp(0.0, 1.0)


class GraphFusion(nn.Module):
    """ARGF's graph fusion (appendix B, 4): unimodal, bimodal and trimodal node layers, averaged."""

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.node_score = nn.Linear(d, 1)
        self.pair_net = nn.Sequential(nn.Linear(2 * d, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, d), nn.Tanh())
        self.triple_net = nn.Sequential(nn.Linear(2 * d, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, d), nn.Tanh())

    @staticmethod
    def _affinity(score_i, score_j, p_i, p_j):
        # (B,) weight logit of a node from two parts: their scores over their (softmax) similarity + 0.5
        return (score_i + score_j) / ((p_i * p_j).sum(dim=-1) + 0.5)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        # xs: M tensors (B, d) -> (B, d)
        scores = [torch.tanh(self.node_score(x)).squeeze(-1) for x in xs]  # (B,) each
        layers = [sum(s.unsqueeze(-1) * x for s, x in zip(scores, xs)) / len(xs)]
        if len(xs) >= 2:
            probs = [torch.softmax(x, dim=-1) for x in xs]
            pairs = list(itertools.combinations(range(len(xs)), 2))
            raw = {p: self.pair_net(torch.cat([xs[p[0]], xs[p[1]]], dim=-1)) for p in pairs}  # (B, d)
            pair_score = {p: self._affinity(scores[p[0]], scores[p[1]], probs[p[0]], probs[p[1]]) for p in pairs}
            weights = torch.softmax(torch.stack([pair_score[p] for p in pairs], dim=-1), dim=-1)  # (B, P)
            nodes = {p: torch.tanh(weights[:, k:k + 1] * raw[p]) for k, p in enumerate(pairs)}
            layers.append(sum(nodes.values()))
            if len(xs) == 3:
                # second-order nodes: two bimodal nodes, or a bimodal node and the modality it lacks
                parts = [(nodes[p], nodes[q], pair_score[p], pair_score[q], torch.softmax(raw[p], -1),
                          torch.softmax(raw[q], -1)) for p, q in itertools.combinations(pairs, 2)]
                for p in pairs:
                    k = next(i for i in range(3) if i not in p)
                    parts.append((nodes[p], xs[k], pair_score[p], scores[k], torch.softmax(raw[p], -1), probs[k]))
                logits = torch.stack([self._affinity(sa, sb, pa, pb) for _, _, sa, sb, pa, pb in parts], dim=-1)
                weights2 = torch.softmax(logits, dim=-1)  # (B, 6)
                layers.append(sum(torch.tanh(weights2[:, k:k + 1] * self.triple_net(torch.cat([a, b], dim=-1)))
                                  for k, (a, b, *_) in enumerate(parts)))
        return torch.stack(layers).mean(dim=0)


class Fusion(nn.Module):
    """F_M of appendix B: addition (eq. 24), concatenation + FC (25), tensor (26-27), graph."""

    def __init__(self, kind: str, d: int, n_modalities: int, graph_hidden: int):
        super().__init__()
        self.kind = kind
        if kind == "concat":
            self.fc = nn.Linear(n_modalities * d, d)
        elif kind == "tensor":
            self.fc = nn.Linear((d + 1) ** n_modalities, d)
        elif kind == "graph":
            self.graph = GraphFusion(d, graph_hidden)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        # xs: M tensors (B, d) -> (B, d)
        if self.kind == "add":
            return torch.stack(xs).sum(dim=0)
        if self.kind == "concat":
            return self.fc(torch.cat(xs, dim=-1))
        if self.kind == "tensor":
            ones = xs[0].new_ones(xs[0].shape[0], 1)
            outer = torch.cat([xs[0], ones], dim=-1)  # (B, d + 1)
            for x in xs[1:]:
                outer = (outer.unsqueeze(-1) * torch.cat([x, ones], dim=-1).unsqueeze(1)).flatten(1)
            return self.fc(outer)  # from (B, (d + 1)^M)
        return self.graph(xs)


@dataclass
class M3SAEncoding:
    unimodal: dict[str, torch.Tensor]  # m -> (B, d), x^m
    filtered: dict[str, torch.Tensor]  # m -> (B, d), x^m_2
    fused: torch.Tensor  # (B, d), x^M
    keep: dict[str, torch.Tensor] = field(default_factory=dict)  # m -> (B,), s^m (empty without MFM)
    penalty: torch.Tensor | None = None


def per_sample_loss(task: str, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) unimodal loss l^m of eq. 5: |y^m - y| (the task loss per sample for other tasks)."""
    if task == "regression":
        return (pred.reshape(-1).float() - y.float()).abs()
    if task == "classification":
        return F.cross_entropy(pred.float(), y.long(), reduction="none")
    return F.binary_cross_entropy_with_logits(pred.float(), y.float(), reduction="none").mean(dim=-1)


def modulation_weights(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """alpha^m of eqs. 11-12 per sample, as constants: alpha = M / sum_m 1/l^m, alpha^m = alpha prod_{k!=m} l^k."""
    detached = {m: v.detach().float().clamp_min(LOSS_FLOOR) for m, v in losses.items()}  # (B,) each
    harmonic = len(detached) / sum(1.0 / v for v in detached.values())  # (B,)
    weights = {}
    for m in detached:
        others = [v for k, v in detached.items() if k != m]
        weights[m] = harmonic * (torch.stack(others).prod(dim=0) if others else torch.ones_like(harmonic))
    return weights


@MODELS.register()
class M3SA(MSAModel):
    name: ClassVar[str] = "m3sa"
    config_cls: ClassVar[type] = M3SAConfig
    impl_version: ClassVar[int] = 1
    USES_TEXT_ENCODER: ClassVar[bool] = True
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "train.optimizer": "adam",  # appendix C.4
        "train.lr": 1e-5,  # appendix C.4
        "train.text_lr": 1e-5,  # appendix C.4 (one learning rate; the MIB code's BERT lr is 1e-5 too)
        "train.batch_size": 32,  # MIB README
        "train.epochs": 50,  # MIB README / main_mib.py
        "train.patience": 50,  # MIB: no early stopping, the best-validation epoch is kept
        "train.weight_decay": 0.0,
        "train.scheduler": "none",
    }
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "mosi": _text_preset("bert-base-uncased"),
        "mosei": _text_preset("bert-base-uncased"),
        "meld": _text_preset("bert-base-uncased"),
        "iemocap": _text_preset("bert-base-uncased"),
        "sims": _text_preset("bert-base-chinese"),
    }
    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = _variants()

    def __init__(self, cfg: M3SAConfig, spec: InputSpec):
        super().__init__(cfg, spec)
        for key, value, choices in (("unimodal_loss", cfg.unimodal_loss, UNIMODAL_LOSSES),
                                    ("filter", cfg.filter, FILTERS), ("fusion", cfg.fusion, FUSIONS)):
            if value not in choices:
                raise UserError(f"m3sa: model.{key}={value!r} is not one of {', '.join(choices)}")
        self.modalities = tuple(m for m in MODALITY_ORDER if m in spec.modalities)
        if not self.modalities:
            raise ValueError("m3sa needs at least one modality")
        d, n = cfg.hidden, len(self.modalities)
        self.unimodal = UnimodalNetworks(cfg, spec, self.modalities)
        if cfg.modality_filter:
            self.filter = ModalityFilter(cfg, self.modalities)
            if cfg.baseline_embedding:
                self.baselines = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m in self.modalities})
        self.fusion = Fusion(cfg.fusion, d, n, cfg.graph_hidden)
        self.head = Classifier(d, 1 if spec.task == "regression" else int(spec.n_outputs))

    @classmethod
    def tiny(cls) -> M3SAConfig:
        return M3SAConfig(hidden=8, num_heads=2, layers=1, attn_dropout=0.1, relu_dropout=0.1, res_dropout=0.1,
                          embed_dropout=0.1, graph_hidden=8, token_embed_dim=8)

    def _prediction(self, x: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        out = self.head(x, detach_weights=detach_weights)  # (B, 1) | (B, C)
        return out.squeeze(-1) if self.spec.task == "regression" else out

    def encode(self, batch: Batch) -> M3SAEncoding:
        unimodal = self.unimodal(batch)  # m -> (B, d)
        if not self.cfg.modality_filter:
            return M3SAEncoding(unimodal=unimodal, filtered=unimodal,
                                fused=self.fusion([unimodal[m] for m in self.modalities]))
        gate = self.filter(unimodal)
        filtered = {}
        for m, x in unimodal.items():
            keep = gate.keep[m].unsqueeze(-1).to(x.dtype)  # (B, 1)
            filtered[m] = keep * x + (1.0 - keep) * self.baselines[m] if self.cfg.baseline_embedding else keep * x
        fused = self.fusion([filtered[m] for m in self.modalities])  # (B, d)
        return M3SAEncoding(unimodal=unimodal, filtered=filtered, fused=fused, keep=gate.keep, penalty=gate.penalty)

    def forward(self, batch: Batch) -> ModelOutput:
        enc = self.encode(batch)
        pred = self._prediction(enc.fused)
        aux = {}
        if enc.penalty is not None and self.cfg.penalty_weight > 0:
            aux["penalty"] = self.cfg.penalty_weight * enc.penalty
        features = dict(enc.unimodal)
        features.update({f"mask_{m}": s for m, s in enc.keep.items()})
        features["fusion"] = enc.fused
        return ModelOutput(pred=pred, aux_losses=aux, features=features)

    def param_groups(self, train_cfg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """`unimodal`: F_m (the text encoder at train.text_lr); `main`: MFM, baselines, fusion, C."""
        encoder = self.unimodal.text_encoder()
        text = [p for p in encoder.parameters() if p.requires_grad] if encoder is not None else []
        text_ids = {id(p) for p in text}
        unimodal = [p for p in self.unimodal.parameters() if p.requires_grad and id(p) not in text_ids]
        unimodal_ids = {id(p) for p in self.unimodal.parameters()}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in unimodal_ids]
        groups = [{"params": unimodal}]
        if text:
            groups.append({"params": text, "lr": float(train_cfg.get("train.text_lr", 5e-5)), "name": "text_encoder"})
        return {"unimodal": groups, "main": [{"params": main}]}

    def unimodal_phase(self, batch: Batch, ctx: Any) -> dict[str, float]:
        """Step 1 of a batch (section 4.1): the unimodal networks on the (modulated) unimodal losses."""
        with ctx.autocast():
            unimodal = self.unimodal(batch)
            losses = {m: per_sample_loss(self.spec.task, self._prediction(x, detach_weights=True), batch.y)
                      for m, x in unimodal.items()}  # m -> (B,), l^m
            if self.cfg.unimodal_loss == "modulated":
                weights = modulation_weights(losses)
                loss = sum((weights[m] * losses[m]).mean() for m in losses)  # sum_m mean_i l^m_2
            else:
                loss = sum(v.mean() for v in losses.values())
        ctx.backward(loss)
        ctx.step("unimodal")
        logged = {"unimodal": float(loss.detach())}
        logged.update({f"unimodal_{m}": float(v.detach().mean()) for m, v in losses.items()})
        return logged

    def multimodal_phase(self, batch: Batch, ctx: Any) -> dict[str, float]:
        """Step 2 of a batch: the whole model on the multimodal loss (+ the soft filter's penalty)."""
        with ctx.autocast():
            out = self(batch)
            task = ctx.loss_fn(out.pred, batch.y)
            loss = task + sum(out.aux_losses.values())
        ctx.backward(loss)
        ctx.step()
        sums = ctx.state.setdefault("mask_sums", {})  # the epoch's gates, for `on_validation_end`
        for key, keep in out.features.items():
            if key.startswith("mask_"):
                total, count = sums.get(key, (0.0, 0))
                sums[key] = (total + float(keep.detach().float().sum()), count + int(keep.shape[0]))
        logged = {"task": float(task.detach()), "total": float(loss.detach())}
        logged.update({k: float(v.detach()) for k, v in out.aux_losses.items()})
        return logged

    def training_step(self, batch: Batch, ctx: Any) -> dict[str, float]:
        if int(getattr(ctx, "grad_accum", 1)) != 1:
            raise UserError("m3sa steps twice per batch (unimodal, then multimodal phase): use train.grad_accum=1")
        logged = {} if self.cfg.unimodal_loss == "none" else self.unimodal_phase(batch, ctx)
        logged.update(self.multimodal_phase(batch, ctx))
        return logged

    def on_epoch_start(self, ctx: Any) -> None:
        ctx.state["mask_sums"] = {}

    def on_validation_end(self, ctx: Any, records: list[dict[str, Any]]) -> None:
        """The epoch's mean filter gate per modality over its training samples (`mask_t`, `mask_a`,
        `mask_v`; soft: s^m_1) into every record of the epoch as `model_values`."""
        values = {k: total / count for k, (total, count) in ctx.state.get("mask_sums", {}).items() if count}
        if values:
            for record in records:
                record["model_values"] = dict(values)
