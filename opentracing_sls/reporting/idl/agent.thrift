// The jaeger-agent UDP service. Both methods are oneway: a datagram is one complete
// Thrift message (no framing) and the agent never replies.
// Written from shared/reference/jaeger-wire.md section 3.

include "jaeger.thrift"
include "zipkincore.thrift"

namespace py agent

service Agent {
  // Legacy Zipkin v1 spans, compact protocol on UDP 5775.
  oneway void emitZipkinBatch(1: list<zipkincore.Span> spans)
  // Jaeger spans: compact protocol on UDP 6831, binary protocol on UDP 6832.
  oneway void emitBatch(1: jaeger.Batch batch)
}
