"""One module per ``skewless`` command, each with ``NAME``, ``PASSES_BEAM_FLAGS``, ``add_parser`` and ``handle``."""

from pipelines.cli.commands import (
    check_skew,
    compare_poc,
    dedup,
    export_tfx,
    infer_schema,
    init,
    labels,
    lineage,
    report,
    run,
    serve,
    train,
    verify_parity,
)

# In the order ``skewless --help`` lists them.
COMMANDS = {
    module.NAME: module
    for module in (
        run,
        verify_parity,
        train,
        serve,
        compare_poc,
        infer_schema,
        init,
        check_skew,
        export_tfx,
        labels,
        dedup,
        lineage,
        report,
    )
}
