"""Import / instrument / uninstrument orderings, each in a fresh interpreter, so no test
sees another's patches. Every scenario asserts inside the subprocess and prints OK."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = textwrap.dedent("""
    import logging, sys
    import opentracing
    from opentracing_sls.testing import make_test_tracer
    from opentracing_sls import integrations
    tracer = make_test_tracer()
    opentracing.set_global_tracer(tracer)

    def new_app():
        import flask
        app = flask.Flask("app")
        @app.route("/items/<id>")
        def item(id):
            return id
        return app

    def count_spans_of_one_request(app):
        before = len(tracer.reporter.get_spans())
        assert app.test_client().get("/items/1", buffered=True).data == b"1"
        return len(tracer.reporter.get_spans()) - before
""")


def run(body: str) -> None:
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)
                             + "\nprint('OK')"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
        "scenario failed:\n" + result.stdout + result.stderr)


def test_instrument_before_the_library_is_imported():
    run("""
        integrations.instrument()
        assert "flask" not in sys.modules and "requests" not in sys.modules  # nothing imported
        import wrapt, flask, requests
        assert isinstance(flask.Flask.__dict__["wsgi_app"], wrapt.FunctionWrapper)
        assert isinstance(requests.Session.__dict__["send"], wrapt.FunctionWrapper)
        assert count_spans_of_one_request(new_app()) == 1
    """)


def test_app_created_first_then_instrument_uninstrument_reinstrument():
    run("""
        import flask
        original = flask.Flask.wsgi_app
        app = new_app()
        assert count_spans_of_one_request(app) == 0
        integrations.instrument(["flask"])
        integrations.instrument(["flask"])
        assert count_spans_of_one_request(app) == 1
        assert integrations.uninstrument() == ["flask"]
        assert flask.Flask.wsgi_app is original
        assert count_spans_of_one_request(app) == 0
        integrations.instrument(["flask"])
        assert count_spans_of_one_request(app) == 1
    """)


def test_method_reached_through_the_instance_or_the_class_is_traced():
    run("""
        import flask, wrapt
        from werkzeug.test import EnvironBuilder
        integrations.instrument(["flask"])
        app = new_app()
        proxy = flask.Flask.__dict__["wsgi_app"]
        assert isinstance(proxy, wrapt.FunctionWrapper)
        assert app.wsgi_app.__self__ is app           # a bound method, no wrapt object per access
        import inspect
        assert app.wsgi_app.__name__ == "wsgi_app"
        assert list(inspect.signature(app.wsgi_app).parameters) == ["environ", "start_response"]
        assert count_spans_of_one_request(app) == 1
        before = len(tracer.reporter.get_spans())
        body = flask.Flask.wsgi_app(app, EnvironBuilder("/items/2").get_environ(),
                                    lambda status, headers, exc_info=None: None)
        assert b"".join(body) == b"2"
        body.close()
        assert [s.operation_name for s in tracer.reporter.get_spans()[before:]] == ["/items/<id>"]
    """)


def test_uninstrument_leaves_a_later_wrapper_in_place():
    run("""
        import flask, wrapt
        calls = []
        def theirs(wrapped, instance, args, kwargs):
            calls.append(1)
            return wrapped(*args, **kwargs)
        app = new_app()
        integrations.instrument(["flask"])
        wrapt.wrap_function_wrapper("flask", "Flask.wsgi_app", theirs)
        assert count_spans_of_one_request(app) == 1 and len(calls) == 1
        integrations.uninstrument(["flask"])
        top = flask.Flask.__dict__["wsgi_app"]
        assert top._self_wrapper is theirs            # theirs kept
        assert count_spans_of_one_request(app) == 0 and len(calls) == 2  # ours: pass-through
        integrations.instrument(["flask"])            # re-enabled, not stacked
        assert flask.Flask.__dict__["wsgi_app"] is top
        assert count_spans_of_one_request(app) == 1 and len(calls) == 3
    """)


def test_coexists_with_opentelemetry_requests_instrumentation():
    run("""
        import requests
        from requests.adapters import BaseAdapter
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        class Stub(BaseAdapter):
            def send(self, request, **kwargs):
                response = requests.Response()
                response.status_code, response.request = 200, request
                return response

        session = requests.Session()
        session.mount("http://", Stub())

        def client_spans_of_one_call():
            before = len(tracer.reporter.get_spans())
            assert session.get("http://stub/").status_code == 200
            return len(tracer.reporter.get_spans()) - before

        original = requests.Session.send
        integrations.instrument(["requests"])
        RequestsInstrumentor().instrument()          # on top of ours (a plain function)
        assert client_spans_of_one_call() == 1
        integrations.uninstrument(["requests"])      # theirs is on top: ours goes dormant
        assert client_spans_of_one_call() == 0
        RequestsInstrumentor().uninstrument()        # restores wrapt's bound form of ours
        assert client_spans_of_one_call() == 0
        integrations.instrument(["requests"])        # found again: re-enabled, not stacked
        assert client_spans_of_one_call() == 1
        integrations.uninstrument(["requests"])
        assert requests.Session.send is original
        assert client_spans_of_one_call() == 0
    """)


def test_uninstrument_before_the_deferred_import_cancels_it():
    run("""
        integrations.instrument()
        integrations.uninstrument()
        import flask, requests
        assert not hasattr(flask.Flask.__dict__["wsgi_app"], "__wrapped__")
        assert not hasattr(requests.Session.__dict__["send"], "__wrapped__")
    """)


@pytest.mark.parametrize("block", ["sys.modules['flask'] = None", "finder"])
def test_a_missing_library_is_skipped_with_a_debug_log(block):
    run("""
        import importlib.abc
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "flask":
                    raise ModuleNotFoundError("No module named 'flask'")
        if "%s" == "finder":
            sys.meta_path.insert(0, Hide())
        else:
            %s
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        log = logging.getLogger("opentracing_sls.integrations")
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        assert integrations.instrument() == ["requests"]
        assert any("flask is not installed" in r.getMessage() and r.levelno == logging.DEBUG
                   for r in records), [r.getMessage() for r in records]
    """ % (block, block if block != "finder" else "pass"))
