"""Wire-level constants shared by the tracer, its codecs and its reporter.

Values follow jaeger-client-python 4.8.0 where users may depend on them (header names,
tag names, flag bits); see ``shared/reference/jaeger-wire.md`` section 8.1.
"""

SAMPLED_FLAG = 0x01
DEBUG_FLAG = 0x02

#: The baggage of every context that has none: shared, so never mutated.
EMPTY_BAGGAGE: dict = {}

TRACE_ID_HEADER = "uber-trace-id"
BAGGAGE_HEADER_PREFIX = "uberctx-"
DEBUG_ID_HEADER_KEY = "jaeger-debug-id"
BAGGAGE_HEADER_KEY = "jaeger-baggage"

#: Reported as the ``jaeger.version`` process tag; the agent and UI group clients by it.
CLIENT_VERSION = "Python-opentracing-sls-0.1.0"
JAEGER_VERSION_TAG_KEY = "jaeger.version"
JAEGER_HOSTNAME_TAG_KEY = "hostname"
JAEGER_IP_TAG_KEY = "ip"
CLIENT_UUID_TAG_KEY = "client-uuid"

SAMPLER_TYPE_TAG_KEY = "sampler.type"
SAMPLER_PARAM_TAG_KEY = "sampler.param"

SAMPLER_TYPE_CONST = "const"
SAMPLER_TYPE_PROBABILISTIC = "probabilistic"
SAMPLER_TYPE_RATE_LIMITING = "ratelimiting"
SAMPLER_TYPE_LOWER_BOUND = "lowerbound"
SAMPLER_TYPE_REMOTE = "remote"

MAX_TAG_VALUE_LENGTH = 1024
MAX_TRACEBACK_LENGTH = 4096

DEFAULT_AGENT_HOST = "localhost"
DEFAULT_COMPACT_PORT = 6831
DEFAULT_BINARY_PORT = 6832
DEFAULT_SAMPLING_PORT = 5778

#: jaeger-agent reads at most this many bytes of a datagram (``max-packet-size``).
MAX_UDP_PACKET_SIZE = 65000

DEFAULT_SAMPLING_PROBABILITY = 0.001
DEFAULT_LOWER_BOUND = 1.0 / 600.0
DEFAULT_MAX_OPERATIONS = 2000
DEFAULT_SAMPLING_INTERVAL = 60.0

MASK_64 = 0xFFFFFFFFFFFFFFFF
