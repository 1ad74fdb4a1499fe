"""relay's version, in a module of its own so that any layer can read it
(the transports name it in their user agent) without importing the package."""

__version__ = "0.1.0.dev0"
