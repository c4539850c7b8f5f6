"""`python -m xsched_llama` is the `xsched-llama` command."""

from .cli import main

main()
