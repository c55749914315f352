"""opentracing-sls: an OpenTracing 2.x tracer for Istio and Alibaba Cloud Log Service."""
