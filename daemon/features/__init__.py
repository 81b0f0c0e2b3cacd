"""Incremental microstructure features (pure; O(1) / O(top_k) per event; bounded memory).

:class:`FeatureState` is the per-symbol entry point; see :mod:`daemon.features.state` for the
definitions and units of every feature.
"""

from daemon.features.state import DIRECTIONAL_FEATURES, FEATURE_NAMES, FeatureParams, FeatureState

__all__ = ["FeatureState", "FeatureParams", "FEATURE_NAMES", "DIRECTIONAL_FEATURES"]
