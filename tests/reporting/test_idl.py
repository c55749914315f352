"""Our Thrift IDL (opentracing_sls/reporting/idl/*.thrift) loaded with thriftpy2: every
struct, field id, type and requiredness of jaeger-wire.md sections 2, 3, 4 and 6."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
from thriftpy2.thrift import TType

from opentracing_sls.reporting import idl
from opentracing_sls.reporting.idl import agent, jaeger, sampling, zipkincore

I64, I32, I16, STR, BIN, DBL, BOOL = (TType.I64, TType.I32, TType.I16, TType.STRING,
                                      TType.BINARY, TType.DOUBLE, TType.BOOL)
LIST, STRUCT = TType.LIST, TType.STRUCT


def fields(struct_cls):
    """``{id: (name, ttype, required)}`` of a thriftpy2 struct."""
    return {fid: (spec[1], spec[0], spec[-1]) for fid, spec in struct_cls.thrift_spec.items()}


def element(struct_cls, fid):
    """The struct class (or element spec) of a struct or list field."""
    return struct_cls.thrift_spec[fid][2]


def test_modules_are_named_and_shared():
    for module in (jaeger, agent, sampling, zipkincore):
        assert module.__name__.endswith("_thrift")
        assert sys.modules[module.__name__] is module
        assert os.path.dirname(module.__thrift_file__) == idl.IDL_DIR
    # agent.thrift includes the very same modules: one class per Thrift type
    assert agent.jaeger is jaeger and agent.zipkincore is zipkincore
    assert element(agent.Agent.emitBatch_args, 1) is jaeger.Batch


def test_idl_files_ship_as_package_data():
    names = sorted(os.listdir(idl.IDL_DIR))
    assert names == ["agent.thrift", "jaeger.thrift", "sampling.thrift", "zipkincore.thrift"]
    assert idl.IDL_DIR == os.path.join(os.path.dirname(idl.__file__), "idl")


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        idl.not_a_module  # noqa: B018


def test_loading_is_lazy():
    code = ("import sys; import opentracing_sls.reporting.idl as idl; "
            "assert 'opentracing_sls_jaeger_thrift' not in sys.modules; "
            "assert idl.agent.Agent.emitBatch_args; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_jaeger_enums():
    assert jaeger.TagType._NAMES_TO_VALUES == {
        "STRING": 0, "DOUBLE": 1, "BOOL": 2, "LONG": 3, "BINARY": 4}
    assert jaeger.SpanRefType._NAMES_TO_VALUES == {"CHILD_OF": 0, "FOLLOWS_FROM": 1}


def test_jaeger_tag_log_spanref():
    assert fields(jaeger.Tag) == {
        1: ("key", STR, True), 2: ("vType", I32, True), 3: ("vStr", STR, False),
        4: ("vDouble", DBL, False), 5: ("vBool", BOOL, False), 6: ("vLong", I64, False),
        7: ("vBinary", BIN, False)}
    assert element(jaeger.Tag, 2) is jaeger.TagType
    assert fields(jaeger.Log) == {1: ("timestamp", I64, True), 2: ("fields", LIST, True)}
    assert element(jaeger.Log, 2) == (STRUCT, jaeger.Tag)
    assert fields(jaeger.SpanRef) == {
        1: ("refType", I32, True), 2: ("traceIdLow", I64, True),
        3: ("traceIdHigh", I64, True), 4: ("spanId", I64, True)}
    assert element(jaeger.SpanRef, 1) is jaeger.SpanRefType


def test_jaeger_span():
    assert fields(jaeger.Span) == {
        1: ("traceIdLow", I64, True), 2: ("traceIdHigh", I64, True),
        3: ("spanId", I64, True), 4: ("parentSpanId", I64, True),
        5: ("operationName", STR, True), 6: ("references", LIST, False),
        7: ("flags", I32, True), 8: ("startTime", I64, True), 9: ("duration", I64, True),
        10: ("tags", LIST, False), 11: ("logs", LIST, False)}
    assert element(jaeger.Span, 6) == (STRUCT, jaeger.SpanRef)
    assert element(jaeger.Span, 10) == (STRUCT, jaeger.Tag)
    assert element(jaeger.Span, 11) == (STRUCT, jaeger.Log)


def test_jaeger_process_batch_stats():
    assert fields(jaeger.Process) == {1: ("serviceName", STR, True), 2: ("tags", LIST, False)}
    assert fields(jaeger.ClientStats) == {
        1: ("fullQueueDroppedSpans", I64, True), 2: ("tooLargeDroppedSpans", I64, True),
        3: ("failedToEmitSpans", I64, True)}
    assert fields(jaeger.Batch) == {
        1: ("process", STRUCT, True), 2: ("spans", LIST, True), 3: ("seqNo", I64, False),
        4: ("stats", STRUCT, False)}
    assert element(jaeger.Batch, 1) is jaeger.Process
    assert element(jaeger.Batch, 2) == (STRUCT, jaeger.Span)
    assert element(jaeger.Batch, 4) is jaeger.ClientStats
    assert fields(jaeger.BatchSubmitResponse) == {1: ("ok", BOOL, True)}


def test_services():
    assert agent.Agent.thrift_services == ["emitZipkinBatch", "emitBatch"]
    assert agent.Agent.emitBatch_result.oneway and agent.Agent.emitZipkinBatch_result.oneway
    assert fields(agent.Agent.emitBatch_args) == {1: ("batch", STRUCT, False)}
    assert fields(agent.Agent.emitZipkinBatch_args) == {1: ("spans", LIST, False)}
    assert element(agent.Agent.emitZipkinBatch_args, 1) == (STRUCT, zipkincore.Span)

    assert jaeger.Collector.thrift_services == ["submitBatches"]
    assert element(jaeger.Collector.submitBatches_args, 1) == (STRUCT, jaeger.Batch)
    assert element(jaeger.Collector.submitBatches_result, 0) == (
        STRUCT, jaeger.BatchSubmitResponse)
    assert not jaeger.Collector.submitBatches_result.oneway

    assert sampling.SamplingManager.thrift_services == ["getSamplingStrategy"]
    assert fields(sampling.SamplingManager.getSamplingStrategy_args) == {
        1: ("serviceName", STR, False)}
    assert element(sampling.SamplingManager.getSamplingStrategy_result, 0) is (
        sampling.SamplingStrategyResponse)


def test_sampling():
    assert sampling.SamplingStrategyType._NAMES_TO_VALUES == {
        "PROBABILISTIC": 0, "RATE_LIMITING": 1}
    assert fields(sampling.ProbabilisticSamplingStrategy) == {1: ("samplingRate", DBL, True)}
    assert fields(sampling.RateLimitingSamplingStrategy) == {
        1: ("maxTracesPerSecond", I16, True)}
    assert fields(sampling.OperationSamplingStrategy) == {
        1: ("operation", STR, True), 2: ("probabilisticSampling", STRUCT, True)}
    assert fields(sampling.PerOperationSamplingStrategies) == {
        1: ("defaultSamplingProbability", DBL, True),
        2: ("defaultLowerBoundTracesPerSecond", DBL, True),
        3: ("perOperationStrategies", LIST, True),
        4: ("defaultUpperBoundTracesPerSecond", DBL, False)}
    assert element(sampling.PerOperationSamplingStrategies, 3) == (
        STRUCT, sampling.OperationSamplingStrategy)
    assert fields(sampling.SamplingStrategyResponse) == {
        1: ("strategyType", I32, True), 2: ("probabilisticSampling", STRUCT, False),
        3: ("rateLimitingSampling", STRUCT, False), 4: ("operationSampling", STRUCT, False)}
    assert element(sampling.SamplingStrategyResponse, 4) is (
        sampling.PerOperationSamplingStrategies)


def test_zipkincore():
    assert fields(zipkincore.Span) == {
        1: ("trace_id", I64, False), 3: ("name", STR, False), 4: ("id", I64, False),
        5: ("parent_id", I64, False), 6: ("annotations", LIST, False),
        8: ("binary_annotations", LIST, False), 9: ("debug", BOOL, False),
        10: ("timestamp", I64, False), 11: ("duration", I64, False),
        12: ("trace_id_high", I64, False)}
    assert zipkincore.Span().debug is False
    assert fields(zipkincore.Endpoint) == {
        1: ("ipv4", I32, False), 2: ("port", I16, False), 3: ("service_name", STR, False),
        4: ("ipv6", BIN, False)}
    assert fields(zipkincore.Annotation) == {
        1: ("timestamp", I64, False), 2: ("value", STR, False), 3: ("host", STRUCT, False)}
    assert fields(zipkincore.BinaryAnnotation) == {
        1: ("key", STR, False), 2: ("value", BIN, False), 3: ("annotation_type", I32, False),
        4: ("host", STRUCT, False)}
    assert zipkincore.AnnotationType._NAMES_TO_VALUES == {
        "BOOL": 0, "BYTES": 1, "I16": 2, "I32": 3, "I64": 4, "DOUBLE": 5, "STRING": 6}
    assert (zipkincore.CLIENT_SEND, zipkincore.CLIENT_RECV, zipkincore.SERVER_SEND,
            zipkincore.SERVER_RECV, zipkincore.MESSAGE_SEND, zipkincore.MESSAGE_RECV) == (
        "cs", "cr", "ss", "sr", "ms", "mr")
    assert (zipkincore.CLIENT_ADDR, zipkincore.SERVER_ADDR, zipkincore.MESSAGE_ADDR,
            zipkincore.LOCAL_COMPONENT) == ("ca", "sa", "ma", "lc")
    assert zipkincore.ZipkinCollector.thrift_services == ["submitZipkinBatch"]


def test_structs_pickle():
    span = jaeger.Span(traceIdLow=-1, traceIdHigh=0, spanId=2, parentSpanId=0,
                       operationName="op", flags=1, startTime=3, duration=4,
                       tags=[jaeger.Tag(key="k", vType=jaeger.TagType.LONG, vLong=5)])
    assert pickle.loads(pickle.dumps(span)) == span
