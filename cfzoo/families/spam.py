"""SPAM+SVM: a linear SVM on the hand-crafted SPAM features of the high-pass residual (numpy, scikit-learn).

Exported as one ONNX graph (hard SPAM, then the skl2onnx SVM); its gradient companion differentiates the soft
(softmax-quantised) SPAM of Cozzolino2017 through the same linear decision, since hard quantisation has no
useful gradient.
"""

from __future__ import annotations

import numpy as np

from cfzoo.errors import CfzooError
from cfzoo.families.base import CardText, Family
from cfzoo.training.spam import SPAM_DIMENSION, SPAM_Q, SPAM_T
from cfzoo.zoo.registry import SVM_DECISION_SCORE


class SpamFamily(Family):
    name = "spam"
    card = CardText(
        "a linear SVM on hand-crafted SPAM features of the high-pass residual (feature extraction and SVM in one "
        "ONNX graph)",
        "J. Fridrich and J. Kodovsky, Rich models for steganalysis of digital images, IEEE TIFS 2012 (s3_spam14hv)",
        f"gray -> third-order residuals (horizontal, vertical) -> quantisation q = {SPAM_Q:g}, T = {SPAM_T} (5 bins) -> "
        f"4th-order co-occurrences -> SRM symmetrisation (s3_spam14hv, {SPAM_DIMENSION} values) -> standardisation -> "
        "linear SVM (two logits whose difference is the SVM decision)",
    )
    threshold = 0.0
    score = SVM_DECISION_SCORE
    graph_score = "logits[:,1] - logits[:,0] (the svm decision function)"
    companion_note = (
        " The SVM detector's hard quantisation has no useful gradient, so the companion differentiates the soft "
        "(softmax-quantised) SPAM of Cozzolino2017 through the same linear decision; its `logits` approximate the detector's."
    )

    def train(self, plan, train_set, rows, status, snapshots=None, history=None):  # seconds to train: nothing to resume
        from cfzoo.training.run import SVM_REGULARISATION, spam_features_of
        from cfzoo.training.svm import fit_linear_svm

        features = spam_features_of(train_set, rows, status)
        status("svm", 0, 1)
        svm = fit_linear_svm(features, train_set.labels[rows], SVM_REGULARISATION, plan.seed)
        status("svm", 1, 1)
        hyper = {"classifier": "LinearSVC (squared hinge, L2) on standardised features", "C": SVM_REGULARISATION}
        return svm, hyper, []

    def score_patches(self, detector, patch_set, rows, status):
        from cfzoo.training.run import spam_features_of

        return detector.decision_function(spam_features_of(patch_set, rows, status))

    def save(self, detector, path):
        from safetensors.numpy import save_file

        save_file(detector.arrays(), str(path))

    def load(self, path, record):
        from safetensors.numpy import load_file

        from cfzoo.training.svm import LinearSVM

        return LinearSVM.from_arrays(load_file(str(path)))

    def check(self, detector):
        from cfzoo.training.svm import LinearSVM

        if not isinstance(detector, LinearSVM):
            raise CfzooError(f"a spam detector is a LinearSVM, got {type(detector).__name__}")
        if np.shape(detector.coef) != (SPAM_DIMENSION,):
            raise CfzooError(f"the LinearSVM has {np.size(detector.coef)} weights; SPAM has {SPAM_DIMENSION} features")

    def export_graphs(self, detector):
        from cfzoo.export.onnx_export import BATCH, export_gradient, export_module
        from cfzoo.export.spam_svm import FEATURES, SpamFeatures, SpamSVM, merge_detector

        features = export_module(SpamFeatures(hard=True), output_name=FEATURES)
        return merge_detector(features, detector, BATCH), export_gradient(SpamSVM(detector, hard=False))

    def metadata(self, detector, kind):
        if kind == "gradient":
            return {
                "differentiated": "soft SPAM (softmax quantisation, Cozzolino2017 hard=False) through the linear SVM"
            }
        from cfzoo.export.spam_svm import spam_svm_metadata
        from cfzoo.zoo.runtime import SPAM_SVM

        return {SPAM_SVM: spam_svm_metadata(detector)}

    def decision_text(self, scores):
        return (
            "the SVM decision is `logits[:,1] - logits[:,0]`; a patch is called manipulated when "
            + " or ".join(f"`{score}`" for score in scores)
            + " (equivalently, softmax(logits)[:,1] > sigmoid(threshold))."
        )


SPAM = SpamFamily()
