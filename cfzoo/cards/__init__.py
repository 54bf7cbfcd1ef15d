"""Hugging Face model cards from the registries (no torch): one per detector family
(:mod:`cfzoo.cards.model_cards`, with each family's own text from :mod:`cfzoo.families`) and one for the GAN
restorers (:mod:`cfzoo.cards.restorer_card`)."""
