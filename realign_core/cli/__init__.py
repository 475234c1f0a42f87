"""The ``realign`` command line (parsers and thin handlers only; the work is done in the library).

* ``main``       the ``realign`` parser and its sub-commands
* ``generate``   ``realign generate``
* ``evaluate``   ``realign eval`` and the kinematic alignment command
* ``bench``      ``realign bench`` (latency, or ``--server`` throughput)
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``realign`` (imports the parsers only when called)."""
    from realign_core.cli.main import main as _main

    return _main(argv)
