// Sampling strategies served by the agent (HTTP 5778) and the collector.
// Written from shared/reference/jaeger-wire.md section 6.

namespace py sampling

enum SamplingStrategyType { PROBABILISTIC = 0, RATE_LIMITING = 1 }

struct ProbabilisticSamplingStrategy {
  1: required double samplingRate  // 0..1
}

struct RateLimitingSamplingStrategy {
  1: required i16 maxTracesPerSecond  // an int32 in the protobuf version of the API
}

struct OperationSamplingStrategy {
  1: required string                        operation
  2: required ProbabilisticSamplingStrategy probabilisticSampling
}

struct PerOperationSamplingStrategies {
  1: required double                          defaultSamplingProbability
  2: required double                          defaultLowerBoundTracesPerSecond
  3: required list<OperationSamplingStrategy> perOperationStrategies
  4: optional double                          defaultUpperBoundTracesPerSecond
}

struct SamplingStrategyResponse {
  1: required SamplingStrategyType           strategyType
  2: optional ProbabilisticSamplingStrategy  probabilisticSampling
  3: optional RateLimitingSamplingStrategy   rateLimitingSampling
  4: optional PerOperationSamplingStrategies operationSampling
}

service SamplingManager {
  SamplingStrategyResponse getSamplingStrategy(1: string serviceName)
}
