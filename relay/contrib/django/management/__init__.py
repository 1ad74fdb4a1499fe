"""relay's management commands: ``runrelay``, ``showsubscriptions``, ``relayplan``."""
