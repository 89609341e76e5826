"""`python -m infra.cli worker`: how serve starts its worker."""

from infra.cli import main

main()
