"""Imported at interpreter start-up because ``opentracing-sls run`` put this directory on
``PYTHONPATH``: sets up tracing before the program's own code runs.

Kept tiny, and never raises: an interpreter that cannot import opentracing_sls (another
virtualenv, say) starts untraced with one line on stderr.
"""


def _boot() -> None:
    try:
        from opentracing_sls.integrations.bootstrap import boot_from_sitecustomize
    except Exception as exc:  # noqa: BLE001
        import sys

        print("opentracing-sls run: tracing not set up in %s (%s)" % (sys.executable, exc),
              file=sys.stderr)
        return
    boot_from_sitecustomize(__file__)


_boot()
