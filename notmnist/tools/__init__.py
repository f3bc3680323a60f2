"""The `notmnist` command's tools (notmnist/tools/cli.py); each imports notmnist.core, never another tool."""
