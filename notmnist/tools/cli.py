"""notmnist: the project's tools, one command with a subcommand each (`notmnist TOOL --help`).
TensorFlow's own log lines stay hidden unless --verbose (or NOTMNIST_VERBOSE=1) is given."""

import argparse
import importlib
import os
import sys

from notmnist.core.runtime import entry_point

# notmnist/tools/*
TOOLS = ("grade", "predict", "export", "compare", "seeds", "report", "restore", "serve")


def check_params(args):
    from notmnist.core.checks import check_params

    check_params(args.path)
    print(f"{args.path}: ok")


def parser(tools=TOOLS):
    main_parser = argparse.ArgumentParser(prog="notmnist", description=__doc__)
    main_parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    subparsers = main_parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for name in tools:  # each tool module: its docstring is its help, add_arguments(parser) if it has options, run
        module = importlib.import_module(f"notmnist.tools.{name}")
        summary = module.__doc__.splitlines()[0].split(": ", 1)[-1]
        raw = argparse.RawDescriptionHelpFormatter
        tool = subparsers.add_parser(name, description=module.__doc__, help=summary, formatter_class=raw)
        getattr(module, "add_arguments", lambda tool: None)(tool)
        tool.set_defaults(run=module.run)
    params = subparsers.add_parser("params", help="check params.yaml (or PATH) as the check stage does, and exit")
    params.add_argument("path", nargs="?", default="params.yaml")
    params.add_argument("--check", action="store_true", help="what it does anyway (kept for scripts)")
    params.set_defaults(run=check_params)
    return main_parser


@entry_point
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    named = next((word for word in argv if not word.startswith("-")), None)  # import only that tool, if it is one
    try:
        args = parser((named,) if named in TOOLS else () if named == "params" else TOOLS).parse_args(argv)
        if args.verbose:
            os.environ["NOTMNIST_VERBOSE"] = "1"
        return args.run(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
