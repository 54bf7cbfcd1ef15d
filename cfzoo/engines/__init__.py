"""Where work runs: in this process (``local``) or on a Ray cluster (``ray``, the ``scale`` extra)."""
