"""What the hardening probe sends: the failure cases of issue #17, and random malformed requests.

Each case is (label, raw request). The random ones mutate valid requests of every
API with a seeded generator, so a rerun sends the same bytes.
"""

from __future__ import annotations

import random

import orjson

from bench.probe_wire import chunked, request

JSON = {"content-type": b"application/json"}
HUGE = b"1" + b"0" * 400
IRIS_ROW = {
    "sepal_length_cm": 5.1,
    "sepal_width_cm": 3.5,
    "petal_length_cm": 1.4,
    "petal_width_cm": 0.2,
}
V2_BODY = orjson.dumps(
    {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
)
V1_BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
RECORD = orjson.dumps(IRIS_ROW)
VERSIONS = ["%C2%B2", "%E2%91%A0", "%D9%A1", "%EF%BC%91", "9" * 5000]
TIMEOUTS = [b"\xb2", b"9" * 5000, "\u0661".encode(), b"-1", b"1e9"]  # U+0661: Arabic one
Case = tuple[str, bytes]


def issue_cases(ids: list[str], body_limit: int) -> list[Case]:
    """The issue's failure cases, each a 4xx when handled right, but for the record
    content types (a 200 for a normal row, the same on both paths) and one sane truth.

    `ids`: four request ids of logged `diabetes` predictions, one per truth sent.
    """
    cases: list[Case] = [
        (
            "V1 400-digit integer",
            request(
                "POST",
                "/v1/models/iris:predict",
                JSON,
                b'{"instances": [[' + HUGE + b", 3.0, 5.2, 2.3]]}",
            ),
        ),
        (
            "records 400-digit integer",
            request("POST", "/models/iris/predict", JSON, b'{"sepal_length_cm": ' + HUGE + b"}"),
        ),
        ("feedback sane truth (200)", _feedback(ids[0], b"151.0")),
        ("feedback 400-digit truth", _feedback(ids[1], HUGE)),
        ("feedback 1e308 truth", _feedback(ids[2], b"1e308")),
        ("feedback -1e308 truth", _feedback(ids[3], b"-1e308")),
    ]
    for version in VERSIONS:
        cases.append(
            (
                f"V2 version {version[:12]}",
                request("POST", f"/v2/models/iris/versions/{version}/infer", JSON, V2_BODY),
            )
        )
        cases.append(
            (
                f"V2 ready {version[:12]}",
                request("GET", f"/v2/models/iris/versions/{version}/ready"),
            )
        )
    for value in TIMEOUTS:
        for path, body in (
            ("/v2/models/iris/infer", V2_BODY),
            ("/models/iris/predict", RECORD),
            ("/v1/models/iris:predict", V1_BODY),
        ):
            headers = {**JSON, "x-request-timeout-ms": value}
            cases.append(
                (f"timeout header {value[:8]!r} {path}", request("POST", path, headers, body))
            )
    cases.append(
        (
            "inference-header-content-length 5000 digits",
            request(
                "POST",
                "/v2/models/iris/infer",
                {**JSON, "inference-header-content-length": b"9" * 5000},
                V2_BODY,
            ),
        )
    )
    for path in (
        "/v2/models/iris/infer",
        "/models/iris/predict",
        "/v1/models/iris:predict",
        "/models/diabetes/feedback",
        "/v2/repository/models/iris/load",
    ):
        cases.append(
            (
                f"chunked body over the limit {path}",
                chunked("POST", path, body_limit * 2, b"application/json"),
            )
        )
    cases += _content_types()
    return cases


def _feedback(request_id: str, truth: bytes) -> bytes:
    body = b'{"request_id": "%s", "truth": %s}' % (request_id.encode(), truth)
    return request("POST", "/models/diabetes/feedback", JSON, body)


def _content_types() -> list[Case]:
    """A normal and an out-of-range record under each content type, on both record paths."""
    far = orjson.dumps({**IRIS_ROW, "sepal_length_cm": 1e6})
    cases = []
    for content_type in (
        b"application/json",
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data",
        b"",
    ):
        for path in ("/models/iris/predict", "/models/iris/versions/1/predict"):
            for name, body in (("normal", RECORD), ("out of range", far)):
                headers = {"content-type": content_type} if content_type else {}
                cases.append(
                    (
                        f"{path} {content_type.decode() or 'no type'} {name}",
                        request("POST", path, headers, body),
                    )
                )
    return cases


def huge_heads() -> list[Case]:
    """50,000 headers, and one 64 MiB header (both 431)."""
    many = {f"x-h{i}": b"v" for i in range(50_000)}
    return [
        ("50,000 headers", request("GET", "/v2/health/live", many)),
        ("one 64 MiB header", request("GET", "/v2/health/live", {"x-big": b"a" * (64 << 20)})),
    ]


def templates(feedback_id: str, token: str) -> list[Case]:
    """Valid requests of every API, to mutate."""
    auth = {"authorization": f"Bearer {token}".encode()}
    return [
        ("v2", request("POST", "/v2/models/iris/infer", JSON, V2_BODY)),
        ("v2 version", request("POST", "/v2/models/iris/versions/1/infer", JSON, V2_BODY)),
        ("v1", request("POST", "/v1/models/iris:predict", JSON, V1_BODY)),
        ("records", request("POST", "/models/iris/predict", JSON, RECORD)),
        ("records list", request("POST", "/models/iris/predict", JSON, b"[" + RECORD + b"]")),
        ("feedback", _feedback(feedback_id, b"151.0")),
        ("quality", request("GET", "/models/diabetes/quality")),
        ("predictions", request("GET", "/models/diabetes/predictions?limit=5")),
        ("models", request("GET", "/models")),
        ("metadata", request("GET", "/v2/models/iris")),
        ("drift", request("GET", "/models/iris/drift")),
        ("admin index", request("POST", "/v2/repository/index", auth)),
        (
            "admin load",
            request("POST", "/v2/repository/models/iris/load", {**JSON, **auth}, b'{"version": 1}'),
        ),
    ]


def malformed(count: int, seed: int, feedback_id: str, token: str) -> list[Case]:
    """`count` mutations of the templates, the same for the same seed."""
    rng = random.Random(seed)
    bases = templates(feedback_id, token)
    mutations = [
        _flip_bytes,
        _cut_body,
        _garbage_header,
        _bad_line,
        _bad_json,
        _bad_path,
        _random_bytes,
        _duplicate_length,
        _huge_number,
    ]
    cases = []
    for _ in range(count):
        label, raw = rng.choice(bases)
        mutate = rng.choice(mutations)
        cases.append((f"{label} {mutate.__name__}", mutate(raw, rng)))
    return cases


def _split(raw: bytes) -> tuple[bytes, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return head, body


def _with_body(head: bytes, body: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if not line.startswith(b"content-length")]
    if body:
        lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _flip_bytes(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    data = bytearray(body or b"{}")
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return _with_body(head, bytes(data))


def _cut_body(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    return _with_body(head, body[: rng.randint(0, max(0, len(body) - 1))])


def _garbage_header(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    names = [
        b"x-request-timeout-ms",
        b"content-type",
        b"origin",
        b"x-request-id",
        b"inference-header-content-length",
        b"accept",
        b"authorization",
        b"x-" + bytes(rng.randrange(97, 123) for _ in range(6)),
    ]
    value = bytes(rng.choice(range(32, 256)) for _ in range(rng.randint(0, 40)))
    value = value.replace(b"\x7f", b"")
    return head + b"\r\n" + rng.choice(names) + b": " + value + b"\r\n\r\n" + body


def _bad_line(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    line, _, rest = head.partition(b"\r\n")
    method, path, version = line.split(b" ", 2)
    choice = rng.randrange(4)
    if choice == 0:
        method = rng.choice([b"PROPFIND", b"BREW", b"G\x00T", b"post", b"CONNECT"])
    elif choice == 1:
        version = rng.choice([b"HTTP/1.0", b"HTTP/2.0", b"HTTP/9.9", b"HTTX/1.1", b""])
    elif choice == 2:
        path = path + b"?" + bytes(rng.randrange(33, 127) for _ in range(rng.randint(1, 30)))
    else:
        path = b"/" + b"../" * rng.randint(1, 5) + path.lstrip(b"/")
    return b" ".join(p for p in (method, path, version) if p) + b"\r\n" + rest + b"\r\n\r\n" + body


def _bad_json(raw: bytes, rng: random.Random) -> bytes:
    head, _ = _split(raw)
    body = rng.choice(
        [
            b"null",
            b"[]",
            b"{}",
            b'"x"',
            b"1",
            b"[" * 5000 + b"]" * 5000,
            b'{"inputs": null}',
            b'{"instances": [[NaN, Infinity, -Infinity, 1]]}',
            b'{"a": 1, "a": 2}',
            b'{"instances": "' + b"x" * 10_000 + b'"}',
            b"\xff\xfe{}",
            b'{"inputs": [{}]}',
            b'{"sepal_length_cm": true}',
            b'{"instances": [[1e999, 1, 1, 1]]}',
        ]
    )
    return _with_body(head, body)


def _bad_path(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    line, _, rest = head.partition(b"\r\n")
    method, _, version = line.split(b" ", 2)
    path = rng.choice(
        [
            b"/v2/models/%00/infer",
            b"/v2/models/iris/versions/-1/infer",
            b"/models/%ff%fe/predict",
            b"/v2/models/" + b"a" * 5000 + b"/infer",
            b"/v2/models/iris/versions/0/infer",
            b"/v1/models/iris:explain",
            b"/models/iris/versions/99999999999/predict",
            b"//",
            b"/v2/models/iris/versions/%31/infer",
            b"/models/iris/predict%2F..%2F",
            b"*",
        ]
    )
    return method + b" " + path + b" " + version + b"\r\n" + rest + b"\r\n\r\n" + body


def _random_bytes(raw: bytes, rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))) + b"\r\n\r\n"


def _duplicate_length(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    if not body:  # a declared byte that never comes would only wait for the read timeout
        return head + b"\r\ncontent-length: 0\r\ncontent-length: 0\r\n\r\n"
    return head + b"\r\ncontent-length: %d\r\n\r\n" % (len(body) + 1) + body


def _huge_number(raw: bytes, rng: random.Random) -> bytes:
    head, body = _split(raw)
    digits = b"9" * rng.choice([20, 309, 400, 5000])
    return _with_body(head, body.replace(b"5.1", rng.choice([digits, b"-" + digits, b"1e400"])))
