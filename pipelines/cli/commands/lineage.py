"""``skewless lineage``: where artifacts came from and what each input fed."""

import argparse

from pipelines.cli import arguments
from pipelines.runtime import process

NAME = "lineage"
PASSES_BEAM_FLAGS = False  # flags it does not know are Beam pipeline options


def add_parser(commands) -> None:
    """Adds the command's parser to ``commands`` (argparse sub-parsers)."""
    parser = commands.add_parser(
        "lineage",
        help="where artifacts came from and what each input fed",
        description="Queries the lineage store that run, labels and train record into.",
        epilog="examples:\n  skewless lineage downstream schemas/taxi/data.csv"
        "\n  skewless lineage upstream out/demo/serving_model"
        "\n  skewless lineage runs\n  skewless lineage show 3f2a\n  skewless lineage stale --json"
        "\n  skewless lineage sources --register data/sources.yaml"
        "\n  skewless lineage row 1234567890123 --run out/demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    queries = parser.add_subparsers(dest="query", metavar="QUERY", required=True)
    for name, text in [
        ("upstream", "what ARTIFACT was built from, transitively"),
        ("downstream", "what was built from ARTIFACT, transitively"),
    ]:
        query = queries.add_parser(name, help=text, description=f"Lists {text}. ARTIFACT: a path, hash prefix or id.")
        query.add_argument("artifact", metavar="ARTIFACT")
    queries.add_parser("runs", help="recorded executions, newest first").add_argument("--limit", type=int, default=50)
    queries.add_parser("show", help="one execution with its inputs and outputs").add_argument("run", metavar="RUN")
    queries.add_parser("stale", help="artifacts whose recorded inputs have changed on disk since")
    row = queries.add_parser(
        "row",
        help="the raw record(s) of a transformed example's row_id (CSV, Parquet, TFRecord inputs)",
        description="Re-reads the run's recorded CSV inputs and prints the lines whose row_id (computed by the "
        "run's own serving graph) is ROW_ID: source, byte offset, line number and the raw line.",
    )
    row.add_argument("row_id", metavar="ROW_ID", type=int, nargs="+")
    row.add_argument("--run", required=True, metavar="DIR", help="the `skewless run` output the example came from")
    sources = queries.add_parser("sources", help="the data inventory (sources.yaml)")
    sources.add_argument("--register", metavar="YAML", help="register or update the sources of this file first")
    for query in queries.choices.values():
        query.add_argument("--json", action="store_true", help="machine-readable output")
        query.add_argument("--lineage-db", metavar="FILE", help=arguments.LINEAGE_DB_HELP)


def handle(args: argparse.Namespace, beam_args: list[str]) -> int:
    import json

    import yaml

    from pipelines.errors import UsageError
    from pipelines.lineage.store import LineageStore

    if args.query == "row":
        process.load_tensorflow()
        from pipelines.lineage.trace import find_rows

        result = find_rows(args.run, set(args.row_id))
        lines = [f"{len(result)} raw records for row_id {', '.join(map(str, args.row_id))}"] + [
            f"  {r['source']}:{r['line']} (byte {r['offset']}, row_id {r['row_id']}): {r['raw']}"
            if r["line"] is not None
            else f"  {r['source']} (record {r['offset']}, row_id {r['row_id']}): {r['raw']}"
            for r in result
        ]
        print(json.dumps(result, indent=2) if args.json else "\n".join(lines))
        return 0 if result else 1
    store = LineageStore(args.lineage_db)
    if args.query in ("upstream", "downstream"):
        result = getattr(store, args.query)(args.artifact)
        lines = [f"{args.query} of {args.artifact}: {len(result)} artifacts"] + [
            f"  {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}  (run {a['execution']})" for a in result
        ]
    elif args.query == "runs":
        result = store.runs(args.limit)
        lines = [f"{'run':<17} {'command':<8} {'status':<10} {'started':<26} in/out  context"] + [
            f"{r['id']:<17} {r['command']:<8} {r['status']:<10} {r['started_at']:<26} {r['inputs']}/{r['outputs']}"
            f"     {r['context'] or ''}"
            for r in result
        ]
    elif args.query == "show":
        result = store.show(args.run)
        lines = [
            f"run {result['id']}: {result['command']} {result['status']}"
            + (f" ({result['reason']})" if result["reason"] else ""),
            f"  started {result['started_at']}, ended {result['ended_at']}, git {result['git_commit'] or '-'}",
        ]
        for kind in ("inputs", "outputs"):
            lines.append(f"  {kind}:")
            lines += [f"    {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}" for a in result[kind]]
    elif args.query == "stale":
        result = store.stale()
        lines = [f"{len(result)} changed inputs"]
        for entry in result:
            lines.append(
                f"  {entry['input']['uri']} (recorded {entry['input']['content_hash'][:12]}, now {entry['now'][:12]})"
            )
            lines += [
                f"    stale: {a['type']:<20} {a['uri']}  sha256:{a['content_hash'][:16]}" for a in entry["dependents"]
            ]
    else:
        if args.register:
            try:
                from apache_beam.io.filesystem import BeamIOError

                from pipelines.io import files

                inventory = yaml.safe_load(files.read_text(args.register)) or {}
            except (OSError, yaml.YAMLError, BeamIOError) as error:
                raise UsageError(f"cannot read {args.register}: {str(error).splitlines()[0]}") from None
            if not isinstance(inventory.get("sources"), dict):
                raise UsageError(f"{args.register} must have a 'sources:' mapping of name -> properties")
            store.register_sources(inventory["sources"])
        result = store.sources()
        lines = [f"{len(result)} data sources"] + [
            f"  {s['name']}: " + ", ".join(f"{k}={v}" for k, v in s["properties"].items()) for s in result
        ]
    store.close()
    print(json.dumps(result, indent=2, default=str) if args.json else "\n".join(lines))
    return 0
