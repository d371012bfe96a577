"""Process and Beam set-up: loading TensorFlow, pipeline options, local workers, background threads, Beam patches."""
