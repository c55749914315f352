// Jaeger span model, as sent by clients to jaeger-agent (Agent.emitBatch) and to the
// collector (HTTP body = binary-protocol Batch). Written from the field tables of
// shared/reference/jaeger-wire.md section 2; field ids and types are the wire contract.

namespace py jaeger

// Selects which of the Tag value fields (vStr .. vBinary) is set.
enum TagType { STRING = 0, DOUBLE = 1, BOOL = 2, LONG = 3, BINARY = 4 }

struct Tag {
  1: required string  key
  2: required TagType vType
  3: optional string  vStr
  4: optional double  vDouble
  5: optional bool    vBool
  6: optional i64     vLong
  7: optional binary  vBinary
}

// A timestamped set of fields (OpenTracing span.log_kv).
struct Log {
  1: required i64       timestamp  // epoch microseconds
  2: required list<Tag> fields
}

enum SpanRefType { CHILD_OF = 0, FOLLOWS_FROM = 1 }

// All ids are signed i64 on the wire: unsigned values >= 2^63 travel as negatives.
struct SpanRef {
  1: required SpanRefType refType
  2: required i64         traceIdLow
  3: required i64         traceIdHigh
  4: required i64         spanId
}

struct Span {
  1:  required i64           traceIdLow     // low 64 bits of the trace id
  2:  required i64           traceIdHigh    // high 64 bits; 0 for 64-bit trace ids
  3:  required i64           spanId
  4:  required i64           parentSpanId   // 0 for a root span
  5:  required string        operationName
  6:  optional list<SpanRef> references
  7:  required i32           flags          // 1 = SAMPLED, 2 = DEBUG
  8:  required i64           startTime      // epoch microseconds
  9:  required i64           duration       // microseconds
  10: optional list<Tag>     tags
  11: optional list<Log>     logs
}

// The reporting service; its tags (hostname, ip, jaeger.version, client-uuid) apply to
// every span of the batch.
struct Process {
  1: required string    serviceName
  2: optional list<Tag> tags
}

// Cumulative client-side drop counters; the agent derives its client_stats metrics from
// them (only when the process has a client-uuid tag and the batch has a seqNo).
struct ClientStats {
  1: required i64 fullQueueDroppedSpans
  2: required i64 tooLargeDroppedSpans
  3: required i64 failedToEmitSpans
}

// One UDP datagram carries one Batch, at most 65000 bytes in all.
struct Batch {
  1: required Process     process
  2: required list<Span>  spans
  3: optional i64         seqNo   // incremented per batch, so lost packets show up
  4: optional ClientStats stats
}

struct BatchSubmitResponse {
  1: required bool ok
}

service Collector {
  list<BatchSubmitResponse> submitBatches(1: list<Batch> batches)
}
