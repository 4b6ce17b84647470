"""`python -m bricks` runs the bricks command; `python -m bricks <helper> ...` a helper command (bin/ launchers)."""
from .cli import module_main
module_main()
