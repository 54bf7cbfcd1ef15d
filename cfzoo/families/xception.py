"""Xception: a deep general-purpose CNN of depthwise-separable convolutions, trained from scratch."""

from __future__ import annotations

from cfzoo.families.base import CardText, NetworkFamily


class XceptionFamily(NetworkFamily):
    name = "xception"
    card = CardText(
        "a deep general-purpose CNN built from depthwise-separable convolutions, trained from scratch",
        "F. Chollet, Xception: Deep learning with depthwise separable convolutions, CVPR 2017",
    )
    embedded = False  # 83 MB per graph
    schedule = {
        "steps": 600,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "dihedral_augmentation": True,
        "pristine_noise": 2.0,
    }

    def network_class(self):
        from cfzoo.training.models import Xception

        return Xception

    def new_network(self, hyperparameters=None):
        if hyperparameters is None:
            return self.network_class()()
        # records from before the clip was a parameter used 8
        return self.network_class()(
            input_filter=hyperparameters.get("input_filter"), residual_clip=hyperparameters.get("residual_clip", 8.0)
        )


XCEPTION = XceptionFamily()
