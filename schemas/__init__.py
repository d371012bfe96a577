"""Raw schemas and dataset configs: the single source of truth for feature names and types.

A dataset is a folder with a ``config.yaml`` naming its ``schema.pbtxt`` (a tensorflow_metadata
``Schema``), its ``preprocessing_fn``, sample and split key. The bundled ones (``taxi``,
``people``) live in ``schemas/<name>/`` and travel in the wheel; a user's dataset is anywhere,
named by its path (``--dataset path/to/schemas/mine`` or ``.../config.yaml``).
"""

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import yaml
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

__all__ = ["Dataset", "PROJECT_ROOT", "SCHEMAS_DIR", "dataset_names", "load_dataset", "load_schema"]

SCHEMAS_DIR = pathlib.Path(__file__).resolve().parent
PROJECT_ROOT = SCHEMAS_DIR.parent


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset known to Skewless.

    Attributes:
        name: The dataset's name: its folder's (``schemas/<name>/``).
        ref: How to find it again (``run.json`` records it): the name of a bundled dataset, or the
            absolute path of a user's ``config.yaml``.
        folder: The folder holding ``config.yaml``; relative paths in the config start here.
        schema: The raw tensorflow_metadata Schema.
        preprocessing_fn_path: ``package.module:function`` or ``path/to/module.py:function`` (relative
            to ``folder``) of the dataset's ``preprocessing_fn``.
        sample: Path of the dataset's sample, or None.
        split_key: Raw columns hashed for the train/eval split; empty means the whole record.
        label: The transformed feature a model learns to predict, or None.
        config: The parsed config.yaml, for stages that read their own sections.
    """

    name: str
    ref: str
    folder: pathlib.Path
    schema: schema_pb2.Schema
    preprocessing_fn_path: str
    sample: pathlib.Path | None
    split_key: tuple[str, ...]
    label: str | None
    config: dict[str, Any]

    @property
    def feature_names(self) -> list[str]:
        """Raw feature names in schema order."""
        return [f.name for f in self.schema.feature]

    def feature_spec(self) -> dict[str, Any]:
        """The tf.io feature spec derived from the schema (FixedLen for required, VarLen else)."""
        from tensorflow_transform.tf_metadata import schema_utils

        return schema_utils.schema_as_feature_spec(self.schema).feature_spec

    @property
    def tf_compat_v1(self) -> bool:
        """Whether tf.Transform traces the ``preprocessing_fn`` into a TF1 graph (config ``tf_compat_v1``,
        default true) rather than a ``tf.function``.

        Both give the same vocabularies and transformed values (on the taxi sample, float32 z-scores
        differed by rounding, at most 4e-6, for 40% of rows; every other value was equal) and the same
        kind of serving model (a TF2 SavedModel either way, checked for parity with the pipeline);
        the TF1 graph is traced and saved in 1.5-2 s less per run. A ``preprocessing_fn`` that needs
        ``tf.function`` semantics sets ``tf_compat_v1: false``.
        """
        return self.config.get("tf_compat_v1", True)

    @property
    def missing_values(self) -> tuple[str, ...]:
        """Cell texts that mean a missing value in the dataset's CSV files (config ``missing_values``,
        default ``[""]``: the empty cell, which always means missing)."""
        return tuple(str(token) for token in self.config.get("missing_values") or ())

    @property
    def metadata_columns(self) -> tuple[str, ...]:
        """Raw columns carried into the transformed examples as they are (config ``metadata_columns``)."""
        return tuple(self.config.get("metadata_columns") or ())

    @property
    def not_model_inputs(self) -> tuple[str, ...]:
        """Transformed features that are provenance, not model inputs: ``row_id`` and metadata columns."""
        return ("row_id", *self.metadata_columns)

    @property
    def schema_path(self) -> pathlib.Path:
        """The ``schema.pbtxt`` file."""
        return self.folder / self.config["schema"]

    def preprocessing_module(self):
        """The module that holds the ``preprocessing_fn``: imported by name, or loaded from its file."""
        module, _, _ = self.preprocessing_fn_path.rpartition(":")
        if module.endswith(".py"):
            return load_module_file(self.folder / module)
        return importlib.import_module(module)

    def user_preprocessing_fn(self) -> Callable[[dict], dict]:
        """Imports and returns the dataset's module-level ``preprocessing_fn`` as written."""
        _, _, attr = self.preprocessing_fn_path.rpartition(":")
        module = self.preprocessing_module()
        function = getattr(module, attr, None)
        if not callable(function):
            raise ValueError(f"{self.preprocessing_fn_path}: {module.__name__} has no function {attr!r}")
        return function

    def preprocessing_fn(self) -> Callable[[dict], dict]:
        """The ``preprocessing_fn`` the pipeline runs: the dataset's, plus ``row_id`` and the metadata
        columns (``transforms.common.with_provenance``)."""
        from transforms.common import with_provenance

        return functools.partial(
            with_provenance, preprocessing_fn=self.user_preprocessing_fn(), metadata_columns=self.metadata_columns
        )


def load_schema(path: str | pathlib.Path) -> schema_pb2.Schema:
    """Reads a text-format tensorflow_metadata Schema.

    Args:
        path: Path of a ``schema.pbtxt``.

    Returns:
        The parsed Schema.
    """
    return text_format.Parse(pathlib.Path(path).read_text(), schema_pb2.Schema())


def load_module_file(path: str | pathlib.Path):
    """Loads a Python file as a module under a name of its own (as TFX loads a ``module_file``).

    The name is derived from the file's absolute path, so a user's ``transforms/mine.py`` never
    collides with Skewless's ``transforms`` package, and loading the same file twice gives the same
    module.

    Args:
        path: The ``.py`` file.

    Returns:
        The module, registered in ``sys.modules``.

    Raises:
        ValueError: If the file does not exist or cannot be loaded.
    """
    path = pathlib.Path(path).resolve()
    name = f"skewless_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise ValueError(f"no module file {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise ValueError(f"{path} cannot be loaded: {type(error).__name__}: {error}") from error
    return module


def dataset_names() -> list[str]:
    """Names of the bundled datasets (a config under ``schemas/``)."""
    return sorted(p.parent.name for p in SCHEMAS_DIR.glob("*/config.yaml"))


def _config_path(name_or_path: str) -> tuple[pathlib.Path, bool]:
    """The ``config.yaml`` a ``--dataset`` value names, and whether it is a bundled dataset's."""
    bundled = SCHEMAS_DIR / name_or_path / "config.yaml"
    if "/" not in name_or_path and "\\" not in name_or_path and bundled.is_file():
        return bundled, True
    path = pathlib.Path(name_or_path).expanduser()
    if path.is_dir():
        path = path / "config.yaml"
    if path.is_file():
        return path.resolve(), False
    raise ValueError(
        f"unknown dataset {name_or_path!r}: neither a bundled dataset ({', '.join(dataset_names())}) "
        "nor a folder holding config.yaml (or the config file itself)"
    )


def load_dataset(name: str) -> Dataset:
    """Loads a dataset's schema and config.

    Args:
        name: A bundled dataset's name (see :func:`dataset_names`), or the path of a folder holding
            a ``config.yaml`` (or of the config file itself).

    Returns:
        The Dataset.

    Raises:
        ValueError: If no such dataset exists or its config is incomplete.
    """
    config_path, bundled = _config_path(name)
    folder = config_path.parent
    try:
        config = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{config_path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} must be a mapping of keys to values")
    for key in ("schema", "preprocessing_fn"):
        if key not in config:
            raise ValueError(f"{config_path} lacks the key {key!r}")
    if ":" not in str(config["preprocessing_fn"]):
        raise ValueError(f"{config_path}: preprocessing_fn must be 'module:function' or 'path/to/file.py:function'")
    schema_path = folder / config["schema"]
    if not schema_path.is_file():
        raise ValueError(f"{config_path}: no schema file {schema_path}")
    schema = load_schema(schema_path)
    split_key = tuple(config.get("split_key") or ())
    unknown = set(split_key) - {f.name for f in schema.feature}
    if unknown:
        raise ValueError(f"{config_path}: split_key names unknown features {sorted(unknown)}")
    unknown = set(config.get("metadata_columns") or ()) - {f.name for f in schema.feature}
    if unknown:
        raise ValueError(f"{config_path}: metadata_columns names unknown features {sorted(unknown)}")
    if not isinstance(config.get("tf_compat_v1", True), bool):
        raise ValueError(f"{config_path}: tf_compat_v1 must be true or false")
    tokens = config.get("missing_values", [""])
    if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
        raise ValueError(
            f'{config_path}: missing_values must be a list of quoted cell texts, e.g. ["", "NA", "null"] '
            "(YAML reads a bare null or NaN as no text)"
        )
    sample = config.get("sample")
    return Dataset(
        name=folder.name,
        ref=folder.name if bundled else str(config_path),
        folder=folder,
        schema=schema,
        preprocessing_fn_path=str(config["preprocessing_fn"]),
        sample=(folder / sample).resolve() if sample else None,
        split_key=split_key,
        label=config.get("label"),
        config=config,
    )
