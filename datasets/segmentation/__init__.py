"""The 3-D segmentation track's data: nnU-Net v2 folders, the official FLARE22 / AMOS22 / ATLAS23
layouts, preprocessing with a cache, and slice/patch serving (docs/segmentation.md).

``nnunet`` reads and checks nnU-Net v2 raw folders; ``sources`` knows the official layouts and
label maps; ``preprocess`` resamples, crops and caches; ``data`` is ``SegmentationData`` (splits
per patient, slices and patches); ``build`` registers ``synthetic-organs``, ``nnunet:PATH`` and
``m4oe-miccai24``; ``external`` registers ``flare22``, ``amos22``, ``atlas23``; ``convert`` writes
official layouts as nnU-Net folders; ``synthetic_organs`` generates the offline phantoms.
"""
