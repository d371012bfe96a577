"""Skewless: replicable ML data preparation on Apache Beam + TensorFlow Transform.

Also the file Dataflow stages with ``--setup_file ./setup.py``: workers install this package, so
the transforms and schemas they import are the ones the job was launched with.
"""

from setuptools import find_packages, setup

setup(
    name="skewless",
    version="0.1.0",
    description="Replicable ML data preparation on Apache Beam + TensorFlow Transform",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*", "schemas", "schemas.*"]),
    package_data={"schemas": ["*/*.pbtxt", "*/*.yaml", "*/*.csv"]},  # the bundled datasets, samples included
    include_package_data=True,
    install_requires=[
        # The pinned stack (see README "Dependencies"): these four versions are tested together.
        "tensorflow-transform==1.21.0",
        "tensorflow==2.21.0",
        "tfx-bsl==1.21.0",
        "apache-beam[gcp]==2.77.0",
        "tensorflow-metadata==1.21.0",
        "pyarrow>=10",
        "numpy>=1.26",
        "pyyaml>=6",
        "openlineage-python>=1.40",
        "splink>=5,<6",
        "rapidfuzz>=3.6",
        "scipy>=1.10",
        "isal>=1.6",
        "aiohttp>=3.9",
        "orjson>=3.9",
        "grpcio>=1.60",
        "tensorflow-serving-api>=2.19,<3",
        "google-crc32c>=1.5",
    ],
    extras_require={
        "test": ["pytest>=8", "ruff==0.17.6", "build>=1", "palmerpenguins>=0.1.6"],
        # baselines of benchmarks/dedup_benchmark.py only: recordlinkage brings scikit-learn, and Keras
        # (loaded by every `import tensorflow`) imports scikit-learn when it is installed: +1.3 s a start
        "baselines": ["recordlinkage>=0.16"],
    },
    entry_points={"console_scripts": ["skewless=pipelines.cli:console_main"]},
)
