"""Process settings for the commands that load TensorFlow: quiet libraries, a tuned garbage
collector, TensorFlow loaded with its native notices hidden, and the GIL's switch interval."""

import contextlib
import gc
import logging
import os
import sys

from pipelines.runtime import lazy_imports


def quiet_libraries() -> None:
    """Keeps TensorFlow's and Beam's start-up chatter off stderr (warnings and errors still show)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # (Keras: see pipelines/__init__.py)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    if not os.environ.get("SKEWLESS_DEBUG"):  # a failing step is reported in one line by main()
        logging.getLogger("apache_beam.runners").setLevel(logging.CRITICAL)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").addFilter(_not_the_tf_compat_v1_notice)


def _not_the_tf_compat_v1_notice(record: logging.LogRecord) -> bool:
    """Drops tf.Transform's notice that it traces in TF1 mode: the dataset config asks for it
    (``tf_compat_v1``, documented in the README), and the notice came twice a run."""
    return not str(record.msg).startswith("Tensorflow Transform is running in tf.compat.v1 mode")


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hides what native code prints while TensorFlow loads (CUDA and oneDNN notices that no
    environment variable turns off); Python exceptions still surface once it is restored."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow():
    """Imports TensorFlow with its native start-up notices hidden, with the garbage collector
    tuned first and the modules it never needs deferred (``pipelines.runtime.lazy_imports``), and sets the
    GIL's switch interval for the pipeline that follows."""
    tune_garbage_collector()  # before the imports: TensorFlow's alone ran 826 collections, 0.5 s
    with _native_stderr_silenced(), lazy_imports.deferred():
        import tensorflow as tf
        import tensorflow_transform  # noqa: F401 - its native notices hidden too

        tf.config.list_physical_devices("GPU")  # probes CUDA now, while its notices are hidden
    gc.freeze()  # what the imports made is long-lived: never scanned again
    sys.setswitchinterval(SWITCH_INTERVAL_S)


GC_THRESHOLDS = (50_000, 20, 10)
# How long a thread holds the GIL while another waits for it (Python's default: 5 ms). The
# background threads (decoding, statistics, encoding: pipelines/runtime/overlap.py) release the GIL around
# every Arrow, numpy and sketch call, and each time they wait up to the interval to get it back from
# the stage's thread: five statistics batches took 6.3 s beside a busy thread at 5 ms, 1.1 s at
# 0.5 ms (the busy thread's own rate unchanged). A 2M-row run: median 20.8 -> 20.1 s.


SWITCH_INTERVAL_S = 0.0005


def tune_garbage_collector() -> None:
    """Fewer, cheaper cyclic-garbage collections for the commands that load TensorFlow, and for
    ``skewless dedup``, whose records travel as Python dicts.

    Importing TensorFlow, tracing graphs and building a Beam pipeline allocate millions of
    long-lived objects, which Python's default thresholds scan again and again; these are set
    before the imports (whose objects ``load_tensorflow`` then freezes). Data moves in Arrow
    batches, a few Python objects per thousands of rows, so memory is not affected.
    """
    gc.set_threshold(*GC_THRESHOLDS)
