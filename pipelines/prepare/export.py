"""Exporting the transform graph for serving: raw serialized tf.Examples in, transformed features out.

The SavedModel holds the tf.Transform layer (with its vocabulary assets copied in), so it works
after the run's ``transform_fn/`` is gone. Its raw schema travels with it in
``assets.extra/schema.pbtxt`` (the TF Serving place for extra files), so JSON requests can be
decoded exactly as training data was.
"""

import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_transform.saved import saved_transform_io_v2

from pipelines.io import files

__all__ = ["CLASS_NAMES_FILE", "EXAMPLES", "SCHEMA_FILE", "SIGNATURE", "export_serving_model", "raw_schema_of"]

SIGNATURE = "transform_features"
SCHEMA_FILE = "assets.extra/schema.pbtxt"
CLASS_NAMES_FILE = "assets.extra/class_names.json"  # a trained classifier's class names, by class id
EXAMPLES = tf.TensorSpec([None], tf.string, name="examples")


class _TransformModule(tf.Module):
    """Parses raw tf.Examples and applies the transform graph.

    The graph is applied by the loader ``tft_output.transform_features_layer()`` wraps, without the
    layer: the layer is a Keras model, and saving one traces and serialises Keras' own functions too
    (half of the export's time). The loader's objects (the imported graph, its vocabulary assets) are
    tracked as the layer tracks them, so they are saved with the module.
    """

    def __init__(self, tft_output: tft.TFTransformOutput):
        super().__init__()
        self._raw_feature_spec = tft_output.raw_feature_spec()
        self._loader = saved_transform_io_v2.SavedModelLoader(tft_output.transform_savedmodel_dir)
        self.transform_graph = self._loader.__dict__  # tracked, as in TFT's TransformFeaturesLayer

    def transform_features(self, examples):
        """Serialized raw tf.Examples (label present or not) -> transformed feature tensors."""
        parsed = tf.io.parse_example(examples, self._raw_feature_spec)
        return self._loader.apply_transform_model(parsed)


def export_serving_model(transform_output_dir: str, export_dir: str) -> None:
    """Writes the serving SavedModel.

    Args:
        transform_output_dir: A directory ``tft.TFTransformOutput`` loads (transform_fn/, metadata/).
        export_dir: Where to write the SavedModel; its signatures ``transform_features`` and
            ``serving_default`` are the same function.
    """
    tft_output = tft.TFTransformOutput(transform_output_dir)
    module = _TransformModule(tft_output)
    # traced once, here: a tf.function kept on the module would be traced again by the save
    # (half of the export's time)
    function = tf.function(module.transform_features, input_signature=[EXAMPLES], autograph=False)
    signature = function.get_concrete_function()
    tf.saved_model.save(module, export_dir, signatures={SIGNATURE: signature, "serving_default": signature})
    schema = tft_output.raw_metadata.schema
    files.write_text(files.join(export_dir, SCHEMA_FILE), text_format.MessageToString(schema))


def raw_schema_of(model_dir: str):
    """The raw schema saved beside a serving model (``assets.extra/schema.pbtxt``)."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(files.read_text(files.join(model_dir, SCHEMA_FILE)), schema_pb2.Schema())
