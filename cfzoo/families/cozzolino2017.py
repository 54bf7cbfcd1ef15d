"""Cozzolino2017: SPAM computed by a shallow CNN (softmax quantisation), its classifier initialised from the
linear SVM on hard SPAM, then the whole network fine-tuned."""

from __future__ import annotations

from cfzoo.families.base import CardText, NetworkFamily


class Cozzolino2017Family(NetworkFamily):
    name = "cozzolino2017"
    card = CardText(
        "a shallow CNN that computes the SPAM features (with softmax instead of hard quantisation), its fully "
        "connected layer initialised from the linear SVM and the whole network fine-tuned",
        "D. Cozzolino, G. Poggi and L. Verdoliva, Recasting residual-based local descriptors as convolutional neural "
        "networks: an application to image forgery detection, ACM IH&MMSec 2017",
    )
    schedule = {
        "steps": 300,
        "batch_size": 32,
        "learning_rate": 3e-4,
        "dihedral_augmentation": False,
        "pristine_noise": 0.0,
    }

    def network_class(self):
        from cfzoo.training.cozzolino import Cozzolino2017

        return Cozzolino2017

    def new_network(self, hyperparameters=None):
        return self.network_class()()

    def initial_network(self, plan, train_set, rows, status):
        from cfzoo.training.run import SVM_REGULARISATION, spam_features_of
        from cfzoo.training.svm import fit_linear_svm

        features = spam_features_of(train_set, rows, status)
        svm = fit_linear_svm(features, train_set.labels[rows], SVM_REGULARISATION, plan.seed)
        model = self.network_class().from_linear_svm(svm)
        return model, {"initialisation": "fully connected layer from the linear SVM on hard SPAM", **model.describe()}


COZZOLINO2017 = Cozzolino2017Family()
