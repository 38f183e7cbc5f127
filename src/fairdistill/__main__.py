"""``python -m fairdistill ...``: the same command line as ``fairdistill ...`` (for launchers such as
``torchrun -m`` that start a module rather than a script)."""

from fairdistill.cli import main

if __name__ == "__main__":
    main()
