"""python -m xsched_llama.bench: the bench command without the toolkit's CLI."""
from .cli import main

main()
