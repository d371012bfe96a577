"""Fitting the duplicate-detection model with splink on DuckDB, and reading/writing ``model.json``.

The model is Fellegi-Sunter: per field and comparison level an m probability (share of true
duplicates at that level) and a u probability (share of non-duplicates at that level), plus the prior
probability that two random records match. splink estimates them without labels on a sample of the
normalised records: u by random sampling of pairs, m (and the prior) by expectation maximisation on
the pairs of each blocking rule. The parameters are then plain numbers in ``model.json``, which
``pipelines.dedup.matching`` applies to every candidate pair on Beam.
"""

import logging
import math

from pipelines.dedup import matching

__all__ = ["MODEL_VERSION", "fit_model", "load_model", "check_model"]

MODEL_VERSION = 1


def _levels_from_splink(comparison: dict, kind: str) -> list[dict]:
    labels = [label for label, _, _ in matching.LEVELS[kind]]
    trained = [level for level in comparison["comparison_levels"] if not level.get("is_null_level")]
    levels = []
    for position, level in enumerate(trained):
        gamma = len(trained) - 1 - position
        label = labels[position] if position < len(labels) else "else"
        levels.append(
            {"label": label, "gamma": gamma, "m": level.get("m_probability"), "u": level.get("u_probability")}
        )
    return levels


def fit_model(records: list[dict], config) -> dict:
    """Estimates the model on ``records`` (dicts of id and normalised field values) with splink.

    Args:
        records: A sample of normalised records (``None`` = missing).
        config: The ``DedupConfig``.

    Returns:
        The model as stored in ``model.json``.
    """
    import pandas as pd
    import splink
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI
    from splink.internals.exceptions import EMTrainingException

    logging.getLogger("splink").setLevel(logging.ERROR)
    if len(records) < 2:
        return _untrained_model(config, len(records), "fewer than 2 records: nothing to compare")
    columns = ["__id", *config.fields]
    frame = pd.DataFrame.from_records(records, columns=columns).astype({c: "string" for c in columns})
    rules = [block_on(*rule) for rule in config.blocking]
    settings = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="__id",
        blocking_rules_to_generate_predictions=rules,
        comparisons=[
            matching.splink_comparison(field, kind, kind in matching.TF_KINDS) for field, kind in config.fields.items()
        ],
        probability_two_random_records_match=config.prior_guess,
    )
    db_api = DuckDBAPI()
    table = db_api.register(frame)
    linker = Linker(table, settings, log_level="ERROR")
    pairs = len(frame) * (len(frame) - 1) / 2
    linker.training.estimate_u_using_random_sampling(max_pairs=min(config.u_max_pairs, max(pairs, 1)), seed=42)
    skipped, no_pairs = [], 0
    for rule, fields in zip(rules, config.blocking, strict=True):
        before = linker.misc.save_model_to_json()
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule, record_sample_proportion=1.0)
        except (ValueError, EMTrainingException) as error:
            # splink 5.0 rejects an m that underflows to 0 (a level no match shows, on small or clean
            # samples) and leaves the linker half-updated, and a rule with no pairs in the sample
            # cannot be trained: carry on from the parameters before it.
            skipped.append(f"EM on blocking rule {list(fields)} skipped: {str(error).splitlines()[0][:200]}")
            logging.getLogger(__name__).warning(skipped[-1])
            linker = Linker(table, before, log_level="ERROR")
            no_pairs += isinstance(error, EMTrainingException)
    if no_pairs == len(rules) and len(frame) < config.training_sample:
        # the sample is the whole input and no rule pairs any two records: there is nothing to score
        return _untrained_model(config, len(frame), "no blocking rule gives a candidate pair: nothing to compare")
    if len(skipped) == len(rules):
        raise ValueError(
            f"cannot fit the dedup model: EM failed on every blocking rule of the {len(frame)}-record sample "
            f"(first: {skipped[0]}); pass --model with a model.json fitted on more data"
        )
    prior = _estimate_prior(linker, len(frame))
    settings_out = linker.misc.save_model_to_json()
    by_column = {c["output_column_name"]: c for c in settings_out["comparisons"]}
    return {
        "version": MODEL_VERSION,
        "probability_two_random_records_match": prior,
        "prior_match_weight": math.log2(prior / (1 - prior)),
        "fields": {
            field: {
                "kind": kind,
                "tf": kind in matching.TF_KINDS,
                "levels": _levels_from_splink(by_column[field], kind),
            }
            for field, kind in config.fields.items()
        },
        "trained_on_records": len(frame),
        "training_notes": skipped,
        "estimated_with": f"splink {splink.__version__} (DuckDB): u by random sampling, m and prior by EM",
    }


def _untrained_model(config, records: int, why: str) -> dict:
    """A model that scores nothing as a match (every Bayes factor 1, prior tiny), with the reason."""
    return {
        "version": MODEL_VERSION,
        "probability_two_random_records_match": 1e-12,
        "prior_match_weight": math.log2(1e-12 / (1 - 1e-12)),
        "fields": {
            field: {
                "kind": kind,
                "tf": kind in matching.TF_KINDS,
                "levels": [
                    {"label": label, "gamma": len(matching.LEVELS[kind]) - i, "m": None, "u": None}
                    for i, (label, _, _) in enumerate(matching.LEVELS[kind])
                ]
                + [{"label": "else", "gamma": 0, "m": None, "u": None}],
            }
            for field, kind in config.fields.items()
        },
        "trained_on_records": records,
        "training_notes": [f"not trained: {why}"],
        "estimated_with": "nothing (untrained)",
    }


def _estimate_prior(linker, n_records: int, iterations: int = 200) -> float:
    """The probability that two random records match, by EM over the blocked pairs with m and u fixed.

    splink's EM sessions each see the pairs of one blocking rule, whose match rate says little about
    all pairs. Here every candidate pair of the sample (all rules, each pair once) gets its Bayes factor
    from the fitted m and u; the match rate among candidates is the fixed point of
    ``rate = mean(rate * BF / (rate * BF + 1 - rate))``, and dividing the expected number of matches by
    all ``n (n - 1) / 2`` pairs assumes, as blocking must, that few matches fall outside the blocks.
    """
    import numpy as np

    starting = linker._settings_obj._probability_two_random_records_match
    frame = linker.inference.predict().as_pandas_dataframe()
    total_pairs = n_records * (n_records - 1) / 2
    if frame.empty or total_pairs <= 0:
        return starting
    log_bayes = frame["match_weight"].to_numpy(dtype=np.float64) - math.log2(starting / (1 - starting))
    bayes = np.exp2(np.clip(log_bayes, -200, 200))
    rate = 0.5
    for _ in range(iterations):
        posterior = rate * bayes / (rate * bayes + 1 - rate)
        new_rate = float(posterior.mean())
        if abs(new_rate - rate) < 1e-10:
            break
        rate = new_rate
    expected_matches = rate * len(frame)
    return float(min(max(expected_matches / total_pairs, 1e-12), 0.5))


def check_model(model: dict, config) -> None:
    """Raises ValueError unless ``model`` was fitted for ``config``'s fields and kinds."""
    if model.get("version") != MODEL_VERSION:
        raise ValueError(f"model version {model.get('version')!r} is not {MODEL_VERSION}")
    fields = {field: spec["kind"] for field, spec in model.get("fields", {}).items()}
    if fields != dict(config.fields):
        raise ValueError(f"the model compares {fields}, the config {dict(config.fields)}")


def load_model(path: str) -> dict:
    """Reads a ``model.json``."""
    from pipelines.io import files

    return files.read_json(path)
