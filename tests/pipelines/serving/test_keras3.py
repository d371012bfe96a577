"""A Keras 3 model (a process without tf.Transform's legacy-Keras switch) using the exported
transform through ``keras.layers.TFSMLayer(..., call_endpoint="transform_features")``."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = r"""
import base64, glob, json, os, sys
assert "TF_USE_LEGACY_KERAS" not in os.environ and "pipelines" not in sys.modules
import keras
import numpy as np
import tensorflow as tf

model_dir, parity_dir = sys.argv[1], sys.argv[2]
pairs = [json.loads(line) for path in sorted(glob.glob(parity_dir + "/pairs-*.jsonl")) for line in open(path)]
raw = np.array([base64.b64decode(p["raw"]) for p in pairs], dtype=object)
transform = keras.layers.TFSMLayer(model_dir, call_endpoint="transform_features")
examples = keras.Input(shape=(), dtype="string", name="examples")
features = transform(examples)  # the signature's one input, by position
score = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()(
    [keras.ops.expand_dims(keras.ops.cast(features[name], "float32"), -1) for name in ("fare_xf", "trip_miles_xf")]
))
model = keras.Model(examples, {"score": score, **features})
out = model.predict(tf.constant(list(raw)), verbose=0)
mismatches = 0
for row, pair in enumerate(pairs):
    expected = tf.train.Example.FromString(base64.b64decode(pair["transformed"])).features.feature
    for name, feature in expected.items():
        kind = feature.WhichOneof("kind")
        want = list(getattr(feature, kind).value) if kind else []
        got = np.ravel(out[name][row]).tolist()
        if kind == "bytes_list":
            got = [g if isinstance(g, bytes) else str(g).encode() for g in got]
        if kind == "float_list" and not np.allclose(got, want, rtol=1e-6, atol=1e-6):
            mismatches += 1
        elif kind != "float_list" and got != want:
            mismatches += 1
print(json.dumps({"keras": keras.__version__, "rows": len(pairs), "features": len(features),
                  "mismatches": mismatches, "finite_scores": bool(np.isfinite(out["score"]).all())}))
"""


def test_a_keras_3_model_uses_the_exported_transform_through_tfsmlayer(run_dir, tmp_path):
    out, _ = run_dir
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_USE_LEGACY_KERAS", "PYTHONPATH")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out / "serving_model"), str(out / "parity")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["keras"].startswith("3.")
    assert report["rows"] > 400 and report["features"] >= 17
    assert report["mismatches"] == 0 and report["finite_scores"]
