"""Our MethodView answers every HTTP method as Flask's does, in one step."""

from __future__ import annotations

from flask import Flask

from chatbot_sessions.api.blueprint import MethodView


def test_head_options_and_unknown_methods_as_flask_answers_them(client):
    sid = client.post("/api/session/create").get_json()["sessionId"]
    got = client.get(f"/api/session/{sid}/validate")
    head = client.head(f"/api/session/{sid}/validate")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == got.headers["Content-Length"]
    options = client.options(f"/api/session/{sid}/validate")
    assert options.status_code == 200
    assert set(options.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    refused = client.put(f"/api/session/{sid}/validate")
    assert refused.status_code == 405 and refused.get_json()["error"] == "method_not_allowed"


def test_one_instance_serves_every_request_and_each_method_its_handler():
    made = []

    class Counter(MethodView):
        def __init__(self) -> None:
            made.append(self)

        def get(self) -> str:
            return f"get {len(made)}"

        def post(self) -> str:
            return "post"

    app = Flask(__name__)
    app.add_url_rule("/counter", view_func=Counter.as_view("counter"))
    client = app.test_client()
    assert [client.get("/counter").text for _ in range(3)] == ["get 1"] * 3
    assert client.post("/counter").text == "post"
    assert client.head("/counter").status_code == 200
    assert client.delete("/counter").status_code == 405


def test_a_class_with_decorators_keeps_flasks_view():
    def shout(view):
        def wrapped(**kwargs):
            return view(**kwargs).upper()

        return wrapped

    class Quiet(MethodView):
        decorators = [shout]

        def get(self) -> str:
            return "hello"

    app = Flask(__name__)
    app.add_url_rule("/quiet", view_func=Quiet.as_view("quiet"))
    assert app.test_client().get("/quiet").text == "HELLO"
