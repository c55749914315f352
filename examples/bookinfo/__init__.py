"""BookInfo in Python: Istio's sample application (productpage, details, reviews, ratings),
written for this project so it can be traced end to end.

The services hold no tracing and no header-forwarding code: run each one under
``opentracing-sls run`` and the Flask and ``requests`` integrations trace it and forward the
Istio headers. ``python examples/bookinfo/demo.py`` (``make demo``) starts all four with the
shim; ``examples/bookinfo/kubernetes/`` deploys them on Kubernetes/Istio. See
docs/istio-sls-walkthrough.md.

Each service is a package with ``app.py`` (``create_app()`` and a module-level ``app``, for
``gunicorn bookinfo.<service>.app:app`` and for tests) and ``__main__.py``
(``python -m bookinfo.<service> [PORT]``). All four listen on 9080 by default, as in Istio.
"""
