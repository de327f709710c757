"""RoPE scaling rules for grids longer or larger than the training grid: PI, NTK-aware, YaRN, RIFLEx.

A rule changes the rotary frequencies of **one axis**; :func:`visionpe.rope.rope_cos_sin` accepts one
rule for every axis or one rule-or-``None`` per axis, so a video model can, for example, apply RIFLEx
to time only.  Every rule is a small frozen dataclass with

* ``frequencies(dim, base) -> (dim // 2,)`` float64: the (modified) frequencies of an axis whose
  rotary dim is ``dim``;
* ``cos_sin_scale``: a factor the cos and sin of that axis are multiplied by (1 except YaRN).

Plain RoPE frequencies are ``θ_i = base^(−2i/dim)``, ``i = 0 … dim/2 − 1`` (:func:`rope_frequencies`).
A component's period is ``N_i = 2π/θ_i`` positions.  ``s`` below is the scale factor
(test length / training length).

=========  ============================================================  ===========================
rule       frequencies                                                   source
=========  ============================================================  ===========================
PI         ``θ_i / s``                                                   Chen et al. 2023
NTK        plain frequencies with ``base · s^(dim/(dim−2))``            bloc97 2023 (NTK-aware)
YaRN       ``γ_i θ_i + (1 − γ_i) θ_i / s``, γ a ramp in rotations        Peng et al. 2023
RIFLEx     ``θ_k = c · 2π / L_test`` for the intrinsic component k only  Zhao et al. 2025
=========  ============================================================  ===========================
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "NTK",
    "PI",
    "RIFLEX_PRESETS",
    "RIFLEx",
    "RIFLExPreset",
    "ScalingRule",
    "YaRN",
    "RULE_NAMES",
    "LENGTH_RULES",
    "find_intrinsic_component",
    "length_rule",
    "rope_frequencies",
]


def _check_dim(dim: int, minimum: int = 0) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or dim % 2 or dim < minimum:
        raise ValueError(f"a rotary dim must be an even integer >= {minimum}, got {dim!r}; "
                         f"rotary channels come in pairs")
    return dim


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def rope_frequencies(dim: int, base: float = 10000.0) -> Tensor:
    """Plain RoPE frequencies ``θ_i = base^(−2i/dim)`` for one axis.

    Args:
        dim: rotary channels of the axis (even; 0 gives an empty tensor).
        base: the RoPE base (``theta`` in most code), finite and > 0.

    Returns:
        ``(dim // 2,)`` float64 tensor on the CPU, ``θ_0 = 1`` first (fastest component).

    Raises:
        ValueError: if ``dim`` is odd or negative, or ``base`` is not a finite positive number.
    """
    _check_dim(dim)
    base = _check_positive("base", base)
    return base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def find_intrinsic_component(dim: int, base: float, repetition_length: float) -> tuple[int, float]:
    """RIFLEx's intrinsic component: the one whose period is closest to the observed repetition.

    ``k = argmin_j |2π/θ_j − N|`` (RIFLEx Eq. 7), where ``N`` is the number of positions (latent
    frames) after which a video generated with plain extrapolation starts repeating itself.

    Args:
        dim: rotary channels of the axis (even, >= 2).
        base: the RoPE base of the axis.
        repetition_length: ``N``, the first observed repetition, in positions (> 0).

    Returns:
        ``(k, period)``: ``k`` 1-indexed (``θ_k`` is ``rope_frequencies(dim, base)[k - 1]``) and the
        period ``2π/θ_k`` as a float.  Example: ``(16, 256, 48) -> (4, 50.27)`` (HunyuanVideo).
    """
    _check_dim(dim, minimum=2)
    repetition_length = _check_positive("repetition_length", repetition_length)
    periods = 2 * math.pi / rope_frequencies(dim, base)
    index = int(torch.argmin((periods - repetition_length).abs()))
    return index + 1, float(periods[index])


class ScalingRule(ABC):
    """Base class of the scaling rules: per-axis frequencies and a cos/sin factor."""

    @abstractmethod
    def frequencies(self, dim: int, base: float) -> Tensor:
        """The ``(dim // 2,)`` float64 frequencies of one axis with rotary dim ``dim`` and base ``base``."""

    @property
    def cos_sin_scale(self) -> float:
        """Factor applied to the cos and sin of the axis (logits on its channels scale by its square)."""
        return 1.0


@dataclass(frozen=True)
class PI(ScalingRule):
    """Position Interpolation: ``θ'_i = θ_i / s``, the same as dividing positions by ``s``.

    Args:
        scale: ``s`` = test length / training length (> 0).
    """

    scale: float

    def __post_init__(self) -> None:
        _check_positive("PI scale", self.scale)

    def frequencies(self, dim: int, base: float) -> Tensor:
        return rope_frequencies(dim, base) / self.scale


@dataclass(frozen=True)
class NTK(ScalingRule):
    """NTK-aware scaling: plain frequencies with the base raised to ``base · s^(dim/(dim−2))``.

    The slowest component is interpolated by exactly ``s`` and the fastest is left as it is.  (This
    is diffusers' ``get_1d_rotary_pos_embed(ntk_factor=s ** (dim / (dim - 2)))``; passing
    ``ntk_factor=s`` there is a different, weaker rule.)

    Args:
        scale: ``s`` = test length / training length (> 0).
    """

    scale: float

    def __post_init__(self) -> None:
        _check_positive("NTK scale", self.scale)

    def frequencies(self, dim: int, base: float) -> Tensor:
        _check_dim(dim)
        base = _check_positive("base", base)
        if dim == 0:
            return rope_frequencies(0, base)
        if dim == 2:
            raise ValueError("NTK-aware scaling needs a rotary dim > 2 (its exponent is dim/(dim-2)), got "
                             "dim=2; give this axis more channels or use PI")
        return rope_frequencies(dim, base * self.scale ** (dim / (dim - 2)))


@dataclass(frozen=True)
class YaRN(ScalingRule):
    """YaRN: keep fast components, interpolate slow ones, with a ramp in rotations.

    With ``r_i = L·θ_i/(2π)`` the number of rotations component ``i`` makes over the training
    length ``L``, this implements the paper's ramp γ(r) (Peng et al. 2023)::

        γ(r) = 0 if r < α,  1 if r > β,  (r − α)/(β − α) otherwise
        θ'_i = γ(r_i)·θ_i + (1 − γ(r_i))·θ_i / s

    (HF transformers instead ramps linearly in the channel index between ``floor``/``ceil`` of the
    indices where ``r = β`` and ``r = α``; the two agree only at the ends of the ramp.)

    Args:
        scale: ``s`` = test length / training length (> 0).
        train_length: ``L``, positions on this axis during training (> 0).
        alpha, beta: ramp ends in rotations, ``0 <= alpha < beta`` (LLM defaults 1 and 32).
        apply_attention_factor: multiply cos and sin by :attr:`attention_factor`
            (FiT / HF convention), which scales the logits on this axis' channels by its square.
    """

    scale: float
    train_length: float
    alpha: float = 1.0
    beta: float = 32.0
    apply_attention_factor: bool = True

    def __post_init__(self) -> None:
        _check_positive("YaRN scale", self.scale)
        _check_positive("YaRN train_length", self.train_length)
        for name, value in (("alpha", self.alpha), ("beta", self.beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"YaRN {name} must be a finite number >= 0 (in rotations), got {value!r}")
        if not self.alpha < self.beta:
            raise ValueError(f"YaRN needs alpha < beta (ramp ends in rotations), got alpha={self.alpha}, "
                             f"beta={self.beta}; the usual values are alpha=1, beta=32")

    @property
    def attention_factor(self) -> float:
        """``0.1·ln(s) + 1`` for ``s > 1``, else 1 (YaRN's ``mscale``)."""
        return 0.1 * math.log(self.scale) + 1.0 if self.scale > 1 else 1.0

    @property
    def cos_sin_scale(self) -> float:
        return self.attention_factor if self.apply_attention_factor else 1.0

    def ramp(self, dim: int, base: float) -> Tensor:
        """``γ(r_i)`` for every component, ``(dim // 2,)`` float64: 1 = kept, 0 = fully interpolated."""
        rotations = self.train_length * rope_frequencies(dim, base) / (2 * math.pi)
        return ((rotations - self.alpha) / (self.beta - self.alpha)).clamp(0.0, 1.0)

    def frequencies(self, dim: int, base: float) -> Tensor:
        theta = rope_frequencies(dim, base)
        gamma = self.ramp(dim, base)
        return gamma * theta + (1 - gamma) * theta / self.scale


_RIFLEX_MODES = {"paper": 1.0, "repo": 0.9}


@dataclass(frozen=True)
class RIFLExPreset:
    """Temporal RoPE of a video DiT and its RIFLEx intrinsic component (RIFLEx paper / official code).

    Attributes:
        dims: rotary dims per axis ``(t, h, w)``.
        base: RoPE base of every axis.
        k: intrinsic component of the temporal axis, 1-indexed.
        train_length: training length in latent frames.
        layout: pair layout of the model (see :func:`visionpe.rope.apply_rope`).
        temporal_axis: index of the time axis in ``dims``.
    """

    dims: tuple[int, ...]
    base: float
    k: int
    train_length: int
    layout: str = "interleaved"
    temporal_axis: int = 0

    @property
    def period(self) -> float:
        """Period ``2π/θ_k`` of the intrinsic component, in latent frames."""
        theta = rope_frequencies(self.dims[self.temporal_axis], self.base)
        return float(2 * math.pi / theta[self.k - 1])

    def rules(self, test_length: float, mode: str = "repo") -> tuple[RIFLEx | None, ...]:
        """One rule per axis for :func:`visionpe.rope.rope_cos_sin`: RIFLEx on time, ``None`` elsewhere."""
        rule = RIFLEx(test_length, k=self.k, mode=mode)
        return tuple(rule if a == self.temporal_axis else None for a in range(len(self.dims)))


#: HunyuanVideo (k and code defaults from the RIFLEx repo), CogVideoX-5B 1.0 (RIFLEx repo) and
#: Wan2.1 (k = 6 from the RIFLEx author in thu-ml/DiT-Extrapolation#8); lengths in latent frames.
RIFLEX_PRESETS: dict[str, RIFLExPreset] = {
    "hunyuanvideo": RIFLExPreset(dims=(16, 56, 56), base=256.0, k=4, train_length=33),
    "cogvideox": RIFLExPreset(dims=(16, 24, 24), base=10000.0, k=2, train_length=13),
    "wan": RIFLExPreset(dims=(44, 42, 42), base=10000.0, k=6, train_length=21),
}


@dataclass(frozen=True)
class RIFLEx(ScalingRule):
    """RIFLEx: slow down only the intrinsic component so that it completes < 1 cycle over the video.

    ``θ'_k = c·2π / L_test`` with ``c = 1`` (``mode="paper"``, Eq. 8) or ``c = 0.9`` (``mode="repo"``,
    the official code, keeping the video under 90% of the new period).  Applied only when the
    component's period ``N_k = 2π/θ_k`` is shorter than ``L_test``; every other component is unchanged.

    Args:
        test_length: ``L_test``, positions (latent frames) at inference (> 0).
        k: the intrinsic component, 1-indexed; or
        repetition_length: the observed repetition length ``N``, from which ``k`` is found with
            :func:`find_intrinsic_component` for the axis' dim and base.  Pass exactly one of the two.
        mode: ``"repo"`` (default, official code) or ``"paper"``.
    """

    test_length: float
    k: int | None = None
    repetition_length: float | None = None
    mode: str = "repo"

    def __post_init__(self) -> None:
        _check_positive("RIFLEx test_length", self.test_length)
        if self.mode not in _RIFLEX_MODES:
            raise ValueError(f"unknown RIFLEx mode {self.mode!r}; valid modes: {', '.join(_RIFLEX_MODES)}")
        if (self.k is None) == (self.repetition_length is None):
            raise ValueError("RIFLEx needs exactly one of k (the 1-indexed intrinsic component) or "
                             "repetition_length (the observed repetition, to find k from)")
        if self.k is not None and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            raise ValueError(f"RIFLEx k is 1-indexed and must be an integer >= 1, got {self.k!r}")
        if self.repetition_length is not None:
            _check_positive("RIFLEx repetition_length", self.repetition_length)

    @classmethod
    def from_preset(cls, name: str, test_length: float, mode: str = "repo") -> RIFLEx:
        """RIFLEx with the ``k`` of a model in :data:`RIFLEX_PRESETS` (apply it to the temporal axis)."""
        if name not in RIFLEX_PRESETS:
            raise ValueError(f"unknown RIFLEx preset {name!r}; valid presets: {', '.join(RIFLEX_PRESETS)}")
        return cls(test_length, k=RIFLEX_PRESETS[name].k, mode=mode)

    def component(self, dim: int, base: float) -> int:
        """The 1-indexed component this rule targets on an axis with rotary dim ``dim`` and ``base``."""
        _check_dim(dim)
        if dim == 0:
            raise ValueError("RIFLEx was given an axis with rotary dim 0; apply it only to a rotated axis "
                             "(pass None for this axis in the per-axis scaling list)")
        if self.k is None:
            return find_intrinsic_component(dim, base, self.repetition_length)[0]
        if self.k > dim // 2:
            raise ValueError(f"RIFLEx k={self.k} is out of range for rotary dim {dim}: valid k are 1..{dim // 2}")
        return self.k

    def frequencies(self, dim: int, base: float) -> Tensor:
        theta = rope_frequencies(dim, base)
        k = self.component(dim, base)
        if 2 * math.pi / theta[k - 1] < self.test_length:
            theta[k - 1] = _RIFLEX_MODES[self.mode] * 2 * math.pi / self.test_length
        return theta


#: the names :func:`length_rule` takes
RULE_NAMES = ("pi", "ntk", "yarn", "riflex")
#: what a length benchmark compares: plain extrapolation (no rule) and every rule of :func:`length_rule`
LENGTH_RULES = ("none", *RULE_NAMES)


def length_rule(name: str, train_length: float | None, test_length: float, k: int | None = None,
                riflex_mode: str = "repo", yarn_alpha: float = 1.0, yarn_beta: float = 32.0) -> ScalingRule:
    """The rule ``name`` for taking one axis from ``train_length`` to ``test_length`` positions.

    ``"pi"`` → ``PI(s)``, ``"ntk"`` → ``NTK(s)``, ``"yarn"`` → ``YaRN(s, train_length, yarn_alpha, yarn_beta)``
    with ``s = test_length / train_length``; ``"riflex"`` → ``RIFLEx(test_length, k, riflex_mode)``, which
    needs ``k`` and no training length.
    """
    if name not in RULE_NAMES:
        raise ValueError(f"unknown rule {name!r}; use one of {', '.join(RULE_NAMES)}")
    if name == "riflex":
        if k is None:
            raise ValueError("the RIFLEx rule needs k, the intrinsic component (1-indexed)")
        return RIFLEx(test_length, k=k, mode=riflex_mode)
    if train_length is None:
        raise ValueError(f"the {name} rule needs the training length")
    scale = test_length / train_length
    if name == "pi":
        return PI(scale)
    if name == "ntk":
        return NTK(scale)
    return YaRN(scale, train_length, alpha=yarn_alpha, beta=yarn_beta)
