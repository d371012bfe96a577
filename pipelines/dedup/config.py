"""A dedup config (``skewless dedup --config``, or a dataset config's ``dedup:`` section): the id,
blocking rules, fields and their kinds, thresholds and policy."""

import dataclasses

import yaml

from pipelines.dedup import matching
from pipelines.errors import UsageError

__all__ = ["BANDS", "POLICIES", "DedupConfig", "config_from_dict", "load_dedup_config"]

POLICIES = ("flag", "keep-canonical")


BANDS = ("match", "review", "distinct")


# kind -> highest comparison level that still means "a different identifier": e-mails with neither the
# same address nor the same local part (even if similar), phones that are not within one digit.
IDENTIFIER_KINDS = {"email": 1, "phone": 0}


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    """A dedup config (the YAML file, or a dataset config's ``dedup:`` section).

    Attributes:
        id: The unique record id column.
        blocking: Rules; a candidate pair shares all (normalised, non-empty) fields of at least one.
        fields: Compared field -> comparison kind (``matching.KINDS``).
        match: Pairs with a match probability at or above this are matches (form clusters).
        review: Pairs from here up to ``match`` go to review; below it they are distinct.
        policy: ``flag`` (add cluster_id/is_canonical, remove nothing) or ``keep-canonical``.
        training_sample: Records sampled to fit the model.
        u_max_pairs: Random pairs splink samples to estimate u probabilities.
        max_block_size: Larger blocks are not compared (counted and reported): tighten the rule.
        max_invalid_fraction: Above this share of dead-lettered records the job fails.
        prior_guess: Starting prior for EM (probability that two random records match).
        identifier_conflict: ``review`` (default): a pair with an e-mail (or phone) present in both
            records and different (e-mails: neither the same address nor the same local part; phones:
            more than one digit apart), and no e-mail or phone that agrees exactly, is never a match,
            at most review, whatever its probability: two sign-ups with the same name and town but
            different e-mails may be two people, and a person should decide.
            ``score``: the model's probability alone decides.
        csv_delimiter: The CSV field delimiter; None: a tab for ``.tsv[.gz]`` files, else a comma.
        encoding: The CSV files' text encoding when not UTF-8 (``cp1252``, ``utf-16``, ...).
        missing_values: Cell texts read as empty, e.g. ``NA`` (an empty id is a dead letter; an
            empty field compares as missing).
    """

    id: str
    blocking: tuple[tuple[str, ...], ...]
    fields: dict
    match: float = 0.95
    review: float = 0.5
    policy: str = "flag"
    training_sample: int = 100_000
    u_max_pairs: float = 2e6
    max_block_size: int = 5000
    max_invalid_fraction: float = 0.01
    prior_guess: float = 1e-4
    identifier_conflict: str = "review"
    csv_delimiter: str | None = None
    encoding: str | None = None
    missing_values: tuple[str, ...] = ()

    def validate(self) -> None:
        """Raises UsageError on an inconsistent config."""
        if not self.blocking:
            raise UsageError("dedup config: `blocking` needs at least one rule")
        for field, kind in self.fields.items():
            if kind not in matching.KINDS:
                raise UsageError(f"dedup config: field {field!r} has kind {kind!r}; kinds: {', '.join(matching.KINDS)}")
        for rule in self.blocking:
            for field in rule:
                if field not in self.fields:
                    raise UsageError(f"dedup config: blocking field {field!r} is not under `fields`")
        if not 0.0 < self.review <= self.match <= 1.0:
            raise UsageError(
                f"dedup config: need 0 < review <= match <= 1, got review {self.review}, match {self.match}"
            )
        if self.identifier_conflict not in ("review", "score"):
            raise UsageError(
                f"dedup config: identifier_conflict must be review or score, got {self.identifier_conflict!r}"
            )
        if self.policy not in POLICIES:
            raise UsageError(f"dedup config: policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")


def config_from_dict(raw: dict) -> DedupConfig:
    """Builds a DedupConfig from parsed YAML (raises UsageError on missing or unknown keys)."""
    if not isinstance(raw, dict) or "id" not in raw or "blocking" not in raw or "fields" not in raw:
        raise UsageError("dedup config needs `id`, `blocking` and `fields`")
    thresholds = raw.get("thresholds") or {}
    known = {f.name for f in dataclasses.fields(DedupConfig)} | {"thresholds"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(f"dedup config: unknown key {unknown[0]!r}")
    blocking = tuple(tuple([rule] if isinstance(rule, str) else rule) for rule in raw["blocking"])
    extra = {
        k: raw[k]
        for k in (
            "training_sample",
            "u_max_pairs",
            "max_block_size",
            "max_invalid_fraction",
            "csv_delimiter",
            "encoding",
        )
        if k in raw
    }
    if "missing_values" in raw:
        tokens = raw["missing_values"] or []
        if not isinstance(tokens, list) or not all(isinstance(token, str) for token in tokens):
            raise UsageError('dedup config: missing_values must be a list of quoted cell texts, e.g. ["NA", "null"]')
        extra["missing_values"] = tuple(tokens)
    config = DedupConfig(
        id=str(raw["id"]),
        blocking=blocking,
        fields={str(k): str(v) for k, v in raw["fields"].items()},
        match=float(thresholds.get("match", 0.95)),
        review=float(thresholds.get("review", 0.5)),
        policy=str(raw.get("policy", "flag")),
        **extra,
    )
    config.validate()
    return config


def load_dedup_config(path: str) -> DedupConfig:
    """Reads a dedup YAML file."""
    try:
        from apache_beam.io.filesystem import BeamIOError

        from pipelines.io import files

        return config_from_dict(yaml.safe_load(files.read_text(path)))
    except (OSError, yaml.YAMLError, BeamIOError) as error:
        raise UsageError(f"cannot read dedup config {path}: {error}") from error
