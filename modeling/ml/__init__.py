"""Plain PyTorch/numpy modeling of grade distributions; imports nothing from Django.

- :mod:`~modeling.ml.losses`: CE, MSE, JSD, EMD (the paper's eqs. 2-6).
- :mod:`~modeling.ml.metrics`: EMD, MSE, JSD, CE, HI, macro HI, grade-mode accuracy and
  macro F1, Top25/50/75 HI, overall and per grade-mode class.
- :mod:`~modeling.ml.backbones`, :mod:`~modeling.ml.model`: ResNet, R(2+1)D, SlowFast and
  TimeSformer backbones with ``small`` and ``paper`` presets; ``build_model``.
- :mod:`~modeling.ml.data`: an exported dataset version as a torch Dataset, augmentation,
  fair sampling, fold splits.
- :mod:`~modeling.ml.train`: ``train_fold``, ``cross_validate``, ``predict``, checkpoints.
"""
