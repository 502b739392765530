"""The Open Inference Protocol codec against the spec and against tritonclient itself.

Binary requests are built by `tritonclient.http`'s own request-body builder and responses are
read back by its own parser, so these tests prove the codec speaks exactly what the real client
sends and expects.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient

from tabserve.service.protocol import (
    InferenceRequest,
    InputTensor,
    OutputTensor,
    RequestedOutput,
    V2CodecError,
    datatype_of,
    decode_request,
    encode_response,
    parse_header_length,
)

NUMERIC_DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


# --------------------------------------------------------------------------- helpers


def tensor(name: str = "x", datatype: str = "FP64", shape: Any = (2,), **fields: Any) -> dict:
    """One $request_input object; `data` etc. go in `fields`."""
    return {"name": name, "datatype": datatype, "shape": list(shape), **fields}


def body_of(*inputs: dict, **fields: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **fields})


def decode_one(datatype: str, shape: Any, data: Any) -> InputTensor:
    request = decode_request(body_of(tensor("x", datatype, shape, data=data)), None)
    assert len(request.inputs) == 1
    return request.inputs[0]


def error_of(body: bytes, header_length: int | None = None) -> str:
    with pytest.raises(V2CodecError) as info:
        decode_request(body, header_length)
    return str(info.value)


def input_error(datatype: str, shape: Any, data: Any) -> str:
    return error_of(body_of(tensor("x", datatype, shape, data=data)))


def sample(datatype: str, shape: tuple[int, ...] = (3, 2)) -> np.ndarray:
    """Values that exercise each datatype's range (extremes included)."""
    dtype = np.dtype(NUMERIC_DTYPES[datatype])
    count = int(np.prod(shape))
    if dtype.kind == "b":
        values = np.arange(count) % 3 == 0
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.linspace(0, 1, count) * (int(info.max) // 2)
        values = values.astype(dtype)
        values[0], values[-1] = info.max, info.min
    else:
        values = (np.arange(count, dtype=np.float64) - 2.25) * 1.5
        values = values.astype(dtype)
        values[-1] = np.finfo(dtype).max
    return values.reshape(shape)


def client_request(
    inputs: list[tuple[str, np.ndarray, str, bool]],
    outputs: list[httpclient.InferRequestedOutput] | None = None,
    **kwargs: Any,
) -> tuple[bytes, int | None]:
    """A request body exactly as `tritonclient.http.InferenceServerClient.infer()` sends it."""
    infer_inputs = []
    for name, array, datatype, binary in inputs:
        infer_input = httpclient.InferInput(name, list(array.shape), datatype)
        infer_input.set_data_from_numpy(array, binary_data=binary)
        infer_inputs.append(infer_input)
    body, header_length = httpclient.InferenceServerClient.generate_request_body(
        infer_inputs, outputs=outputs, **kwargs
    )
    return bytes(body), header_length


def client_result(body: bytes, header_length: int | None) -> httpclient.InferResult:
    """The response as `tritonclient.http` parses it."""
    return httpclient.InferenceServerClient.parse_response_body(body, header_length=header_length)


# --------------------------------------------------------------------------- JSON decoding


def test_fp64_flat_and_nested_data_decode_to_the_same_array() -> None:
    flat = decode_one("FP64", [2, 3], [1.5, -2, 3.25, 0, 1e-300, 7])
    nested = decode_one("FP64", [2, 3], [[1.5, -2, 3.25], [0, 1e-300, 7]])
    expected = np.array([[1.5, -2.0, 3.25], [0.0, 1e-300, 7.0]])
    for decoded in (flat, nested):
        assert decoded.name == "x"
        assert decoded.datatype == "FP64"
        assert decoded.shape == (2, 3)
        assert decoded.data.dtype == np.float64
        assert decoded.data.shape == (2, 3)
        np.testing.assert_array_equal(decoded.data, expected)


def test_fp32_and_fp16_take_their_own_dtype() -> None:
    fp32 = decode_one("FP32", [3], [0.1, 2, -3.5])
    assert fp32.data.dtype == np.float32
    np.testing.assert_array_equal(fp32.data, np.array([0.1, 2.0, -3.5], dtype=np.float32))
    fp16 = decode_one("FP16", [2, 1], [[0.5], [65504]])
    assert fp16.data.dtype == np.float16
    np.testing.assert_array_equal(fp16.data, np.array([[0.5], [65504.0]], dtype=np.float16))


def test_int64_and_int32_accept_integers_and_integral_floats() -> None:
    int64 = decode_one("INT64", [2, 2], [[1, -2], [3.0, 9007199254740993]])
    assert int64.data.dtype == np.int64
    # 2**53 + 1 survives exactly even though a float sits in the same array
    np.testing.assert_array_equal(int64.data, np.array([[1, -2], [3, 9007199254740993]]))
    int32 = decode_one("INT32", [3], [2147483647, -2147483648, 0])
    assert int32.data.dtype == np.int32
    np.testing.assert_array_equal(int32.data, np.array([2147483647, -2147483648, 0], np.int32))


def test_integer_extremes_decode_exactly() -> None:
    assert decode_one("UINT64", [1], [18446744073709551615]).data[0] == np.uint64(2**64 - 1)
    assert decode_one("INT64", [1], [-9223372036854775808]).data[0] == np.int64(-(2**63))
    np.testing.assert_array_equal(
        decode_one("UINT8", [2], [0, 255]).data, np.array([0, 255], np.uint8)
    )
    np.testing.assert_array_equal(
        decode_one("INT8", [2], [-128, 127.0]).data, np.array([-128, 127], np.int8)
    )


def test_bool_decodes_true_and_false() -> None:
    decoded = decode_one("BOOL", [2, 2], [[True, False], [False, True]])
    assert decoded.data.dtype == np.bool_
    np.testing.assert_array_equal(decoded.data, np.array([[True, False], [False, True]]))


def test_bytes_decode_to_object_arrays_of_str() -> None:
    flat = decode_one("BYTES", [3], ["setosa", "", "straße ✓"])
    assert flat.data.dtype == object
    assert flat.data.tolist() == ["setosa", "", "straße ✓"]
    assert all(type(item) is str for item in flat.data)
    nested = decode_one("BYTES", [2, 2], [["a", "b"], ["c", "d"]])
    assert nested.data.shape == (2, 2)
    assert nested.data.tolist() == [["a", "b"], ["c", "d"]]


def test_nested_data_may_follow_any_regular_row_major_grouping() -> None:
    # The spec allows natural or flat data; a [1, 4] grouping of a [2, 2] tensor is row-major too.
    decoded = decode_one("INT64", [2, 2], [[1, 2, 3, 4]])
    np.testing.assert_array_equal(decoded.data, np.array([[1, 2], [3, 4]]))
    deep = decode_one("FP32", [2, 2, 2], [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    np.testing.assert_array_equal(deep.data, np.arange(1, 9, dtype=np.float32).reshape(2, 2, 2))


def test_scalar_and_empty_tensors() -> None:
    scalar = decode_one("FP64", [], [7])
    assert scalar.shape == ()
    assert scalar.data.shape == ()
    assert scalar.data.item() == 7.0
    empty = decode_one("FP32", [0, 4], [])
    assert empty.data.shape == (0, 4)
    assert empty.data.dtype == np.float32
    empty_rows = decode_one("INT64", [2, 0], [[], []])
    assert empty_rows.data.shape == (2, 0)
    assert empty_rows.data.dtype == np.int64
    no_strings = decode_one("BYTES", [0], [])
    assert no_strings.data.shape == (0,)
    assert no_strings.data.dtype == object


@pytest.mark.parametrize("datatype", list(NUMERIC_DTYPES))
def test_json_round_trip_of_every_numeric_datatype(datatype: str) -> None:
    array = sample(datatype)
    decoded = decode_one(datatype, array.shape, array.tolist())
    assert decoded.data.dtype == array.dtype
    np.testing.assert_array_equal(decoded.data, array)


def test_request_fields_are_decoded() -> None:
    body = body_of(
        tensor("a", "FP64", [1], data=[1.0]),
        tensor("b", "INT64", [1], data=[2]),
        id="req-7",
        parameters={"binary_data_output": True, "priority": 2, "tag": "blue"},
        outputs=[
            {"name": "label", "parameters": {"binary_data": False}},
            {"name": "proba"},
            {"name": "margin", "parameters": {"binary_data": True, "other": 1}},
        ],
        model_name="ignored",
    )
    request = decode_request(body, None)
    assert request.id == "req-7"
    assert [t.name for t in request.inputs] == ["a", "b"]
    assert request.outputs == [
        RequestedOutput("label", False),
        RequestedOutput("proba", None),
        RequestedOutput("margin", True),
    ]
    assert request.binary_output_default is True
    assert request.parameters == {"binary_data_output": True, "priority": 2, "tag": "blue"}
    assert request.binary_for("label") is False
    assert request.binary_for("proba") is True
    assert request.binary_for("margin") is True
    assert request.binary_for("not-requested") is True


def test_request_defaults() -> None:
    request = decode_request(body_of(tensor(data=[1, 2])), None)
    assert isinstance(request, InferenceRequest)
    assert request.id is None
    assert request.outputs is None
    assert request.binary_output_default is False
    assert request.parameters == {}
    assert request.binary_for("anything") is False
    assert decode_request(body_of(tensor(data=[1, 2]), outputs=[]), None).outputs is None


# --------------------------------------------------------------------------- JSON errors


def test_body_must_be_a_json_object() -> None:
    assert error_of(b'{"inputs": [').startswith("the request body is not valid JSON: ")
    assert error_of(b"").startswith("the request body is not valid JSON: ")
    assert error_of(b"[1, 2]") == "the request body must be a JSON object, got an array"
    nan = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [NaN]}]}'
    assert "not valid JSON" in error_of(nan)
    infinity = b'{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1e999]}]}'
    assert "not valid JSON" in error_of(infinity)


def test_inputs_must_be_a_non_empty_array() -> None:
    assert error_of(b"{}") == "the request has no 'inputs'; expected an array of input tensors"
    assert error_of(b'{"inputs": {}}') == (
        "'inputs' must be an array of input tensors, got an object"
    )
    assert error_of(b'{"inputs": []}') == "'inputs' is empty; expected at least one input tensor"
    assert error_of(b'{"inputs": [7]}') == "inputs[0] must be an object, got an integer"


def test_input_fields_are_required() -> None:
    assert error_of(body_of({"datatype": "FP64", "shape": [1], "data": [1]})) == (
        "inputs[0] has no 'name'; expected a non-empty string"
    )
    assert error_of(body_of({"name": "x", "shape": [1], "data": [1]})) == (
        "input 'x' has no 'datatype'; expected one of BOOL, UINT8, UINT16, UINT32, UINT64, "
        "INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
    )
    assert error_of(body_of({"name": "x", "datatype": "FP64", "data": [1]})) == (
        "input 'x' has no 'shape'; expected an array of non-negative integers"
    )
    assert error_of(body_of(tensor())) == (
        "input 'x' has no 'data' and no parameters.binary_data_size; expected one of them"
    )


@pytest.mark.parametrize("datatype", ["FP8", "fp64", "BF16", "STRING", 3])
def test_unknown_datatype(datatype: Any) -> None:
    message = error_of(body_of(tensor(datatype=datatype, data=[1, 2])))
    assert message.startswith(f"input 'x' has unknown datatype {orjson.dumps(datatype).decode()}")
    assert message.endswith(
        "expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, "
        "INT32, INT64, FP16, FP32, FP64, BYTES"
    )


@pytest.mark.parametrize("shape", [[-1], [2.0], [True], "2", [[2]], 2, [2, None]])
def test_shape_must_be_a_list_of_non_negative_ints(shape: Any) -> None:
    message = error_of(body_of({"name": "x", "datatype": "FP64", "shape": shape, "data": [1]}))
    assert message == (
        "input 'x': 'shape' must be an array of non-negative integers, "
        f"got {orjson.dumps(shape).decode()}"
    )


def test_element_count_must_match_the_shape() -> None:
    assert input_error("FP64", [2, 2], [1, 2, 3]) == (
        "input 'x': 'data' has 3 elements but shape [2, 2] needs 4"
    )
    assert input_error("INT64", [3], [[1, 2], [3, 4]]) == (
        "input 'x': 'data' has 4 elements but shape [3] needs 3"
    )
    assert input_error("BYTES", [1], []) == "input 'x': 'data' has 0 elements but shape [1] needs 1"
    assert input_error("FP64", [2], [1, "a", 3]) == (
        "input 'x': 'data' has 3 elements but shape [2] needs 2"
    )


def test_data_must_be_an_array() -> None:
    assert input_error("FP64", [1], 5) == "input 'x': 'data' must be an array, got an integer"
    assert input_error("BYTES", [1], "abc") == "input 'x': 'data' must be an array, got a string"


@pytest.mark.parametrize(
    ("datatype", "data", "index", "shown", "kind", "expected"),
    [
        ("FP64", [1.0, 2.0, "abc", 4.0], 2, '"abc"', "a string", "FP64 expects a number"),
        ("FP64", [1.0, "1.5"], 1, '"1.5"', "a string", "FP64 expects a number"),
        ("FP64", [[1.0, 2.0], [True, 4.0]], 2, "true", "a boolean", "FP64 expects a number"),
        ("FP32", [None, 1.0], 0, "null", "null", "FP32 expects a number"),
        ("FP64", [1.0, {"v": 1}], 1, '{"v":1}', "an object", "FP64 expects a number"),
        ("INT64", [1, False], 1, "false", "a boolean", "INT64 expects an integer"),
        ("INT32", ["7"], 0, '"7"', "a string", "INT32 expects an integer"),
        ("BOOL", [True, 1], 1, "1", "an integer", "BOOL expects true or false"),
        ("BOOL", [True, "false"], 1, '"false"', "a string", "BOOL expects true or false"),
        ("BYTES", ["a", 5], 1, "5", "an integer", "BYTES expects a string"),
        ("BYTES", [["a", "b"], ["c", None]], 3, "null", "null", "BYTES expects a string"),
    ],
)
def test_wrong_element_types_name_the_tensor_index_and_value(
    datatype: str, data: list, index: int, shown: str, kind: str, expected: str
) -> None:
    count = len(data) * (len(data[0]) if isinstance(data[0], list) else 1)
    assert input_error(datatype, [count], data) == (
        f"input 'x': data element {index} (row-major flat index) is {shown}, {kind}; {expected}"
    )


def test_int_tensors_reject_fractional_numbers() -> None:
    assert input_error("INT64", [3], [1, 2.5, 3]) == (
        "input 'x': data element 1 (row-major flat index) is 2.5, which is not a whole number; "
        "INT64 expects an integer"
    )


@pytest.mark.parametrize(
    ("datatype", "data", "index", "shown", "bounds"),
    [
        ("UINT8", [1, 256], 1, "256", "0..255"),
        ("UINT8", [-1], 0, "-1", "0..255"),
        ("INT8", [-129.0], 0, "-129.0", "-128..127"),
        ("UINT64", [-1, 2**64 - 1], 0, "-1", "0..18446744073709551615"),
        (
            "INT64",
            [1, 2**63],
            1,
            "9223372036854775808",
            "-9223372036854775808..9223372036854775807",
        ),
        ("INT32", [1.0, 2**31], 1, "2147483648", "-2147483648..2147483647"),
        ("FP32", [1.0, -1e39], 1, "-1e+39", "magnitude at most 3.40282e+38"),
        ("FP16", [70000], 0, "70000", "magnitude at most 65504"),
    ],
)
def test_out_of_range_values_are_rejected(
    datatype: str, data: list, index: int, shown: str, bounds: str
) -> None:
    assert input_error(datatype, [len(data)], data) == (
        f"input 'x': data element {index} (row-major flat index) is {shown}, "
        f"which is out of range for {datatype} ({bounds})"
    )


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ([[1, 2], [3]], "data[1] has 1 elements but data[0] has 2"),
        ([[1, 2], 3], "data[1] is 3 but data[0] is an array"),
        ([1, [2, 3]], "data[1] is an array but data[0] is not"),
        ([[[1], [2]], [[3], [4, 5]]], "data[1][1] has 2 elements but data[0][0] has 1"),
        ([[[1], [2]], [[3], [[4]]]], "data[1][1][0] is an array but data[0][0][0] is not"),
    ],
)
def test_ragged_nested_data_is_rejected(data: list, detail: str) -> None:
    for datatype in ("FP64", "INT64", "BYTES", "BOOL"):
        assert input_error(datatype, [4], data) == (
            f"input 'x': 'data' is a ragged nested array ({detail}); expected a flat array or "
            "one nested in the tensor's shape"
        )


def test_duplicate_input_names() -> None:
    body = body_of(tensor("x", data=[1, 2]), tensor("y", data=[1, 2]), tensor("x", data=[3, 4]))
    assert error_of(body) == "duplicate input name 'x' (inputs[2]); names must be unique"


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"name": "y"}, "'outputs' must be an array of objects with a 'name', got an object"),
        (["y"], "outputs[0] must be an object with a 'name', got a string"),
        ([{"name": "y"}, {}], "outputs[1] has no 'name'; expected a non-empty string"),
        ([{"name": ""}], "outputs[0] has no 'name'; expected a non-empty string"),
        ([{"name": 4}], "outputs[0] has no 'name'; expected a non-empty string"),
        (
            [{"name": "y"}, {"name": "y"}],
            "duplicate output name 'y' (outputs[1]); names must be unique",
        ),
        (
            [{"name": "y", "parameters": {"binary_data": "yes"}}],
            "output 'y': parameters.binary_data must be true or false, got \"yes\"",
        ),
        (
            [{"name": "y", "parameters": []}],
            "output 'y': 'parameters' must be an object, got an array",
        ),
        (
            [{"name": "y", "parameters": {"classification": 2}}],
            "output 'y': the classification extension is not supported",
        ),
        (
            [{"name": "y", "parameters": {"shared_memory_region": "r"}}],
            "output 'y': the shared-memory extension is not supported",
        ),
    ],
)
def test_outputs_must_be_objects_with_names(outputs: Any, message: str) -> None:
    assert error_of(body_of(tensor(data=[1, 2]), outputs=outputs)) == message


def test_request_level_field_types() -> None:
    assert error_of(body_of(tensor(data=[1, 2]), id=42)) == "'id' must be a string, got an integer"
    assert error_of(body_of(tensor(data=[1, 2]), parameters=[1])) == (
        "'parameters' must be an object, got an array"
    )
    assert error_of(body_of(tensor(data=[1, 2]), parameters={"binary_data_output": 1})) == (
        "parameters.binary_data_output must be true or false, got 1"
    )
    assert error_of(body_of(tensor(data=[1, 2], parameters=3))) == (
        "input 'x': 'parameters' must be an object, got an integer"
    )
    shared = tensor(parameters={"shared_memory_region": "r", "shared_memory_byte_size": 16})
    assert error_of(body_of(shared)) == (
        "input 'x': the shared-memory extension is not supported; send the data in 'data' or "
        "as binary data"
    )


def test_absurd_nesting_and_rank_are_rejected() -> None:
    deep: Any = [1.0]
    for _ in range(70):
        deep = [deep]
    assert input_error("FP64", [1], deep) == (
        "input 'x': 'data' is nested more than 64 levels deep"
    )
    assert input_error("FP64", [1] * 65, [1.0]) == (
        "input 'x': 'shape' has 65 dimensions; at most 64 are supported"
    )


# --------------------------------------------------------------------------- binary decoding


def binary_body(header: dict, *chunks: bytes) -> tuple[bytes, int]:
    head = orjson.dumps(header)
    return head + b"".join(chunks), len(head)


@pytest.mark.parametrize("datatype", list(NUMERIC_DTYPES))
def test_tritonclient_binary_inputs_of_every_datatype(datatype: str) -> None:
    array = sample(datatype)
    body, header_length = client_request([("x", array, datatype, True)])
    assert header_length is not None
    decoded = decode_request(body, header_length).inputs[0]
    assert decoded.datatype == datatype
    assert decoded.shape == array.shape
    assert decoded.data.dtype == array.dtype
    assert decoded.data.dtype.isnative
    np.testing.assert_array_equal(decoded.data, array)


@pytest.mark.parametrize("datatype", list(NUMERIC_DTYPES))
def test_tritonclient_json_inputs_of_every_datatype(datatype: str) -> None:
    array = sample(datatype)
    body, header_length = client_request([("x", array, datatype, False)])
    assert header_length is None
    decoded = decode_request(body, header_length).inputs[0]
    assert decoded.data.dtype == array.dtype
    np.testing.assert_array_equal(decoded.data, array)


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_bytes_inputs(binary: bool) -> None:
    labels = np.array([["setosa", "versicolor"], ["", "straße ✓"]], dtype=object)
    body, header_length = client_request([("label", labels, "BYTES", binary)])
    decoded = decode_request(body, header_length).inputs[0]
    assert decoded.datatype == "BYTES"
    assert decoded.data.dtype == object
    assert decoded.data.tolist() == labels.tolist()
    assert all(type(item) is str for item in decoded.data.ravel())
    # bytes objects that are UTF-8 arrive as the same text
    raw = np.array([b"caf\xc3\xa9", b"x"], dtype=object)
    body, header_length = client_request([("label", raw, "BYTES", binary)])
    assert decode_request(body, header_length).inputs[0].data.tolist() == ["café", "x"]


def test_tritonclient_mixed_request_with_outputs_and_parameters() -> None:
    features = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    city = np.array(["lisbon", "berlin"], dtype=object)
    flags = np.array([True, False])
    counts = np.array([[3], [4]], dtype=np.int32)
    body, header_length = client_request(
        [
            ("features", features, "FP64", True),
            ("city", city, "BYTES", True),
            ("flags", flags, "BOOL", False),
            ("counts", counts, "INT32", True),
        ],
        outputs=[
            httpclient.InferRequestedOutput("label", binary_data=False),
            httpclient.InferRequestedOutput("proba", binary_data=True),
        ],
        request_id="abc-1",
        priority=3,
        parameters={"explain": "no"},
    )
    assert header_length is not None
    request = decode_request(body, header_length)
    assert request.id == "abc-1"
    by_name = {t.name: t for t in request.inputs}
    assert list(by_name) == ["features", "city", "flags", "counts"]
    np.testing.assert_array_equal(by_name["features"].data, features)
    assert by_name["city"].data.tolist() == ["lisbon", "berlin"]
    np.testing.assert_array_equal(by_name["flags"].data, flags)
    np.testing.assert_array_equal(by_name["counts"].data, counts)
    assert by_name["counts"].data.dtype == np.int32
    assert request.outputs == [RequestedOutput("label", False), RequestedOutput("proba", True)]
    assert request.binary_output_default is False
    assert request.parameters == {"priority": 3, "explain": "no"}
    assert request.binary_for("label") is False
    assert request.binary_for("proba") is True


def test_tritonclient_without_outputs_asks_for_binary_everywhere() -> None:
    body, header_length = client_request([("x", np.ones((1, 4)), "FP64", True)])
    request = decode_request(body, header_length)
    assert request.outputs is None
    assert request.binary_output_default is True
    assert request.binary_for("label") is True


def test_binary_views_are_contiguous_even_when_unaligned() -> None:
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    for pad in range(8):  # move the binary section across every alignment
        header = {"id": "p" * pad, "inputs": [tensor("x", "FP64", [2, 3])]}
        header["inputs"][0]["parameters"] = {"binary_data_size": 48}
        body, header_length = binary_body(header, array.tobytes())
        decoded = decode_request(body, header_length).inputs[0].data
        assert decoded.flags.c_contiguous
        assert decoded.flags.aligned
        np.testing.assert_array_equal(decoded, array)


def test_empty_binary_tensors() -> None:
    header = {
        "inputs": [
            tensor("x", "FP32", [0, 4], parameters={"binary_data_size": 0}),
            tensor("s", "BYTES", [0], parameters={"binary_data_size": 0}),
        ]
    }
    body, header_length = binary_body(header)
    x, s = decode_request(body, header_length).inputs
    assert x.data.shape == (0, 4)
    assert x.data.dtype == np.float32
    assert s.data.shape == (0,)
    assert s.data.dtype == object


def test_header_length_that_covers_the_whole_body_means_json_only() -> None:
    body = body_of(tensor(data=[1, 2]))
    decoded = decode_request(body, len(body)).inputs[0]
    np.testing.assert_array_equal(decoded.data, np.array([1.0, 2.0]))


def binary_error(parameters: dict, datatype: str, shape: list[int], *chunks: bytes) -> str:
    body, header_length = binary_body(
        {"inputs": [tensor("x", datatype, shape, parameters=parameters)]}, *chunks
    )
    return error_of(body, header_length)


def test_binary_size_must_match_the_datatype_element_size() -> None:
    assert binary_error({"binary_data_size": 12}, "FP64", [2], b"\0" * 12) == (
        "input 'x': parameters.binary_data_size is 12 bytes but shape [2] of FP64 needs "
        "16 bytes (2 elements of 8 bytes)"
    )
    assert binary_error({"binary_data_size": 2}, "BOOL", [3], b"\0" * 2) == (
        "input 'x': parameters.binary_data_size is 2 bytes but shape [3] of BOOL needs "
        "3 bytes (3 elements of 1 byte)"
    )


def test_binary_size_must_fit_in_the_body() -> None:
    assert binary_error({"binary_data_size": 16}, "FP64", [2], b"\0" * 10) == (
        "input 'x': parameters.binary_data_size is 16 bytes but only 10 bytes of binary data "
        "remain in the request body"
    )
    assert binary_error({"binary_data_size": 9}, "BYTES", [1], b"\1\0\0\0a") == (
        "input 'x': parameters.binary_data_size is 9 bytes but only 5 bytes of binary data "
        "remain in the request body"
    )


def test_binary_bytes_beyond_the_declared_sizes_are_rejected() -> None:
    assert binary_error({"binary_data_size": 8}, "FP64", [1], b"\0" * 8, b"extra") == (
        "the request body has 13 bytes of binary data after the inference header but the "
        "inputs' parameters.binary_data_size add up to 8"
    )


@pytest.mark.parametrize("size", [-1, 1.5, "8", True])
def test_binary_size_must_be_a_non_negative_integer(size: Any) -> None:
    assert binary_error({"binary_data_size": size}, "FP64", [1], b"\0" * 8) == (
        "input 'x': parameters.binary_data_size must be a non-negative integer, "
        f"got {orjson.dumps(size).decode()}"
    )


def test_binary_input_needs_the_header_and_no_json_data() -> None:
    body = body_of(tensor("x", "FP64", [1], parameters={"binary_data_size": 8}))
    assert error_of(body + b"\0" * 8).startswith("the request body is not valid JSON")
    assert error_of(body) == (
        "input 'x' declares parameters.binary_data_size but the request has no "
        "Inference-Header-Content-Length header, so the body holds no binary data"
    )
    both = tensor("x", "FP64", [1], data=[1.0], parameters={"binary_data_size": 8})
    body, header_length = binary_body({"inputs": [both]}, b"\0" * 8)
    assert error_of(body, header_length) == (
        "input 'x' has both 'data' and parameters.binary_data_size; send one of them"
    )


def test_bool_binary_bytes_must_be_zero_or_one() -> None:
    assert binary_error({"binary_data_size": 3}, "BOOL", [3], b"\x01\x00\x02") == (
        "input 'x': BOOL binary element 2 is the byte 2; expected 0 or 1"
    )


def test_bytes_binary_framing_errors() -> None:
    def chunk(*items: bytes) -> bytes:
        return b"".join(struct.pack("<I", len(item)) + item for item in items)

    good = chunk(b"ab", b"c")
    assert binary_error({"binary_data_size": len(good)}, "BYTES", [3], good) == (
        "input 'x': BYTES binary data (11 bytes) ends before element 2 of the 3 that shape [3] "
        "requires"
    )
    lying = struct.pack("<I", 50) + b"abc"
    assert binary_error({"binary_data_size": 7}, "BYTES", [1], lying) == (
        "input 'x': BYTES element 0 declares 50 bytes but only 3 remain in its "
        "binary_data_size of 7"
    )
    assert binary_error({"binary_data_size": len(good)}, "BYTES", [1], good) == (
        "input 'x': parameters.binary_data_size is 11 bytes but the 1 BYTES elements of "
        "shape [1] use 6"
    )
    torn = chunk(b"ab") + b"\x01\x00"
    assert binary_error({"binary_data_size": len(torn)}, "BYTES", [2], torn) == (
        "input 'x': BYTES binary data (8 bytes) ends before element 1 of the 2 that shape [2] "
        "requires"
    )


def test_bytes_binary_must_be_utf8_text() -> None:
    raw = np.array([b"ok", b"\xff\xfe"], dtype=object)
    body, header_length = client_request([("x", raw, "BYTES", True)])
    assert error_of(body, header_length) == (
        "input 'x': BYTES element 1 is not valid UTF-8 (invalid start byte at byte 0); "
        "this server accepts text only"
    )


def test_header_length_errors() -> None:
    body, header_length = client_request([("x", np.ones(2), "FP64", True)])
    assert error_of(body, len(body) + 1) == (
        f"the Inference-Header-Content-Length header is {len(body) + 1} but the request body "
        f"has only {len(body)} bytes"
    )
    assert error_of(body, 0).startswith(
        "raw binary requests (Inference-Header-Content-Length: 0) are not supported"
    )
    assert error_of(body, -3) == (
        "the Inference-Header-Content-Length header must be a non-negative integer, got -3"
    )
    assert error_of(body, header_length - 1).startswith(
        f"the inference header (the first {header_length - 1} bytes of the body) is not "
        "valid JSON: "
    )
    assert error_of(body, header_length + 4).startswith(
        f"the inference header (the first {header_length + 4} bytes of the body) is not "
        "valid JSON: "
    )


def test_parse_header_length() -> None:
    assert parse_header_length(None) is None
    assert parse_header_length("318") == 318
    assert parse_header_length(" 0 ") == 0
    for bad in ("", "abc", "-1", "1.5", "²"):
        with pytest.raises(V2CodecError) as info:
            parse_header_length(bad)
        assert str(info.value) == (
            "the Inference-Header-Content-Length header must be a non-negative integer byte "
            f"count, got {bad!r}"
        )


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("datatype", list(NUMERIC_DTYPES))
def test_tritonclient_reads_every_numeric_output(datatype: str, binary: bool) -> None:
    array = sample(datatype)
    body, header_length = encode_response(
        model_name="m",
        model_version="3",
        request_id="r",
        outputs=[OutputTensor("y", datatype, array.shape, array)],
        binary=[binary],
    )
    assert (header_length is not None) == binary
    result = client_result(body, header_length)
    decoded = result.as_numpy("y")
    assert decoded.dtype == array.dtype
    np.testing.assert_array_equal(decoded, array)
    output = result.get_output("y")
    assert output["datatype"] == datatype
    assert output["shape"] == [3, 2]
    if binary:
        assert output["parameters"] == {"binary_data_size": array.nbytes}
        assert "data" not in output
    else:
        assert "parameters" not in output
        assert len(output["data"]) == 6  # flat, row-major


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_string_class_labels(binary: bool) -> None:
    labels = ["setosa", "versicolor", "", "straße ✓"]
    for array in (
        np.array(labels),  # numpy str_ ('<U')
        np.array(labels, dtype=object),
        np.array([s.encode() for s in labels], dtype=object),
    ):
        body, header_length = encode_response(
            model_name="iris",
            model_version=None,
            request_id=None,
            outputs=[OutputTensor("label", "BYTES", (2, 2), array.reshape(2, 2))],
            binary=[binary],
        )
        decoded = client_result(body, header_length).as_numpy("label")
        assert decoded.shape == (2, 2)
        expected = [s.encode() for s in labels] if binary else labels
        assert decoded.ravel().tolist() == expected


def test_fixed_width_bytes_arrays_encode_as_text() -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=[OutputTensor("s", "BYTES", (2,), np.array([b"no", b"yes"]))],
        binary=[False],
    )
    assert header_length is None
    assert orjson.loads(body)["outputs"][0]["data"] == ["no", "yes"]


def test_mixed_binary_and_json_response() -> None:
    proba = np.array([[0.9, 0.1], [0.25, 0.75]])
    label = np.array(["no", "yes"], dtype=object)
    body, header_length = encode_response(
        model_name="churn",
        model_version="2",
        request_id="req-9",
        outputs=[
            OutputTensor("label", "BYTES", (2,), label),
            OutputTensor("proba", "FP64", (2, 2), proba),
            OutputTensor("flag", "BOOL", (2,), np.array([True, False])),
        ],
        binary=[False, True, True],
        parameters={"cached": False},
    )
    assert header_length is not None
    header = orjson.loads(body[:header_length])
    assert header == {
        "model_name": "churn",
        "model_version": "2",
        "id": "req-9",
        "parameters": {"cached": False},
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["no", "yes"]},
            {
                "name": "proba",
                "datatype": "FP64",
                "shape": [2, 2],
                "parameters": {"binary_data_size": 32},
            },
            {
                "name": "flag",
                "datatype": "BOOL",
                "shape": [2],
                "parameters": {"binary_data_size": 2},
            },
        ],
    }
    assert body[header_length:] == proba.tobytes() + b"\x01\x00"
    result = client_result(body, header_length)
    assert result.as_numpy("label").tolist() == ["no", "yes"]
    np.testing.assert_array_equal(result.as_numpy("proba"), proba)
    np.testing.assert_array_equal(result.as_numpy("flag"), np.array([True, False]))


def test_pure_json_response_is_exactly_the_spec_object() -> None:
    body, header_length = encode_response(
        model_name="iris",
        model_version=None,
        request_id=None,
        outputs=[OutputTensor("proba", "FP32", (1, 3), np.array([[0.5, 0.25, 0.25]]))],
        binary=[False],
    )
    assert header_length is None
    assert body == (
        b'{"model_name":"iris","outputs":[{"name":"proba","datatype":"FP32","shape":[1,3],'
        b'"data":[0.5,0.25,0.25]}]}'
    )


def test_outputs_are_sent_in_their_declared_datatype_and_logical_order() -> None:
    transposed = np.arange(6, dtype=np.float64).reshape(2, 3).T  # not C-contiguous
    big_endian = np.array([1, 2, 3], dtype=">i4")
    body, header_length = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=[
            OutputTensor("t", "FP32", (3, 2), transposed),
            OutputTensor("b", "INT32", (3,), big_endian),
            OutputTensor("j", "FP32", (3, 2), transposed),
        ],
        binary=[True, True, False],
    )
    result = client_result(body, header_length)
    assert result.as_numpy("t").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("t"), transposed.astype(np.float32))
    np.testing.assert_array_equal(result.as_numpy("b"), np.array([1, 2, 3], dtype=np.int32))
    np.testing.assert_array_equal(result.as_numpy("j"), transposed)
    assert result.get_output("j")["data"] == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_empty_and_scalar_outputs() -> None:
    body, header_length = encode_response(
        model_name="m",
        model_version=None,
        request_id=None,
        outputs=[
            OutputTensor("e", "FP64", (0, 3), np.empty((0, 3))),
            OutputTensor("s", "INT64", (), np.array(7)),
            OutputTensor("n", "BYTES", (0,), np.array([], dtype=object)),
        ],
        binary=[True, False, True],
    )
    result = client_result(body, header_length)
    assert result.as_numpy("e").shape == (0, 3)
    assert result.as_numpy("s").shape == ()
    assert result.as_numpy("s").item() == 7
    assert result.as_numpy("n").shape == (0,)


def test_encode_rejects_server_side_mistakes() -> None:
    good = OutputTensor("y", "FP64", (2,), np.zeros(2))

    def encode(outputs: list[OutputTensor], binary: list[bool]) -> None:
        encode_response(
            model_name="m", model_version=None, request_id=None, outputs=outputs, binary=binary
        )

    with pytest.raises(ValueError, match="got 1 outputs but 2 binary flags"):
        encode([good], [True, False])
    with pytest.raises(ValueError, match="unknown datatype 'FP128'"):
        encode([OutputTensor("y", "FP128", (2,), np.zeros(2))], [False])
    with pytest.raises(ValueError, match=r"has 2 elements but shape \[3\] needs 3"):
        encode([OutputTensor("y", "FP64", (3,), np.zeros(2))], [False])
    with pytest.raises(ValueError, match="cannot send a float64 array as INT64"):
        encode([OutputTensor("y", "INT64", (2,), np.zeros(2))], [True])
    with pytest.raises(ValueError, match="cannot send a <U1 array as FP64"):
        encode([OutputTensor("y", "FP64", (2,), np.array(["a", "b"]))], [False])
    with pytest.raises(ValueError, match="cannot send a float64 array as BYTES"):
        encode([OutputTensor("y", "BYTES", (2,), np.zeros(2))], [False])
    with pytest.raises(ValueError, match="BYTES element 1 is int; expected str or bytes"):
        encode([OutputTensor("y", "BYTES", (2,), np.array(["a", 3], dtype=object))], [True])
    with pytest.raises(ValueError, match="BYTES element 0 is not valid UTF-8"):
        encode([OutputTensor("y", "BYTES", (1,), np.array([b"\xff"], dtype=object))], [False])


def test_decode_then_encode_round_trip_through_tritonclient() -> None:
    features = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    body, header_length = client_request(
        [("features", features, "FP32", True)],
        outputs=[
            httpclient.InferRequestedOutput("echo", binary_data=True),
            httpclient.InferRequestedOutput("label", binary_data=False),
        ],
        request_id="rt",
    )
    request = decode_request(body, header_length)
    echoed = request.inputs[0].data
    names = [o.name for o in request.outputs or []]
    outputs = [
        OutputTensor("echo", datatype_of(echoed), echoed.shape, echoed),
        OutputTensor("label", "BYTES", (2,), np.array(["setosa", "virginica"])),
    ]
    response, response_header_length = encode_response(
        model_name="iris",
        model_version="1",
        request_id=request.id,
        outputs=outputs,
        binary=[request.binary_for(name) for name in names],
    )
    result = client_result(response, response_header_length)
    assert result.get_response()["id"] == "rt"
    assert result.get_response()["model_version"] == "1"
    np.testing.assert_array_equal(result.as_numpy("echo"), features)
    assert result.as_numpy("echo").dtype == np.float32
    assert result.as_numpy("label").tolist() == ["setosa", "virginica"]


# --------------------------------------------------------------------------- datatype_of


@pytest.mark.parametrize(("datatype", "dtype"), list(NUMERIC_DTYPES.items()))
def test_datatype_of_numeric_dtypes(datatype: str, dtype: Any) -> None:
    assert datatype_of(np.zeros(1, dtype=dtype)) == datatype


def test_datatype_of_text_and_foreign_byte_order() -> None:
    assert datatype_of(np.array(["a"])) == "BYTES"
    assert datatype_of(np.array([b"a"])) == "BYTES"
    assert datatype_of(np.array(["a", None], dtype=object)) == "BYTES"
    assert datatype_of(np.zeros(1, dtype=">f8")) == "FP64"
    assert datatype_of(np.zeros(1, dtype=">u2")) == "UINT16"


@pytest.mark.parametrize("dtype", [np.complex128, "datetime64[s]", np.longdouble, "V4"])
def test_datatype_of_rejects_dtypes_v2_cannot_carry(dtype: Any) -> None:
    if np.dtype(dtype) == np.float64:  # platforms where longdouble is just double
        pytest.skip("longdouble is float64 here")
    with pytest.raises(ValueError, match="has no Open Inference Protocol datatype"):
        datatype_of(np.zeros(1, dtype=dtype))


def test_decoding_is_cheap_enough_to_repeat() -> None:
    """Sanity, not a benchmark: a thousand small decodes finish and agree."""
    body = body_of(tensor("x", "FP64", [2, 4], data=[[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]))
    first = decode_request(body, None).inputs[0].data
    for _ in range(1000):
        np.testing.assert_array_equal(decode_request(body, None).inputs[0].data, first)


def test_oversized_shapes_are_refused_before_any_allocation() -> None:
    assert input_error("FP64", [0, 2**62], []) == (
        "input 'x': shape [0, 4611686018427387904] is too large (over 2**60 elements, counting "
        "only non-zero dimensions)"
    )
    assert input_error("FP64", [2**31, 2**31], [1.0]) == (
        "input 'x': shape [2147483648, 2147483648] is too large (over 2**60 elements, counting "
        "only non-zero dimensions)"
    )


def test_mutated_requests_fail_only_with_v2_codec_errors() -> None:
    """Seeded fuzzing: corrupting a valid body yields a request or a V2CodecError, nothing else."""
    rng = np.random.default_rng(20240611)
    body, header_length = client_request(
        [
            ("features", np.arange(8, dtype=np.float32).reshape(2, 4), "FP32", True),
            ("city", np.array(["a", "bc"], dtype=object), "BYTES", True),
            ("flags", np.array([True, False]), "BOOL", True),
            ("ids", np.array([[1, 2]], dtype=np.int64), "INT64", False),
        ],
        outputs=[httpclient.InferRequestedOutput("y", binary_data=True)],
    )
    assert header_length is not None
    replacements = [b"-1", b"1.5", b"true", b'"x"', b"null", b"[]", b"{}", b"[[1],[2,3]]", b"0"]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(1500):
        mutated = bytearray(body)
        length: int | None = header_length
        choice = rng.integers(5)
        if choice == 0:  # flip a byte anywhere
            position = int(rng.integers(len(mutated)))
            mutated[position] = int(rng.integers(256))
        elif choice == 1:  # truncate
            del mutated[int(rng.integers(len(mutated))) :]
        elif choice == 2:  # replace a JSON token in the header
            position = int(rng.integers(header_length))
            token = replacements[int(rng.integers(len(replacements)))]
            mutated[position : position + int(rng.integers(1, 6))] = token
            length = header_length + len(mutated) - len(body)
        elif choice == 3:  # lie about the header length
            length = int(rng.integers(0, len(mutated) + 5))
        else:  # append junk
            mutated += bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        try:
            decode_request(bytes(mutated), length)
        except V2CodecError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
    assert outcomes["error"] > 500
