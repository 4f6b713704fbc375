class LoadError(RuntimeError):
    """The load could not run (the system is not there, a setup step failed, ...)."""
