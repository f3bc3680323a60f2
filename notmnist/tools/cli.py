"""notmnist: the project's tools, one command with a subcommand each (`notmnist TOOL --help`).
TensorFlow's own log lines stay hidden unless --verbose (or NOTMNIST_VERBOSE=1) is given."""

import argparse
import importlib
import os
import sys

from notmnist.core.runtime import entry_point

TOOLS = ("grade", "predict", "export", "plots", "compare", "average", "seeds", "restore", "serve")  # notmnist/tools/*


def run_params(args):
    if args.table:
        from notmnist.tools.reference import tables

        print(tables(), end="")
    else:
        from notmnist.core import config

        config.load(args.path)
        print(f"{args.path}: ok")


def parser(tools=TOOLS):
    main_parser = argparse.ArgumentParser(prog="notmnist", description=__doc__)
    main_parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    subparsers = main_parser.add_subparsers(dest="tool", required=True, metavar="TOOL")
    for name in tools:  # each tool module: its docstring is its help, add_arguments(parser) and run(args)
        module = importlib.import_module(f"notmnist.tools.{name}")
        tool = subparsers.add_parser(
            name,
            description=module.__doc__,
            help=module.__doc__.splitlines()[0].split(": ", 1)[-1],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(tool)
        tool.set_defaults(run=module.run)
    params = subparsers.add_parser("params", help="check params.yaml (the default), or print its reference tables")
    params.add_argument("path", nargs="?", default="params.yaml")
    params.add_argument("--check", action="store_true", help="check the file as every stage would, and exit")
    params.add_argument("--table", action="store_true", help="print docs/parameters.md's tables (reads dvc.yaml)")
    params.set_defaults(run=run_params)
    return main_parser


@entry_point
def run(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # import only the named tool (numpy, PIL, sklearn...): `notmnist params --check` starts in a fraction of a second
    named = next((word for word in argv if not word.startswith("-")), None)
    args = parser((named,) if named in TOOLS else () if named == "params" else TOOLS).parse_args(argv)
    if args.verbose:
        os.environ["NOTMNIST_VERBOSE"] = "1"
    return args.run(args)


def main(argv=None):
    try:
        return run(argv)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
