"""Reading a user's YAML file (suites, claims) with one-line errors that name the file: the helpers
of :mod:`datasets.config_files`, where the lowest reader of such files (a folder's dataset.yaml) lives."""
from datasets.config_files import check_keys, describe, field_error, load_yaml_file  # noqa: F401
