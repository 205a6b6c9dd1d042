"""The playground boot agent: instance metadata in, a configured and healthy machine out."""
__version__ = "0.1.0"
