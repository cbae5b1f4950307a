"""`python -m hate_compress.report <multirun dir> [--f1-floor 0.6] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hate_compress.errors import HateCompressError
from hate_compress.report.multirun import write_report


def _floor(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a macro F1 floor is between 0 and 1")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hate_compress.report",
        description="Report over a Hydra sweep: report.md, report.csv and Pareto/heatmap plots.")
    parser.add_argument("root", type=Path, help="multirun directory (e.g. multirun/<date>/<time>)")
    parser.add_argument("--f1-floor", type=_floor, default=None,
                        help="recommend the fastest model with macro F1 >= this (0..1)")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: root)")
    parser.add_argument("--split", choices=("auto", "dev", "test"), default="auto",
                        help="quality split (auto: test when the data has one, else dev)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    try:
        result = write_report(args.root, args.out, args.f1_floor, args.split, not args.no_plots)
    except HateCompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for rec in result["recommendations"]:
        print(f"{rec['title']}: {rec['text'].replace('**', '')}")
    print(f"report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
