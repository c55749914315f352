# The four BookInfo services in one image; the Deployment picks the service by its command:
#   opentracing-sls run gunicorn --bind [::]:9080 bookinfo.<service>.app:app
# Build from the repository root:
#   docker build -f examples/bookinfo/kubernetes/services.Dockerfile -t opentracing-sls/bookinfo:0.1.0 .
FROM python:3.11-slim
LABEL org.opencontainers.image.title="opentracing-sls/bookinfo" \
      org.opencontainers.image.description="Istio BookInfo in Python, traced by opentracing-sls"

WORKDIR /src
# The tracer and the Flask/requests integrations (`opentracing-sls run`); the C accelerators
# are optional and skipped without a compiler.
COPY pyproject.toml setup.py README.md ./
COPY opentracing_sls ./opentracing_sls
COPY shim ./shim
COPY integrations ./integrations
# Accelerators built on the host may not match the image's C library: rebuilt, or skipped.
RUN find . -name '*.so' -delete
RUN pip install --no-cache-dir ".[integrations]" "gunicorn>=21" "prometheus_client>=0.16" \
    && rm -rf /src

WORKDIR /app
COPY examples/bookinfo ./bookinfo
# FLOOD_FACTOR: extra concurrent reviews calls per page view, as in Istio's image.
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    FLOOD_FACTOR=0
USER 1000
EXPOSE 9080
# Istio's productpage image runs 8 gevent workers; threads do the same job here without gevent.
CMD ["opentracing-sls", "run", "gunicorn", "--bind", "[::]:9080", "bookinfo.productpage.app:app"]
