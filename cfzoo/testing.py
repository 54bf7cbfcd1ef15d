"""Public checks for detectors, in the spirit of scikit-learn's ``sklearn.utils.estimator_checks``:
``check_detector(model)`` runs the conformance checks of ``cfzoo check`` (see :mod:`cfzoo.zoo.conformance`) and
returns a :class:`~cfzoo.results.CheckReport`, whose ``passed`` says whether every check passed::

    >>> from cfzoo.testing import check_detector
    >>> check_detector("bayar2016-median7").passed
    True
"""

from cfzoo.zoo.conformance import check_detector

__all__ = ["check_detector"]
