"""The `vtalign` command line (entry point `vtalign.cli:main`)."""
from vtalign.cli._args import (
                               SEED_MAX,
                               VtalignParser,
                               float_in,
                               int_in,
                               non_negative_float,
                               non_negative_int,
                               positive_int,
                               seed_int,
)
from vtalign.cli.dispatch import build_parser, main, os_error_line

__all__ = ["SEED_MAX", "VtalignParser", "build_parser", "float_in", "int_in", "main", "non_negative_float",
           "non_negative_int", "os_error_line", "positive_int", "seed_int"]
