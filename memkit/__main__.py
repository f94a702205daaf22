"""`python -m memkit`: the same as the `memkit` command."""

from memkit.cli import main

main()
