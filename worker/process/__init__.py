"""Process assembly: where the stages are put together into what a command runs.

The stage packages (``polling``, ``rules``, ``actions``, ``delivery``, ``triggers``) know nothing of
brokers, processes or command lines; the modules here build pollers, emitters and runtimes from the
settings for ``ppw run``, ``ppw worker``, ``ppw scheduler`` and the operator commands.
"""
