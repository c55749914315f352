"""The ``opentracing-sls`` command; later issues add subcommands (shim, run, query)."""
