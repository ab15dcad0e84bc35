"""Dataset loaders for the real benchmarks: CIFAR-100 super-classes, LFW, UTKFace and FER2013.

Modules (import them directly; this package imports nothing so that ``clbench --help`` stays cheap):

- :mod:`clbench.datasets.cache`: decode images once, keep them as memory-mapped uint8 arrays.
- :mod:`clbench.datasets.folders`: image-folder layouts (CIFAR-100 super-classes, FER2013) and the
  torchvision CIFAR-100 pickles.
- :mod:`clbench.datasets.faces`: LFW folders, pairs and gender labels; UTKFace file-name labels.
- :mod:`clbench.datasets.arrays`: torch datasets over uint8 arrays, per-task normalisation and a
  stratified validation split.
- :mod:`clbench.datasets.errors`: :class:`DataError`, raised for missing or unreadable data.
"""
