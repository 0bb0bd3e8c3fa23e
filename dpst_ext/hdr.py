"""HDR and wide-gamut video frames brought to SDR BT.709, the colours every other part of dpst works in.

Phones record HDR video by default (HLG or PQ transfer, BT.2020 primaries, 10 bits). Read as if it were
SDR, such a frame looks flat and pale: its signal is a different curve, and its primaries lie farther out
than BT.709's. ``to_sdr`` converts a decoded frame's R'G'B' (read in 16 bits with its stream's YUV matrix):

1. To light relative to SDR white, with ITU-R BT.2408's reference level: SDR white is 203 cd/m2 in HDR.
   PQ (SMPTE ST 2084): its EOTF, in cd/m2, over 203. HLG (ARIB STD-B67): its inverse OETF, then BT.2100's
   OOTF for a 1000 cd/m2 display (gamma 1.2), over 203; HLG's 75 % signal is then SDR white. SDR transfers
   with BT.2020 primaries: BT.1886's display gamma 2.4.
2. BT.2020 primaries to BT.709 in linear light (the matrix from the two sets of chromaticities, D65 white),
   negative values (colours outside BT.709) clipped to 0.
3. Highlights compressed, hue kept: the largest channel m goes through a curve that is the identity up to
   KNEE (k) and rises smoothly (slope 1 at k) towards 1 above it, k + (1 - k) d / (d + 1 - k) with
   d = m - k, and the other channels are scaled with it. Encoded, SDR white (203 cd/m2) lands at 241 of
   255, 1000 cd/m2 at 253.5 and 10000 at 254.9: brighter stays brighter, nothing clips abruptly.
4. Encoded for an SDR display (BT.1886, gamma 2.4), as the BT.709 output is shown.

An SDR colour placed in an HDR stream at BT.2408's levels (below KNEE) comes back as itself.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = ["PQ", "HLG", "BT2020", "SDR_WHITE", "KNEE", "needs_conversion", "describe", "to_sdr", "primaries_matrix"]

# Tag values (ISO/IEC 23091-2, as FFmpeg and PyAV number them).
PQ, HLG = 16, 18                 # colour transfer: SMPTE ST 2084, ARIB STD-B67
BT2020 = 9                       # colour primaries (and the BT.2020 non-constant-luminance YUV matrix)
SDR_WHITE = 203.0                # cd/m2: SDR white (100 %) and HLG's 75 % signal in HDR (ITU-R BT.2408)
HLG_PEAK = 1000.0                # cd/m2: the nominal display of HLG's OOTF (BT.2100: gamma 1.2 there)
KNEE = 0.75                      # relative light (1 = SDR white) up to which the tone curve is the identity
DISPLAY_GAMMA = 2.4              # BT.1886

_CHROMATICITIES = {              # (x, y) of R, G, B
    "bt709": ((0.640, 0.330), (0.300, 0.600), (0.150, 0.060)),
    "bt2020": ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046)),
}
_D65 = (0.3127, 0.3290)


def _to_xyz(name: str) -> np.ndarray:
    """RGB (linear) -> XYZ of a set of primaries with D65 white (Y of white = 1)."""
    xyz = lambda x, y: np.array([x / y, 1.0, (1 - x - y) / y])  # noqa: E731
    p = np.stack([xyz(*c) for c in _CHROMATICITIES[name]], axis=1)
    return p * np.linalg.solve(p, xyz(*_D65))


def primaries_matrix(src: str = "bt2020", dst: str = "bt709") -> np.ndarray:
    """The 3x3 matrix taking linear RGB in ``src`` primaries to ``dst`` primaries (float64)."""
    return np.linalg.solve(_to_xyz(dst), _to_xyz(src))


_LUMA_2020 = (0.2627, 0.6780, 0.0593)


def needs_conversion(transfer: int, primaries: int) -> bool:
    """Whether a frame tagged with this transfer and these primaries must go through to_sdr: its primaries are
    BT.2020, tagged so, or it is HDR (PQ, HLG), which is BT.2020 whatever its primaries tag says (often none)."""
    return int(transfer) in (PQ, HLG) or int(primaries) == BT2020


def describe(transfer: int, primaries: int) -> str:
    """'HDR HLG, BT.2020 primaries' and the like, for messages."""
    curve = {PQ: "HDR PQ (SMPTE ST 2084)", HLG: "HDR HLG"}.get(int(transfer), "SDR")
    return f"{curve}, {'BT.2020' if needs_conversion(transfer, primaries) else 'BT.709'} primaries"


def _pq_nits(v: torch.Tensor) -> torch.Tensor:
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = v.pow(1 / m2)
    return 10000.0 * ((p - c1).clamp(min=0) / (c2 - c3 * p)).pow(1 / m1)


def _hlg_scene(v: torch.Tensor) -> torch.Tensor:
    """HLG's inverse OETF: scene light 0..1."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * float(np.log(4 * a))
    return torch.where(v <= 0.5, v * v / 3, (torch.exp((v - c) / a) + b) / 12)


@functools.lru_cache(maxsize=None)
def _decode_table(transfer: int) -> torch.Tensor:
    """float32 (65536,): each 16-bit code's light relative to SDR white (HLG: scene light, before the OOTF,
    which mixes the channels), computed in double."""
    v = torch.arange(65536, dtype=torch.float64) / 65535
    if transfer == PQ:
        return (_pq_nits(v) / SDR_WHITE).float()
    if transfer == HLG:
        return _hlg_scene(v).float()
    return v.pow(DISPLAY_GAMMA).float()


def to_sdr(rgb16: np.ndarray, transfer: int, primaries: int) -> np.ndarray:
    """(H, W, 3) uint16 R'G'B' of a frame tagged ``transfer`` / ``primaries`` -> (H, W, 3) uint8 SDR BT.709
    (module docstring), the primaries taken as BT.2020 where needs_conversion says so."""
    transfer = int(transfer)
    h, w, _ = rgb16.shape
    codes = torch.from_numpy(rgb16.reshape(-1, 3).T.astype(np.int64))          # (3, N), planar
    light = _decode_table(transfer)[codes]
    if transfer == HLG:                       # BT.2100's OOTF on a 1000 cd/m2 display, then relative to SDR white
        y = torch.mv(light.T, light.new_tensor(_LUMA_2020)).clamp_(min=1e-12)
        light.mul_(y.pow_(0.2).mul_(HLG_PEAK / SDR_WHITE))
    if needs_conversion(transfer, primaries):
        light = torch.mm(light.new_tensor(primaries_matrix()), light).clamp_(min=0)
    peak = light.amax(0).clamp_(min=1e-12)
    over_knee = (peak - KNEE).clamp_(min=0)
    mapped = over_knee / (over_knee + (1 - KNEE)) * (1 - KNEE) + KNEE
    light.mul_(torch.where(peak > KNEE, mapped / peak, 1.0))
    out = light.clamp_(0, 1).pow_(1 / DISPLAY_GAMMA).mul_(255).round_().to(torch.uint8)
    return out.T.reshape(h, w, 3).numpy()
