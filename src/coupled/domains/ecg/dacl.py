"""DACL, the retrained reference of the ECG domain (issue 19 item 6; docs/ecg.md, "DACL").

Diffusion-Augmented Contrastive Learning (R. Zewail, arXiv 2509.20048): scattering-transform features of the trace
-> a small VAE's latent -> the diffusion forward process makes noisy views of that latent at several timesteps ->
a U-Net-style encoder trained with a supervised contrastive loss across the views -> a linear head. It is trained on
the clean traces of the same training patients as the frozen classifier and reads the degraded trace directly: a
classifier retrained for robustness, so it breaks the frozen-classifier premise the coupled methods keep. The
evaluation runs it as the ECG domain's reference method `dacl` (engine method `noisy` with this net in place of the
frozen classifier; `Domain.reference_methods`).

`DACLNet` (`ecg_dacl`, role classifier): traces [B, 1, L] -> logits [B, K]. `train_dacl` trains it in three phases
(VAE, contrastive encoder, linear head) and writes `dacl.safetensors` + `dacl.json` into a bundle folder.
The paper's open choices and ours are in `DACLConfig`'s docstring.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CoupledError
from .networks import _Config, _check, _norm
from .synth import LENGTH


@dataclass(frozen=True)
class DACLConfig(_Config):
    """The choices the paper leaves open, and ours (docs/ecg.md lists them beside the paper's):

    `scattering_j`, `scattering_q`: Scattering1D's J (averaging scale 2**J samples: 64 = 0.26 s at 250 Hz, about a
    QRS-to-T span) and Q (wavelets per octave, first order); second order on, log(1e-3 + S), each of the C
    coefficient channels standardised with the training traces' mean and std (buffers of the net).
    `latent`: VAE latent channels per scattering frame ([latent, L / 2**J]); `vae_hidden`: its conv width.
    `timesteps`: the diffusion views' t of a linear-beta DDPM schedule (1e-4 .. 0.02 over 1000 steps), on the
    standardised latent means: alpha_bar = 0.99, 0.87, 0.60, 0.13 for 10, 50, 100, 200.
    `channels`: the U-Net encoder's widths (two levels, a skip at each); `embed`: the pooled representation's size
    before the linear head; `projection`: the contrastive projection's size; `temperature`: SupCon's tau.
    """

    length: int = LENGTH
    num_classes: int = 3
    scattering_j: int = 6
    scattering_q: int = 8
    latent: int = 8
    vae_hidden: int = 64
    timesteps: tuple = (10, 50, 100, 200)
    channels: tuple = (32, 64)
    embed: int = 64
    projection: int = 32
    temperature: float = 0.1
    diffusion_steps: int = 1000


def scattering_module(cfg: DACLConfig):
    """kymatio's torch Scattering1D for traces of `cfg.length` (imported from its 1-D frontend: `kymatio.torch` also
    imports the 3-D frontend, which fails on SciPy >= 1.15 where `scipy.special.sph_harm` is gone)."""
    try:
        from kymatio.scattering1d.frontend.torch_frontend import ScatteringTorch1D
    except ImportError:
        raise CoupledError("the DACL reference needs kymatio; install it with `pip install 'coupled-diffusion[ecg]'`") from None
    return ScatteringTorch1D(J=cfg.scattering_j, shape=cfg.length, Q=cfg.scattering_q)


def alpha_bar(cfg: DACLConfig) -> torch.Tensor:
    """DDPM's alpha_bar_t = prod_{s<=t} (1 - beta_s) for the linear beta schedule 1e-4 .. 0.02 (Ho et al. 2020, eq. 4)."""
    betas = torch.linspace(1e-4, 0.02, cfg.diffusion_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


class LatentVAE(nn.Module):
    """A small conv VAE over the standardised scattering frames [B, C, T] with a latent [B, latent, T]."""

    def __init__(self, c: int, cfg: DACLConfig):
        super().__init__()
        h = cfg.vae_hidden
        self.encoder = nn.Sequential(nn.Conv1d(c, h, 3, padding=1), nn.SiLU(), nn.Conv1d(h, 2 * cfg.latent, 3, padding=1))
        self.decoder = nn.Sequential(nn.Conv1d(cfg.latent, h, 3, padding=1), nn.SiLU(), nn.Conv1d(h, c, 3, padding=1))

    def encode(self, s):
        mu, logvar = self.encoder(s).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)


class UNetEncoder(nn.Module):
    """The U-Net-style encoder of the latent: down (stride 2), bottleneck, up with the skip, then mean and max
    pooling over frames -> [B, embed]."""

    def __init__(self, cfg: DACLConfig):
        super().__init__()
        c1, c2 = cfg.channels[0], cfg.channels[-1]
        block = lambda a, b, **k: nn.Sequential(nn.Conv1d(a, b, 3, padding=1, **k), _norm(b, 8), nn.SiLU())  # noqa: E731
        self.inp = block(cfg.latent, c1)
        self.down = block(c1, c2, stride=2)
        self.mid = block(c2, c2)
        self.up = nn.ConvTranspose1d(c2, c1, 4, stride=2, padding=1)
        self.out = block(2 * c1, c1)
        self.pool = nn.Linear(2 * c1, cfg.embed)

    def forward(self, z):
        h1 = self.inp(z)
        h2 = self.mid(self.down(h1))
        u = self.up(h2)[..., : h1.shape[-1]]
        u = F.pad(u, (0, h1.shape[-1] - u.shape[-1]))
        h = self.out(torch.cat([u, h1], dim=1))
        return self.pool(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


class DACLNet(nn.Module):
    """DACL as one classifier of traces [B, 1, L] -> logits [B, K]: scattering, the VAE's latent mean (standardised),
    the U-Net encoder, the linear head. The projection is used by training only."""

    def __init__(self, cfg: DACLConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DACLConfig()
        if len(cfg.channels) != 2:
            raise CoupledError(f"DACLConfig.channels must be two widths (the U-Net's two levels), got {list(cfg.channels)}")
        # kymatio's filters are rebuilt from (J, Q, length), not saved: a plain attribute keeps them out of the weights
        self.__dict__["scattering"] = scattering_module(cfg)
        with torch.no_grad():
            c = self.scattering(torch.zeros(1, 1, cfg.length)).shape[-2]
        self.register_buffer("feature_mean", torch.zeros(c, 1))
        self.register_buffer("feature_std", torch.ones(c, 1))
        self.register_buffer("latent_mean", torch.zeros(cfg.latent, 1))
        self.register_buffer("latent_std", torch.ones(cfg.latent, 1))
        self.vae = LatentVAE(c, cfg)
        self.encoder = UNetEncoder(cfg)
        self.projection = nn.Sequential(nn.Linear(cfg.embed, cfg.embed), nn.SiLU(), nn.Linear(cfg.embed, cfg.projection))
        self.head = nn.Linear(cfg.embed, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised log scattering coefficients [B, C, T] of traces [B, 1, L]."""
        _check("ECG traces", x, (x.shape[0], 1, self.cfg.length))
        s = self.scattering.to(x.device)(x.float())[:, 0]
        return (torch.log(s.clamp_min(0) + 1e-3) - self.feature_mean) / self.feature_std

    def latent(self, s: torch.Tensor) -> torch.Tensor:
        """The standardised VAE latent mean z0 [B, latent, T] of features `s`."""
        mu, _ = self.vae.encode(s)
        return (mu - self.latent_mean) / self.latent_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.latent(self.features(x))))


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, eq. 2, L_out) over rows `z` [N, D] (normalised here) with
    class `labels` [N]: every other row of the same class is a positive of the anchor."""
    if z.shape[0] != labels.shape[0] or z.shape[0] < 2:
        raise CoupledError(f"supcon_loss needs >= 2 rows and one label per row, got {list(z.shape)} and {list(labels.shape)}")
    z = F.normalize(z, dim=1)
    sim = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, -math.inf)
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    count = pos.sum(1)
    has = count > 0
    per_anchor = -(log_prob.masked_fill(~pos, 0).sum(1)[has] / count[has])
    return per_anchor.mean()


def diffusion_views(z0: torch.Tensor, timesteps, abar: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The forward-process views z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps of `z0` [B, ...] at each of
    `timesteps` (DDPM eq. 4): [V * B, ...], view-major."""
    views = []
    for t in timesteps:
        a = abar[int(t) - 1]
        eps = torch.randn(z0.shape, generator=g)
        views.append(a.sqrt() * z0 + (1 - a).sqrt() * eps)
    return torch.cat(views)


def degraded_copies(signals: torch.Tensor, ranges: dict, copies: int, seed: int) -> torch.Tensor:
    """`copies` degraded copies of training traces `signals` [N, 1, L] ([copies * N, 1, L], copy-major): each trace
    gets one of the degradations of `ranges` ({name: [lo, hi]}, a config's `corruptions.train_severity`), drawn
    uniformly, at a severity uniform in its range, from the "training" stream of `seed` (never the test corruption
    seed). For the variant `dacl_degraded`, which is not the paper's recipe."""
    from ...seeds import stream_seed
    from .degrade import CORRUPTIONS

    g = torch.Generator().manual_seed(stream_seed("training", seed, 0xDAC, 1))
    names = sorted(ranges)
    out = []
    for _ in range(copies):
        for x in signals:
            name = names[int(torch.randint(len(names), (1,), generator=g))]
            lo, hi = ranges[name]
            severity = lo + (hi - lo) * float(torch.rand((), generator=g))
            out.append(CORRUPTIONS[name](x[None], severity, g))
    return torch.cat(out) if out else signals[:0]


DACL_TRAINING = {"vae_steps": 800, "vae_beta": 1e-3, "contrastive_steps": 1500, "head_steps": 500,
                 "batch_size": 64, "lr": 2e-3}


def train_dacl(signals: torch.Tensor, labels: torch.Tensor, cfg: DACLConfig | None = None, *, seed: int = 0,
               training: dict | None = None, progress: bool = True) -> tuple[DACLNet, dict]:
    """Train DACL on clean traces `signals` [N, 1, L] with labels [N]: (1) the VAE on their scattering features
    (reconstruction + `vae_beta` KL), (2) the U-Net encoder + projection with SupCon over the diffusion views of the
    latent means (every timestep of `cfg.timesteps`, the batch's views of one class all positives), (3) the linear
    head with cross-entropy on the frozen encoder's embeddings of the same views and of the clean latent.
    Every draw comes from `torch.Generator`s seeded by `seed`. Returns (net in eval mode, a log dict)."""
    from tqdm.auto import tqdm

    from ...seeds import stream_seed

    t = {**DACL_TRAINING, **(training or {})}
    unknown = sorted(set(t) - set(DACL_TRAINING))
    if unknown:
        raise CoupledError(f"unknown DACL training option(s) {unknown}; valid: {', '.join(DACL_TRAINING)}")
    torch.manual_seed(stream_seed("init", seed, 0xDAC))
    net = DACLNet(cfg)
    cfg = net.cfg
    started, log = time.time(), {"seed": seed, "training": t, "items": int(len(labels))}
    with torch.no_grad():  # the scattering features of every training trace, computed once
        raw = torch.cat([torch.log(net.scattering(signals[i:i + 64].float())[:, 0].clamp_min(0) + 1e-3)
                         for i in tqdm(range(0, len(signals), 64), desc="dacl scattering", disable=not progress)])
        net.feature_mean.copy_(raw.mean((0, 2))[:, None])
        net.feature_std.copy_(raw.std((0, 2))[:, None].clamp_min(1e-3))
        feats = (raw - net.feature_mean) / net.feature_std
    log["scattering_shape"] = list(feats.shape[1:])
    g = torch.Generator().manual_seed(stream_seed("training", seed, 0xDAC))
    order = torch.Generator().manual_seed(stream_seed("data_order", seed, 0xDAC))
    bs = int(t["batch_size"])

    def batch():
        idx = torch.randint(len(labels), (bs,), generator=order)
        return feats[idx], labels[idx]

    # (1) the VAE
    opt = torch.optim.Adam(net.vae.parameters(), lr=t["lr"])
    for step in tqdm(range(int(t["vae_steps"])), desc="dacl vae", disable=not progress):
        s, _ = batch()
        mu, logvar = net.vae.encode(s)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=g)
        recon = F.mse_loss(net.vae.decoder(z), s)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = recon + t["vae_beta"] * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
    log["vae"] = {"recon_mse": float(recon.detach()), "kl": float(kl.detach())}
    net.vae.requires_grad_(False)
    with torch.no_grad():
        mu = torch.cat([net.vae.encode(feats[i:i + 256])[0] for i in range(0, len(feats), 256)])
        net.latent_mean.copy_(mu.mean((0, 2))[:, None])
        net.latent_std.copy_(mu.std((0, 2))[:, None].clamp_min(1e-3))
        latents = (mu - net.latent_mean) / net.latent_std
    abar = alpha_bar(cfg)

    def views():
        idx = torch.randint(len(labels), (bs,), generator=order)
        y = labels[idx]
        return diffusion_views(latents[idx], cfg.timesteps, abar, g), y.repeat(len(cfg.timesteps)), latents[idx], y

    # (2) the encoder, supervised contrastive across the diffusion views
    params = [*net.encoder.parameters(), *net.projection.parameters()]
    opt = torch.optim.Adam(params, lr=t["lr"])
    steps = int(t["contrastive_steps"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    for step in tqdm(range(steps), desc="dacl contrastive", disable=not progress):
        zt, y, _, _ = views()
        loss = supcon_loss(net.projection(net.encoder(zt)), y, cfg.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    log["contrastive_loss"] = float(loss.detach())
    net.encoder.requires_grad_(False)
    net.projection.requires_grad_(False)
    # (3) the linear head on the frozen encoder
    opt = torch.optim.Adam(net.head.parameters(), lr=t["lr"])
    net.encoder.eval()
    for step in tqdm(range(int(t["head_steps"])), desc="dacl head", disable=not progress):
        zt, y, z0, y0 = views()
        with torch.no_grad():
            h = net.encoder(torch.cat([zt, z0]))
        loss = F.cross_entropy(net.head(h), torch.cat([y, y0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    log["head_loss"] = float(loss.detach())
    log["train_seconds"] = round(time.time() - started, 1)
    return net.eval().requires_grad_(False), log
