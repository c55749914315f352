// Zipkin v1 span model, only used by Agent.emitZipkinBatch (legacy UDP port 5775).
// Written from shared/reference/jaeger-wire.md section 4.

namespace py zipkincore

// Core annotations (Annotation.value).
const string CLIENT_SEND = "cs"
const string CLIENT_RECV = "cr"
const string SERVER_SEND = "ss"
const string SERVER_RECV = "sr"
const string MESSAGE_SEND = "ms"
const string MESSAGE_RECV = "mr"
// Binary annotation key of the local component name.
const string LOCAL_COMPONENT = "lc"
// Address binary annotation keys (value true, host = the address).
const string CLIENT_ADDR = "ca"
const string SERVER_ADDR = "sa"
const string MESSAGE_ADDR = "ma"

struct Endpoint {
  1: i32             ipv4          // big-endian address packed into a signed i32
  2: i16             port          // unsigned port carried in a signed i16
  3: string          service_name
  4: optional binary ipv6          // 16 bytes
}

struct Annotation {
  1: i64               timestamp   // epoch microseconds
  2: string            value
  3: optional Endpoint host
}

// Type of BinaryAnnotation.value, which is always carried as bytes.
enum AnnotationType { BOOL = 0, BYTES = 1, I16 = 2, I32 = 3, I64 = 4, DOUBLE = 5, STRING = 6 }

struct BinaryAnnotation {
  1: string            key
  2: binary            value
  3: AnnotationType    annotation_type
  4: optional Endpoint host
}

struct Span {
  1:  i64                    trace_id       // low 64 bits
  3:  string                 name
  4:  i64                    id
  5:  optional i64           parent_id
  6:  list<Annotation>       annotations
  8:  list<BinaryAnnotation> binary_annotations
  9:  optional bool          debug = 0
  10: optional i64           timestamp      // epoch microseconds
  11: optional i64           duration       // microseconds
  12: optional i64           trace_id_high  // high 64 bits of a 128-bit trace id
}

struct Response {
  1: required bool ok
}

service ZipkinCollector {
  list<Response> submitZipkinBatch(1: list<Span> spans)
}
