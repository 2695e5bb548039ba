"""The embedded datasets: they ship with installed packages (scikit-learn's bundled tables and
images: ``wdbc``, ``digits-halves``, ``diabetes-views``) or are generated (``synthetic-pid``,
``synthetic-mvmt``), so they run with no data root and no network (docs/datasets.md).
``packaged`` names the bundled files for the data fingerprint.
"""
