"""The service over a real uvicorn server, as ``driftloop serve`` runs it: the same answers as in process,
HTTP semantics (pipelining, close, 100-continue, headers in any case) on the scoring routes too."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from fastapi.testclient import TestClient

from driftloop.serving.app import create_app
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.model import ModelHolder
from tests.conftest import wait_for
from tests.serving.fakes import MemoryCapture, mlflow_bodies, plant_model, plant_rows, serving

if TYPE_CHECKING:
    from collections.abc import Iterator

    from fastapi import FastAPI

ROWS = {"instances": plant_rows(2)}


def _post(
    path: str, body: bytes, *extra: str, version: str = "1.1", content_type: str | None = "application/json"
) -> bytes:
    typed = [] if content_type is None else [f"Content-Type: {content_type}"]
    head = [f"POST {path} HTTP/{version}", "Host: test", *typed, f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Responses:
    """HTTP/1.1 responses read one after another from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _until(self, n: int | bytes) -> bytes:
        while (len(self.buffer) < n) if isinstance(n, int) else (n not in self.buffer):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buffer += chunk
        end = n if isinstance(n, int) else self.buffer.index(n) + len(n)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def next(self) -> tuple[int, dict[str, str], bytes]:
        lines = self._until(b"\r\n\r\n").decode().split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers, self._until(int(headers["content-length"]))

    def closed(self) -> bool:
        return not self.buffer and self.sock.recv(1) == b""


class _Served:
    def __init__(self, app: FastAPI, capture: MemoryCapture, port: int) -> None:
        self.app, self.capture, self.port = app, capture, port

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def served() -> Iterator[_Served]:
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    app = create_app(holder, capture=capture, batcher=MicroBatcher(holder.predict, max_rows=64))
    with serving(app) as port:
        yield _Served(app, capture, port)


def _without_ids(body: bytes) -> Any:
    parsed = orjson.loads(body)
    for p in parsed.get("predictions", []):
        if isinstance(p, dict):
            p.pop("id", None)
    return parsed


def test_a_real_server_answers_as_the_app_does_in_process(served: _Served) -> None:
    bad_row = {"instances": [{**plant_rows(1)[0], "torque_nm": "x"}]}
    sent = [
        ("/v1/predict", orjson.dumps(ROWS)),
        ("/invocations", orjson.dumps(ROWS)),
        ("/v1/predict", orjson.dumps(bad_row)),
        ("/invocations", b"{"),
        ("/v1/predict?x=1", b"[]"),
    ]
    client = TestClient(served.app)  # the same app, in process
    statuses = []
    with served.connect() as sock:
        responses = _Responses(sock)
        for path, body in sent:
            sock.sendall(_post(path, body))
            status, headers, payload = responses.next()
            expected = client.post(path, content=body)
            assert (status, headers["content-type"], _without_ids(payload)) == (
                expected.status_code,
                expected.headers["content-type"],
                _without_ids(expected.content),
            )
            assert {"date", "server"} <= set(headers)
            statuses.append(status)
    assert statuses == [200, 200, 422, 400, 422]
    ids = [r["prediction_id"] for r in served.capture.records if r["kind"] == "prediction"]
    assert len(ids) == 8  # two requests of two rows over each path: every answer was captured
    metrics = client.get("/metrics").text
    assert 'driftloop_requests_total{path="/v1/predict",status="200"} 2.0' in metrics
    assert 'driftloop_requests_total{path="/v1/predict",status="422"} 4.0' in metrics


def test_mlflow_requests_are_read_by_their_content_type_and_answered_as_in_process(
    served: _Served,
) -> None:
    rows = plant_rows(3, seed=6)
    bad_row = {"dataframe_records": [{**rows[0], "torque_nm": "x"}]}
    sent = [
        *mlflow_bodies(rows).values(),
        ("text/plain", b"a,b"),
        ("application/json; charset=ascii", b"{}"),
        ("text/csv", b""),
        ("application/json", orjson.dumps(bad_row)),
        ("application/json", b'{"inputs": [], "params": 3}'),
    ]
    client = TestClient(served.app)
    answers = []
    with served.connect() as sock:
        responses = _Responses(sock)
        for content_type, body in sent:
            sock.sendall(_post("/invocations", body, content_type=content_type))
            status, headers, payload = responses.next()
            expected = client.post(
                "/invocations",
                content=body,
                headers={} if content_type is None else {"content-type": content_type},
            )
            assert (status, headers["content-type"], payload) == (
                expected.status_code,
                expected.headers["content-type"],
                expected.content,
            )
            answers.append(status)
    assert answers == [200] * len(mlflow_bodies(rows)) + [415, 415, 400, 400, 400]
    # Each accepted body was read back by capture as the rows it held, whatever its content type.
    captured = [r["inputs"] for r in served.capture.records if r["kind"] == "prediction"]
    assert captured == rows * len(mlflow_bodies(rows)) * 2  # over the server, then in process


def test_the_content_type_header_is_found_in_any_case_and_the_first_one_counts(served: _Served) -> None:
    csv = mlflow_bodies(plant_rows(2))["csv"][1]
    with served.connect() as sock:
        responses = _Responses(sock)
        sock.sendall(_post("/invocations", csv, "CONTENT-TYPE: text/csv", content_type=None))
        assert responses.next()[0] == 200
        sock.sendall(_post("/invocations", csv, "content-type: application/json", content_type="text/csv"))
        assert responses.next()[0] == 200
        sock.sendall(_post("/invocations", csv, content_type=None))  # no header on the next request: JSON
        status, _, payload = responses.next()
    assert status == 400
    assert "valid JSON" in orjson.loads(payload)["message"]


def test_pipelined_requests_are_answered_in_order_whatever_their_route(served: _Served) -> None:
    first, second = plant_rows(1, seed=1), plant_rows(3, seed=2)
    pipeline = (
        _post("/v1/predict", orjson.dumps({"instances": first}))
        + b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
        + _post("/v1/predict", orjson.dumps({"instances": second}))
    )
    with served.connect() as sock:
        sock.sendall(pipeline)  # three requests in one segment: the later ones wait their turn
        responses = _Responses(sock)
        answers = [responses.next() for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert len(orjson.loads(answers[0][2])["predictions"]) == 1
    assert orjson.loads(answers[1][2]) == {"status": "alive"}
    assert len(orjson.loads(answers[2][2])["predictions"]) == 3


@pytest.mark.parametrize(
    ("extra", "version"), [(("Connection: close",), "1.1"), ((), "1.0")], ids=["connection-close", "http-1.0"]
)
def test_a_scoring_request_that_asks_to_close_gets_its_answer_then_the_close(
    served: _Served, extra: tuple[str, ...], version: str
) -> None:
    with served.connect() as sock:
        sock.sendall(_post("/v1/predict", orjson.dumps(ROWS), *extra, version=version))
        responses = _Responses(sock)
        status, headers, _ = responses.next()
        assert (status, headers["connection"]) == (200, "close")
        assert responses.closed()  # the server closed the connection


def test_expect_100_continue_is_honoured_on_a_scoring_route(served: _Served) -> None:
    body = orjson.dumps(ROWS)
    with served.connect() as sock:
        sock.sendall(
            _post("/v1/predict", b"", "Expect: 100-continue").replace(b"th: 0", b"th: %d" % len(body))
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        status, _, payload = _Responses(sock).next()
    assert status == 200
    assert len(orjson.loads(payload)["predictions"]) == 2


def test_a_client_that_leaves_before_its_answer_is_still_captured(served: _Served) -> None:
    with served.connect() as sock:
        sock.sendall(_post("/v1/predict", orjson.dumps({"instances": plant_rows(1, seed=9)})))
    wait_for(lambda: bool(served.capture.records), what="the abandoned request's capture")
    assert len(served.capture.records) == 1
    with served.connect() as sock:  # and the service goes on answering
        sock.sendall(_post("/v1/predict", orjson.dumps(ROWS)))
        assert _Responses(sock).next()[0] == 200


def test_tokens_roles_and_rate_limits_hold_over_a_real_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The ``Authorization`` header is read as the content type is: in any case, the first one counting,
    never carried over to the next request on the connection; refusals carry their challenge or
    ``Retry-After``."""
    from driftloop.auth import Gate, RateLimiter, TokenStore, TokenVerifier
    from driftloop.settings import RateLimit
    from driftloop.storage.metadata import open_metadata

    store = TokenStore(open_metadata(f"sqlite:///{tmp_path / 'meta.db'}"))
    scorer = store.create("scorer", ["predict"], created_by="t")[1]
    labeller = store.create("labeller", ["label"], created_by="t")[1]
    limiter = RateLimiter(None, {"predict": RateLimit(per_second=0.01, burst=3)})
    holder = ModelHolder()
    holder.install(plant_model(1))
    capture = MemoryCapture()
    app = create_app(holder, capture=capture, gate=Gate(TokenVerifier(store.lookup, 5.0), limiter))
    body = orjson.dumps(ROWS)
    with serving(app) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        responses = _Responses(sock)
        answers = []
        for extra in [
            (),  # no credentials
            (f"AUTHORIZATION: Bearer {scorer}",),
            (f"authorization: Bearer {labeller}",),  # a valid token without the predict role
            (),  # the header of the request before does not carry over
            (f"Authorization: Bearer {scorer}", f"Authorization: Bearer {labeller}"),  # the first counts
            (f"Authorization: bearer {scorer}",),
            (f"Authorization: Bearer {scorer}",),  # over the rate: three per 100 s
        ]:
            sock.sendall(_post("/invocations" if len(answers) % 2 else "/v1/predict", body, *extra))
            answers.append(responses.next())
    assert [status for status, _, _ in answers] == [401, 200, 403, 401, 200, 200, 429]
    assert answers[0][1]["www-authenticate"] == 'Bearer realm="driftloop"'
    assert orjson.loads(answers[0][2]) == {
        "error": 'missing credentials: this service has auth on; send "Authorization: Bearer <token>"'
    }
    assert orjson.loads(answers[3][2])["error_code"] == "UNAUTHENTICATED"  # /invocations: MLflow's body
    assert "lacks the predict role" in orjson.loads(answers[2][2])["error"]
    assert answers[6][1]["retry-after"] == "100"
    assert "www-authenticate" not in answers[1][1]
    assert len([r for r in capture.records if r["kind"] == "prediction"]) == 3 * len(ROWS["instances"])
