"""Bayar2016: a small CNN whose first layer is constrained to prediction-error filters."""

from __future__ import annotations

from cfzoo.families.base import CardText, NetworkFamily


class Bayar2016Family(NetworkFamily):
    name = "bayar2016"
    card = CardText(
        "a small CNN whose first layer is a bank of 5x5 filters constrained to be prediction-error (high-pass) filters",
        "B. Bayar and M. C. Stamm, A deep learning approach to universal image manipulation detection using a new "
        "convolutional layer, ACM IH&MMSec 2016",
    )
    # measured on resize1.5 (see docs/table1.md); the other families reach 100% without
    zoomed_train_photos = True
    widens = True
    schedule = {
        "steps": 1200,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "dihedral_augmentation": True,
        "pristine_noise": 0.0,
    }

    def network_class(self):
        from cfzoo.training.models import Bayar2016

        return Bayar2016

    def new_network(self, hyperparameters=None):
        if hyperparameters is None:
            return self.network_class()()
        return self.network_class()(
            residual_clip=hyperparameters.get("residual_clip"), width=hyperparameters.get("width", 1)
        )

    def initial_network(self, plan, train_set, rows, status):
        network = self.network_class()(width=plan.network_width)
        return network, network.describe()


BAYAR2016 = Bayar2016Family()
