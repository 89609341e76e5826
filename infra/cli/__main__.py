"""`python -m infra.cli worker`: how serve starts its worker."""

from infra.cli import main

if __name__ == "__main__":  # not again in a child process spawned from this one
    main()
