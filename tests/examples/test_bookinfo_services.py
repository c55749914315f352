"""details, ratings, reviews and the fault knobs, in process (no tracing involved)."""

from __future__ import annotations

import time

import pytest
import requests
from bookinfo import faults
from bookinfo.details.app import create_app as details_app
from bookinfo.ratings.app import create_app as ratings_app
from bookinfo.reviews.app import RATINGS_UNAVAILABLE, version_from
from bookinfo.reviews.app import create_app as reviews_app
from bookinfo.upstream import service_url


def test_service_url_follows_bookinfo_variables():
    assert service_url("details", {}) == "http://details:9080"
    env = {"RATINGS_HOSTNAME": "10.0.0.7", "RATINGS_SERVICE_PORT": "19080",
           "SERVICES_DOMAIN": "default.svc.cluster.local"}
    assert service_url("ratings", env) == "http://10.0.0.7.default.svc.cluster.local:19080"


def test_details():
    client = details_app().test_client()
    body = client.get("/details/0").get_json()
    assert body == {"id": 0, "author": "William Shakespeare", "year": 1595, "type": "paperback",
                    "pages": 200, "publisher": "PublisherA", "language": "English",
                    "ISBN-10": "1234567890", "ISBN-13": "123-1234567890"}
    assert client.get("/details/7").get_json()["id"] == 7
    bad = client.get("/details/abc")
    assert bad.status_code == 400
    assert bad.get_json() == {"error": "please provide numeric product id"}
    assert client.get("/health").get_json() == {"status": "Details is healthy"}


def test_ratings_get_post_and_errors():
    client = ratings_app().test_client()
    assert client.get("/ratings/0").get_json() == {"id": 0, "ratings": {"Reviewer1": 5,
                                                                        "Reviewer2": 4}}
    posted = client.post("/ratings/3", json={"Reviewer1": 1, "Reviewer2": 2})
    assert posted.status_code == 200
    assert client.get("/ratings/3").get_json()["ratings"] == {"Reviewer1": 1, "Reviewer2": 2}
    assert client.get("/ratings/0").get_json()["ratings"]["Reviewer1"] == 5
    assert client.get("/ratings/x").get_json() == {"error": "please provide numeric product ID"}
    bad = client.post("/ratings/3", json={"Reviewer1": "five"})
    assert (bad.status_code, bad.get_json()) == (400, {"error": "please provide valid ratings "
                                                                "JSON"})
    assert client.get("/health").get_json() == {"status": "Ratings is healthy"}


@pytest.mark.parametrize("name,enabled,color,timeout", [
    ("v1", False, "black", 10.0), ("v2", True, "black", 10.0), ("v3", True, "red", 2.5)])
def test_reviews_versions(name, enabled, color, timeout):
    version = version_from(name, {})
    assert (version.ratings_enabled, version.star_color, version.ratings_timeout) == \
        (enabled, color, timeout)


def test_reviews_env_overrides_like_the_images():
    version = version_from("v1", {"ENABLE_RATINGS": "true", "STAR_COLOR": "red"})
    assert version.ratings_enabled and version.star_color == "red"
    with pytest.raises(ValueError, match="unknown reviews version"):
        version_from("v4", {})


def _reviews(serve, version, ratings_url_port, monkeypatch):
    monkeypatch.setenv("RATINGS_HOSTNAME", "127.0.0.1")
    monkeypatch.setenv("RATINGS_SERVICE_PORT", str(ratings_url_port))
    return serve(reviews_app({"SERVICE_VERSION": version, "CLUSTER_NAME": "c1",
                              "HOSTNAME": "reviews-%s-pod" % version}))


def test_reviews_v1_has_no_rating_and_does_not_call_ratings(serve, closed_port, monkeypatch):
    reviews = _reviews(serve, "v1", closed_port, monkeypatch)
    body = requests.get(reviews.url + "/reviews/0", timeout=5).json()
    assert body["id"] == "0"
    assert [r["reviewer"] for r in body["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert all("rating" not in r for r in body["reviews"])


@pytest.mark.parametrize("version,color", [("v2", "black"), ("v3", "red")])
def test_reviews_with_stars(serve, monkeypatch, version, color):
    ratings = serve(ratings_app())
    reviews = _reviews(serve, version, ratings.port, monkeypatch)
    body = requests.get(reviews.url + "/reviews/0", timeout=5).json()
    assert [r["rating"] for r in body["reviews"]] == [{"stars": 5, "color": color},
                                                      {"stars": 4, "color": color}]
    assert (body["podname"], body["clustername"]) == ("reviews-%s-pod" % version, "c1")


def test_reviews_when_ratings_is_down_still_answers_200(serve, closed_port, monkeypatch):
    reviews = _reviews(serve, "v3", closed_port, monkeypatch)
    response = requests.get(reviews.url + "/reviews/0", timeout=5)
    assert response.status_code == 200
    assert [r["rating"] for r in response.json()["reviews"]] == \
        [{"error": RATINGS_UNAVAILABLE}] * 2


def test_reviews_v3_gives_up_on_slow_ratings_after_2_5_s(serve, monkeypatch):
    # The fault-injection task: ratings delayed; v3 waits 2.5 s, then shows the error.
    ratings = serve(ratings_app())
    faults_of = ratings.app.extensions["bookinfo.faults"]
    faults_of.set(faults.Faults(delay=2.8))
    reviews = _reviews(serve, "v3", ratings.port, monkeypatch)
    started = time.monotonic()
    body = requests.get(reviews.url + "/reviews/0", timeout=10).json()
    elapsed = time.monotonic() - started
    assert body["reviews"][0]["rating"] == {"error": RATINGS_UNAVAILABLE}
    assert 2.4 < elapsed < 2.8


def test_reviews_version_switch_at_run_time():
    client = reviews_app({"SERVICE_VERSION": "v1"}).test_client()
    assert client.get("/admin/version").get_json()["version"] == "v1"
    switched = client.put("/admin/version", json={"version": "v3"}).get_json()
    assert switched == {"version": "v3", "ratings_enabled": True, "star_color": "red"}
    assert client.put("/admin/version", json={"version": "v9"}).status_code == 400


# -- fault knobs ------------------------------------------------------------------------------

def test_parse_seconds():
    assert faults.parse_seconds("7s") == 7.0
    assert faults.parse_seconds("500ms") == 0.5
    assert faults.parse_seconds("1.5") == 1.5
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ValueError):
            faults.parse_seconds(bad)


def test_faults_from_environment_ignore_bad_values(caplog):
    knobs = faults.from_environ({"FAULT_DELAY": "7s", "FAULT_ABORT": "99",
                                 "FAULT_END_USER": "jason", "FAULT_ABORT_PERCENT": "50"})
    assert knobs == faults.Faults(delay=7.0, abort=0, abort_percent=50.0, end_user="jason")
    assert "FAULT_ABORT" in caplog.text


def test_abort_answers_like_envoy_and_spares_health_and_admin():
    client = ratings_app().test_client()
    assert client.put("/admin/faults", json={"abort": 503}).get_json()["abort"] == 503
    aborted = client.get("/ratings/0")
    assert (aborted.status_code, aborted.data) == (503, b"fault filter abort")
    assert client.get("/health").status_code == 200
    assert client.get("/admin/faults").status_code == 200
    client.delete("/admin/faults")
    assert client.get("/ratings/0").status_code == 200


def test_fault_only_for_the_matching_end_user():
    client = details_app().test_client()
    client.put("/admin/faults", json={"abort": 500, "end_user": "jason"})
    assert client.get("/details/0").status_code == 200
    assert client.get("/details/0", headers={"end-user": "jason"}).status_code == 500
    assert client.get("/details/0", headers={"end-user": "alice"}).status_code == 200


def test_fault_percentages_are_applied(monkeypatch):
    client = details_app().test_client()
    client.put("/admin/faults", json={"abort": 500, "abort_percent": 0})
    assert client.get("/details/0").status_code == 200
    client.put("/admin/faults", json={"abort_percent": 100})
    assert client.get("/details/0").status_code == 500


def test_delay_is_applied_before_the_answer():
    app = details_app()
    slept = []
    injector = app.extensions["bookinfo.faults"]
    injector._sleep = slept.append
    injector.set(faults.Faults(delay=7.0))
    assert app.test_client().get("/details/0").status_code == 200
    assert slept == [7.0]


@pytest.mark.parametrize("body,message", [
    ({"abort": 42}, "abort"), ({"delay": "x"}, "delay"), ({"color": 1}, "unknown fault field"),
    ([1], "JSON object")])
def test_admin_rejects_bad_faults(body, message):
    response = details_app().test_client().put("/admin/faults", json=body)
    assert response.status_code == 400
    assert message in response.get_json()["error"]
