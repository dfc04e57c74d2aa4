"""``deploykit bench MODEL``: latency percentiles, throughput, load time and peak memory per
backend, batch size and concurrency (``dk.bench`` on the command line)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..benchmark import bench
from .command import Command
from .options import (
    REAL_INPUT_HELP,
    add_input_option,
    add_made_up_options,
    add_progress_option,
    add_threads_option,
    check_writable,
    cli_wording,
    ints,
    made_up,
    read_inputs,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model")
    parser.add_argument("--backend", "-b", default=None,
                        help="a backend, a comma list, or 'all' (default: the one 'auto' picks)")
    parser.add_argument("--batch", default=None, metavar="1,8",
                        help="batch sizes (the model's first dimension must be dynamic)")
    parser.add_argument("--concurrency", "-c", default="1", metavar="1,4",
                        help="threads calling run on one engine at once (default 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of timed calls per row (default 1)")
    parser.add_argument("--iterations", "-n", type=int, default=None,
                        help="exactly this many timed calls per row instead of --duration")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per thread (default 5)")
    parser.add_argument("--min-samples", type=int, default=100,
                        help="timed calls per row at least (default 100, so that p99 means something)")
    add_threads_option(parser)
    add_input_option(parser, REAL_INPUT_HELP)
    add_made_up_options(parser, ranges=True)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write JSON here")
    parser.add_argument("--csv", type=Path, default=None, metavar="OUT.csv", help="write CSV here")
    add_progress_option(parser)


def run(args: argparse.Namespace) -> int:
    check_writable(args.json, "--json")
    check_writable(args.csv, "--csv")
    given = made_up(args)
    result = bench(
        args.model, args.backend,
        batch_sizes=None if args.batch is None else ints("--batch", args.batch),
        concurrency=ints("--concurrency", args.concurrency),
        duration=args.duration, iterations=args.iterations, warmup=args.warmup,
        min_samples=args.min_samples, threads=args.threads, inputs=read_inputs(args.input),
        shapes=given.shapes, dims=given.dims, value_ranges=given.value_ranges,
        progress=not args.no_progress,
    )
    # the caveats' hints name this command's flags, not dk.bench's keywords
    hints = {f"note: {n}" for n in result.notes}
    print("\n".join(cli_wording(line) if line in hints else line for line in result.format().splitlines()))
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}")
    if args.csv:
        result.to_csv(args.csv)
        print(f"wrote {args.csv}")
    return 0


COMMAND = Command("bench", "latency percentiles, throughput, load time and peak memory per backend, "
                           "batch size and concurrency", add_arguments, run)
