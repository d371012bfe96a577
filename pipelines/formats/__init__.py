"""Record formats: CSV records and blocks, TFRecord framing, decoding to Arrow, tf.Example encoding."""
