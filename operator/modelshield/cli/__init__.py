"""The ``modelshield`` command: one module per subcommand, each with ``register(subparsers)``."""
