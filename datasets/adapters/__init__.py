"""Adapters for the I2MoE (ICML 2025) benchmarks, whose data cannot ship.

One module per benchmark (``adni``, ``mimic_iv``, ``mmimdb``, ``cmu_mosi``, ``enrico``). Each
reads the processed/released layout the paper used from the data root (``--data-root`` or
``BENCH_DATA_ROOT``), says in its docstring which files it expects and where to get them, and
stops with one line naming the missing files when they are absent. Scalers are fitted on the
training split only (``datasets.prepare.build_data``), also where the paper's preprocessing fitted
them on all subjects; each module says where it departs from the paper. docs/adapters.md has
the layouts in one place.
"""
