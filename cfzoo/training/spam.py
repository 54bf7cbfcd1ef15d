"""The SPAM feature of the paper: SRM's ``s3_spam14hv`` (Fridrich & Kodovsky 2012), in numpy.

numpy only, no torch: the torch CNN that recasts this extraction as convolutions imports the constants
and :func:`symmetry_classes` from here, and its tests check it against :func:`spam_features`.

Definition (sealwatch's ``s3_spam14hv_q1``, see "Relation to sealwatch" below):

1. Gray ``X``: ``0.299 R + 0.587 G + 0.114 B`` (:data:`cfzoo.images.LUMA_WEIGHTS`), not rounded.
   RGB patches may be uint8 or float (0..255); float gray patches ``[N, H, W]`` are used as they are.
2. Third-order residuals, both on the interior ``X[2:H-2, 2:W-2]`` (shape ``[H-4, W-4]``), exactly
   SRM's ``R`` (rightward) and ``U`` (upward) residuals::

       horizontal[i, j] = sum_k RESIDUAL_TAPS[k] * X[i, j + RESIDUAL_OFFSETS[k]]
                        = X[i, j-1] - 3 X[i, j] + 3 X[i, j+1] - X[i, j+2]
       vertical[i, j]   = sum_k RESIDUAL_TAPS[k] * X[i + VERTICAL_RESIDUAL_OFFSETS[k], j]
                        = X[i+1, j] - 3 X[i, j] + 3 X[i-1, j] - X[i-2, j]

   The vertical filter is the horizontal one turned to point up (offsets negated), as in SRM, not the
   horizontal one transposed. The interior crop is SRM's too: both maps drop 2 rows and 2 columns on
   every side, although each filter would fit in a slightly larger region.
3. Quantisation: ``clip(round(residual / q), -T, T)`` with ``q = SPAM_Q = 3`` and ``T = SPAM_T = 2``
   (5 bins); ``round`` takes halves away from zero, like MATLAB's (and sealwatch's). Equivalently:
   the bin is the number of edges ``(k + 1/2) q`` (k = 0..T-1; 1.5 and 4.5) the residual reaches, with
   the sign of the residual.
4. Fourth-order co-occurrences: every run of 4 consecutive quantised samples ``(b0, b1, b2, b3)``
   along a row (left to right) or a column (top to bottom) gets the code
   ``d0 + 5 d1 + 25 d2 + 125 d3`` with ``d_k = b_k + T`` (0..4). Four histograms of the 625 codes:
   horizontal residual along rows (``hh``) and along columns (``hv``), vertical residual along rows
   (``vh``) and along columns (``vv``).
5. Normalisation: each of the four histograms is divided by its number of runs (along rows
   ``(H-4)(W-7)``, along columns ``(H-7)(W-4)``), so each sums to 1. As in SRM,
   ``spam14h = hh + vv`` (each residual along its own direction) and ``spam14v = vh + hv`` (the
   orthogonal combinations): each part sums to 2, the whole vector to 4. (The paper's "normalized to
   unit energy" is not what SRM does; an SVM pipeline may rescale the features.)
6. Symmetrisation: a run, its sign flip ``-b``, its reversal ``(b3, b2, b1, b0)`` and the reversed
   sign flip form one class; each part's 625 bins are summed into 169 classes (:func:`symmetry_classes`).
   Classes are numbered as SRM's ``symm4`` numbers them: the all-zero run is class 0, the others in
   order of first appearance as ``(b0, b1, b2, b3)`` runs through ``-T..T`` lexicographically
   (``b0`` slowest).

Feature order: ``[spam14h classes 0..168, spam14v classes 0..168]``, 338 values (:data:`SPAM_DIMENSION`).

Exact arithmetic: RGB is turned into gray in thousandths, ``299 R + 587 G + 114 B``, so for RGB holding
integers (uint8, or float after integer-epsilon FGSM) every residual is an exact integer in float64
(and in float32: at most 2.04e6 < 2**24) and is compared with the edges ``1000 (k + 1/2) q``, exact
for q = 3 (1500, 4500) and any q with few decimals. Bin ties, which the real-number definition meets
on about 5 residuals of a 128x128 photo patch (measured on scikit-image's photos), are thus settled
away from zero, exactly; ``0.299 R + ...`` in floating point would settle them by rounding noise.
:func:`gray` returns these thousandths divided by 1000.

Relation to sealwatch (``sealwatch.srm.extract(x, qs=[[], [], [1], [], []])["s3_spam14hv_q1"]``):
the same residuals, crop, quantisation (q = 1 * 3), co-occurrences, normalisation, symmetrisation and
order. sealwatch casts its gray input to integers (truncation) and sums in float32, so on an
integer-valued gray image the two agree to float32 precision; here gray is not rounded, as the
detector graphs take float RGB.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from cfzoo.images import LUMA_WEIGHTS


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


#: Quantisation step: SRM's q = c with c = 3, the central coefficient of the third-order filter. Measured
#: (linear SVM, 8000 train / 4000 test patches of ../shared/data/cameras, seed 0), test ACC for q = 1 / 2 / 3:
#: jpeg90 75.4 / 72.3 / 72.7, blur0.5 85.4 / 87.7 / 91.2, median3 95.5 / 96.7 / 96.5, jpeg70 96.5 / 95.6 / 95.2;
#: q = 3 has the best mean (88.9 against 88.2 and 88.1), and integer residuals never tie at its bin edges.
SPAM_Q = 3.0
#: Truncation threshold: quantised residuals take the values -T..T.
SPAM_T = 2
#: Number of quantisation bins, 2 T + 1.
SPAM_BINS = 2 * SPAM_T + 1
#: Length of a co-occurrence run (the "4" of spam14).
COOCCURRENCE_ORDER = 4
#: Number of distinct run codes, SPAM_BINS ** 4.
CODE_COUNT = SPAM_BINS**COOCCURRENCE_ORDER
#: Symmetry classes per part (spam14h, spam14v).
CLASS_COUNT = 169
#: Length of the feature vector: two parts of 169 classes.
SPAM_DIMENSION = 2 * CLASS_COUNT

#: Third-order residual filter taps, applied at RESIDUAL_OFFSETS (horizontal residual: column offsets)
#: or VERTICAL_RESIDUAL_OFFSETS (vertical residual: row offsets) relative to the output pixel.
RESIDUAL_TAPS = _read_only(np.array([1.0, -3.0, 3.0, -1.0]))
#: Column offsets of RESIDUAL_TAPS for the horizontal residual (SRM's rightward ``R``).
RESIDUAL_OFFSETS = _read_only(np.array([-1, 0, 1, 2]))
#: Row offsets of RESIDUAL_TAPS for the vertical residual (SRM's upward ``U``): RESIDUAL_OFFSETS negated.
VERTICAL_RESIDUAL_OFFSETS = _read_only(-RESIDUAL_OFFSETS)
#: Rows and columns dropped on every side: the residual maps cover X[2:H-2, 2:W-2].
RESIDUAL_BORDER = 2
#: Smallest patch side: the interior must hold at least one run of 4 residual samples.
MIN_PATCH_SIZE = 2 * RESIDUAL_BORDER + COOCCURRENCE_ORDER

# RGB to gray in thousandths: 299 R + 587 G + 114 B is exact for integer RGB (see the module docstring).
_LUMA_SCALE = 1000
_LUMA_WEIGHTS_IN_THOUSANDTHS = tuple(round(weight * _LUMA_SCALE) for weight in LUMA_WEIGHTS)

# Patches per chunk in spam_features: small float64 intermediates stay in cache (1000 patches of
# 128x128: 0.30 s in chunks of 16, 0.52 s in one piece, on 2 cores).
_CHUNK_PATCHES = 16


@functools.cache
def symmetry_classes() -> np.ndarray:
    """Class (0..168) of every run code ``d0 + 5 d1 + 25 d2 + 125 d3``, ``d_k`` = quantised value + T.

    Returns a read-only int64 array of shape [625], computed once. See the module docstring for the
    numbering.
    """
    classes = np.full(CODE_COUNT, -1, dtype=np.int64)
    weights = SPAM_BINS ** np.arange(COOCCURRENCE_ORDER)

    def code(run: tuple[int, ...]) -> int:
        return int(np.dot(np.asarray(run) + SPAM_T, weights))

    zero_run = (0,) * COOCCURRENCE_ORDER
    classes[code(zero_run)] = 0
    next_class = 1
    for run in itertools.product(range(-SPAM_T, SPAM_T + 1), repeat=COOCCURRENCE_ORDER):
        if classes[code(run)] >= 0:
            continue
        negated = tuple(-value for value in run)
        for member in (run, negated, run[::-1], negated[::-1]):
            classes[code(member)] = next_class
        next_class += 1
    assert next_class == CLASS_COUNT
    return _read_only(classes)


def _scaled_gray(patches: np.ndarray) -> tuple[np.ndarray, float]:
    """Validated float64 gray [N, H, W] times its scale: RGB in thousandths (exact for integer RGB), gray as is."""
    patches = np.asarray(patches)
    if patches.ndim == 4 and patches.shape[-1] == 3:
        if patches.dtype != np.uint8 and not np.issubdtype(patches.dtype, np.floating):
            raise ValueError(f"RGB patches must be uint8 or float (0..255), got dtype {patches.dtype}")
        red_weight, green_weight, blue_weight = _LUMA_WEIGHTS_IN_THOUSANDTHS
        scaled = (
            red_weight * patches[..., 0].astype(np.float64)
            + green_weight * patches[..., 1].astype(np.float64)
            + blue_weight * patches[..., 2].astype(np.float64)
        )
        scale = float(_LUMA_SCALE)
    elif patches.ndim == 3:
        if not np.issubdtype(patches.dtype, np.floating):
            raise ValueError(
                f"gray patches [N, H, W] must be float, got dtype {patches.dtype}; "
                "pass RGB as [N, H, W, 3] or convert gray with .astype(np.float64)"
            )
        scaled = patches.astype(np.float64, copy=False)
        scale = 1.0
    else:
        raise ValueError(f"patches must be RGB [N, H, W, 3] or gray [N, H, W], got shape {patches.shape}")
    height, width = scaled.shape[1:]
    if height < MIN_PATCH_SIZE or width < MIN_PATCH_SIZE:
        raise ValueError(f"patches must be at least {MIN_PATCH_SIZE}x{MIN_PATCH_SIZE} pixels, got {height}x{width}")
    if not np.isfinite(scaled).all():
        raise ValueError("patches contain NaN or infinite values")
    return scaled, scale


def gray(patches: np.ndarray) -> np.ndarray:
    """Float64 gray [N, H, W] of RGB [N, H, W, 3] (uint8 or float, 0..255) or float gray [N, H, W] patches.

    Raises ValueError for other shapes or dtypes, patches under 8x8, and NaN or infinite values.
    """
    scaled, scale = _scaled_gray(patches)
    return scaled / scale if scale != 1.0 else scaled


def _check_quantisation_step(q: float) -> None:
    if not q > 0:
        raise ValueError(f"the quantisation step q must be positive, got {q}")


def quantisation_thresholds(q: float = SPAM_Q) -> np.ndarray:
    """The T positive bin edges ``(k + 1/2) q``, k = 0..T-1: 1.5 and 4.5 for q = 3."""
    return (np.arange(SPAM_T) + 0.5) * q


def quantise(residual: np.ndarray, q: float = SPAM_Q) -> np.ndarray:
    """``clip(round(residual / q), -T, T)`` as int8, rounding halves away from zero (MATLAB's round).

    Computed as (edges reached at or above) - (negated edges reached at or below), which is the
    same thing and cheaper than dividing and rounding.
    """
    bins = np.zeros(residual.shape, dtype=np.int8)
    for edge in quantisation_thresholds(q):
        bins += residual >= edge
        bins -= residual <= -edge
    return bins


def residuals(gray_patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Third-order (horizontal, vertical) residuals of float64 gray [N, H, W], each [N, H-4, W-4] float64.

    No validation: pass the output of :func:`gray`. Linear, so it also takes gray in any scale.
    """
    height, width = gray_patches.shape[1:]
    border = RESIDUAL_BORDER
    rows = slice(border, height - border)
    columns = slice(border, width - border)

    def shifted_columns(offset: int) -> np.ndarray:
        return gray_patches[:, rows, border + offset : width - border + offset]

    def shifted_rows(offset: int) -> np.ndarray:
        return gray_patches[:, border + offset : height - border + offset, columns]

    # Taps [1, -3, 3, -1] at offsets [first, second, third, fourth] grouped as
    # (x[first] - x[fourth]) + 3 (x[third] - x[second]): 4 array operations instead of 7.
    first, second, third, fourth = RESIDUAL_OFFSETS
    horizontal = (shifted_columns(first) - shifted_columns(fourth)) + 3.0 * (
        shifted_columns(third) - shifted_columns(second)
    )
    first, second, third, fourth = VERTICAL_RESIDUAL_OFFSETS
    vertical = (shifted_rows(first) - shifted_rows(fourth)) + 3.0 * (shifted_rows(third) - shifted_rows(second))
    return horizontal, vertical


def quantised_residuals(patches: np.ndarray, q: float = SPAM_Q) -> tuple[np.ndarray, np.ndarray]:
    """Quantised (horizontal, vertical) residuals, int8 [N, H-4, W-4] in -T..T, of float gray [N, H, W] or RGB.

    These are the residuals :func:`spam_features` counts (RGB computed exactly, in thousandths).
    """
    _check_quantisation_step(q)
    scaled, scale = _scaled_gray(patches)
    return _quantised_residuals(scaled, scale, q)


def _quantised_residuals(scaled_gray: np.ndarray, scale: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    horizontal, vertical = residuals(scaled_gray)
    return quantise(horizontal, q * scale), quantise(vertical, q * scale)


def run_codes(quantised: np.ndarray, axis: int) -> np.ndarray:
    """Codes ``d0 + 5 d1 + 25 d2 + 125 d3`` of every run of 4 along ``axis`` (1: columns/down, 2: rows/right).

    ``quantised`` is [N, h, w] in -T..T; the result is int16, [N, h-3, w] or [N, h, w-3].
    """
    digits = quantised.astype(np.int16) + SPAM_T
    length = digits.shape[axis] - COOCCURRENCE_ORDER + 1

    def digit(position: int) -> np.ndarray:
        window = [slice(None)] * digits.ndim
        window[axis] = slice(position, position + length)
        return digits[tuple(window)]

    codes = digit(0).copy()
    for position in range(1, COOCCURRENCE_ORDER):
        codes += SPAM_BINS**position * digit(position)
    return codes


def code_histograms(codes: np.ndarray) -> np.ndarray:
    """Per-patch counts of each of the 625 codes: [N, ...] int -> [N, 625] float64, one bincount for the batch."""
    count = codes.shape[0]
    patch_offsets = (np.arange(count, dtype=np.int64) * CODE_COUNT).reshape((count,) + (1,) * (codes.ndim - 1))
    counts = np.bincount((codes + patch_offsets).ravel(), minlength=count * CODE_COUNT)
    return counts.reshape(count, CODE_COUNT).astype(np.float64)


@functools.cache
def _codes_by_class() -> tuple[np.ndarray, np.ndarray]:
    classes = symmetry_classes()
    codes_in_class_order = np.argsort(classes, kind="stable")
    class_starts = np.searchsorted(classes[codes_in_class_order], np.arange(CLASS_COUNT))
    return codes_in_class_order, class_starts


def symmetrise(code_histogram: np.ndarray) -> np.ndarray:
    """Sum code bins [N, 625] into their symmetry classes [N, 169] (exact for counts)."""
    # reduceat rather than a matrix product with a 625x169 membership matrix: exact sums, and no BLAS
    # call, which costs far more than this tiny product (measured: 23 ms a call on 2 cores).
    codes_in_class_order, class_starts = _codes_by_class()
    return np.add.reduceat(code_histogram[:, codes_in_class_order], class_starts, axis=1)


def _spam_features_of_scaled_gray(scaled_gray: np.ndarray, scale: float, q: float) -> np.ndarray:
    horizontal, vertical = _quantised_residuals(scaled_gray, scale, q)
    along_rows, along_columns = 2, 1
    hh = symmetrise(code_histograms(run_codes(horizontal, along_rows)))
    vv = symmetrise(code_histograms(run_codes(vertical, along_columns)))
    vh = symmetrise(code_histograms(run_codes(vertical, along_rows)))
    hv = symmetrise(code_histograms(run_codes(horizontal, along_columns)))
    # Symmetrising the counts before normalising (SRM does it after, which is the same up to rounding)
    # keeps the sums exact, so images that differ by a symmetry give bit-identical features.
    height, width = horizontal.shape[1:]
    runs_along_rows = height * (width - COOCCURRENCE_ORDER + 1)
    runs_along_columns = (height - COOCCURRENCE_ORDER + 1) * width
    spam14h = hh / runs_along_rows + vv / runs_along_columns
    spam14v = vh / runs_along_rows + hv / runs_along_columns
    return np.concatenate([spam14h, spam14v], axis=1)


def spam_features(patches: np.ndarray, q: float = SPAM_Q) -> np.ndarray:
    """SRM's s3_spam14hv of each patch: [N, H, W, 3] RGB or [N, H, W] float gray -> float64 [N, 338].

    Vectorised over the batch; see the module docstring for the definition, order and normalisation.
    """
    _check_quantisation_step(q)
    scaled, scale = _scaled_gray(patches)
    if len(scaled) == 0:
        return np.zeros((0, SPAM_DIMENSION))
    return np.concatenate(
        [
            _spam_features_of_scaled_gray(scaled[start : start + _CHUNK_PATCHES], scale, q)
            for start in range(0, len(scaled), _CHUNK_PATCHES)
        ]
    )
