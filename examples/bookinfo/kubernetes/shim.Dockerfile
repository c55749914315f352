# The opentracing-sls shim (DaemonSet) and query UI (Deployment): `opentracing-sls shim|query`.
# Build from the repository root:
#   docker build -f examples/bookinfo/kubernetes/shim.Dockerfile -t opentracing-sls/shim:0.1.0 .
FROM python:3.11-slim
LABEL org.opencontainers.image.title="opentracing-sls/shim" \
      org.opencontainers.image.description="opentracing-sls agent shim and query UI"

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY opentracing_sls ./opentracing_sls
COPY shim ./shim
COPY integrations ./integrations
# Accelerators built on the host may not match the image's C library: rebuilt, or skipped.
RUN find . -name '*.so' -delete
RUN pip install --no-cache-dir ".[shim]" && rm -rf /src

# The spool (and a local store, if configured) live here; the DaemonSet mounts a volume.
RUN mkdir -p /var/lib/opentracing-sls && chown 1000 /var/lib/opentracing-sls
WORKDIR /var/lib/opentracing-sls
USER 1000
# 6831/6832 UDP Jaeger Thrift, 5778 sampling, 14268 collector, 9411 Zipkin, 14271 admin,
# 16686 query UI.
EXPOSE 6831/udp 6832/udp 5778 14268 9411 14271 16686
ENTRYPOINT ["opentracing-sls"]
CMD ["shim", "--config", "/etc/opentracing-sls/shim.yaml"]
