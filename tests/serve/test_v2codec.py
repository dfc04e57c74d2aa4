"""The KServe v2 tensor codec: round trips for every datatype (JSON and binary), tritonclient's own
request and response handling against it, and malformed requests each refused with its reason."""

from __future__ import annotations

import json
import random
import struct
from typing import Any

import numpy as np
import pytest

from deploykit.errors import DeployKitError, InvalidArgument
from deploykit.serve import v2codec
from deploykit.serve.v2codec import BadRequest, OutputNotEncodable, decode_request, encode_response

LIMIT = 1_000_000

#: One array per datatype, with the values at each type's edges (NaN and infinities for floats).
SAMPLES: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{name: np.array([np.iinfo(dt).min, 0, 1, np.iinfo(dt).max], dtype=dt)
       for name, dt in [("UINT8", np.uint8), ("UINT16", np.uint16), ("UINT32", np.uint32),
                        ("UINT64", np.uint64), ("INT8", np.int8), ("INT16", np.int16),
                        ("INT32", np.int32), ("INT64", np.int64)]},
    **{name: np.array([[0.5, -1.25, np.finfo(dt).max], [np.nan, np.inf, -np.inf]], dtype=dt)
       for name, dt in [("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64)]},
    "BYTES": np.array([b"", b"a", "h\u00e9llo".encode(), b"x" * 300], dtype=object).reshape(2, 2),
}


def tensor_entry(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """A request's entry for ``array`` and the raw bytes that follow the JSON when ``binary``."""
    datatype = v2codec.datatype_of(array.dtype)
    entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
    if not binary:
        flat = array.ravel().tolist()
        entry["data"] = [x.decode() for x in flat] if datatype == "BYTES" else flat
        return entry, b""
    if datatype == "BYTES":
        raw = b"".join(struct.pack("<I", len(x)) + x for x in array.ravel())
    else:
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return entry, raw


def request_body(request: dict[str, Any], tail: bytes = b"") -> tuple[bytes, int | None]:
    header = json.dumps(request).encode()
    return header + tail, (len(header) if tail else None)


def response_as_request(body: bytes, header_length: int | None) -> v2codec.InferRequest:
    """Read a response back with the request decoder (its tensors have the same form)."""
    cut = len(body) if header_length is None else header_length
    response = json.loads(body[:cut])
    header = json.dumps({"inputs": response["outputs"]}).encode()
    rest = body[cut:]
    return decode_request(header + rest, len(header) if rest else None, max_elements=LIMIT)


def assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    if expected.dtype == object:
        assert got.dtype == object and list(got.ravel()) == list(expected.ravel())
    else:
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)  # NaN == NaN here


# ---------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_request_and_response_round_trip(datatype: str, binary: bool) -> None:
    array = SAMPLES[datatype]
    entry, tail = tensor_entry("x", array, binary)
    body, header = request_body({"id": "r-1", "inputs": [entry]}, tail)
    request = decode_request(body, header, max_elements=LIMIT)
    assert request.id == "r-1" and request.datatypes == {"x": datatype}
    assert_same(request.inputs["x"], array)
    out, out_header = encode_response("m", "2", "r-1", {"y": array}, binary)
    assert (out_header is not None) == binary
    assert json.loads(out[:out_header])["model_version"] == "2"
    assert_same(response_as_request(out, out_header).inputs["y"], array)


def test_nested_and_flat_data_are_the_same_tensor() -> None:
    flat = {"name": "x", "shape": [2, 2, 2], "datatype": "INT32", "data": list(range(8))}
    nested = dict(flat, data=[[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    half = dict(flat, data=[[0, 1, 2, 3], [4, 5, 6, 7]])  # nested differently: row-major all the same
    arrays = [decode_request(request_body({"inputs": [e]})[0], None, max_elements=LIMIT).inputs["x"]
              for e in (flat, nested, half)]
    for array in arrays:
        assert_same(array, np.arange(8, dtype=np.int32).reshape(2, 2, 2))


def test_several_binary_inputs_take_their_bytes_in_order_and_mix_with_json() -> None:
    a, b, c = np.arange(3, dtype=np.int16), np.ones((2, 2), np.float64), np.array([b"q", b"rs"], object)
    entries = [tensor_entry("a", a, True), tensor_entry("j", SAMPLES["BOOL"], False),
               tensor_entry("b", b, True), tensor_entry("c", c, True)]
    body, header = request_body({"inputs": [e for e, _ in entries]}, b"".join(t for _, t in entries))
    inputs = decode_request(body, header, max_elements=LIMIT).inputs
    assert list(inputs) == ["a", "j", "b", "c"]
    for name, expected in zip(inputs, (a, SAMPLES["BOOL"], b, c)):
        assert_same(inputs[name], expected)


def test_binary_inputs_are_read_only_views_of_the_body() -> None:
    entry, tail = tensor_entry("x", np.arange(4, dtype=np.float32), True)
    body, header = request_body({"inputs": [entry]}, tail)
    array = decode_request(body, header, max_elements=LIMIT).inputs["x"]
    assert not array.flags.writeable


def test_empty_tensors_in_json_and_binary() -> None:
    for binary in (False, True):
        for datatype in ("FP32", "BYTES"):
            empty = np.empty((0, 3), dtype=v2codec.DATATYPES[datatype])
            entry, tail = tensor_entry("x", empty, binary)
            got = decode_request(*request_body({"inputs": [entry]}, tail), max_elements=LIMIT).inputs["x"]
            assert got.shape == (0, 3)


@pytest.mark.parametrize("request_fields, expected", [
    ({}, False),
    ({"parameters": {"binary_data_output": True}}, True),
    ({"outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": True}}]}, {"b"}),
    ({"parameters": {"binary_data_output": True},
      "outputs": [{"name": "a"}, {"name": "b", "parameters": {"binary_data": False}}]}, {"a"}),
    ({"outputs": []}, set()),
])
def test_which_outputs_go_binary(request_fields: dict[str, Any], expected: set[str] | bool) -> None:
    entry = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}
    request = decode_request(request_body({"inputs": [entry], **request_fields})[0], None, max_elements=LIMIT)
    assert request.binary_outputs == expected
    if "outputs" in request_fields:
        assert request.outputs == [o["name"] for o in request_fields["outputs"]]
    else:
        assert request.outputs is None


def test_response_sends_only_the_named_outputs_as_binary_in_order() -> None:
    outputs = {"a": np.arange(3, dtype=np.int64), "b": np.array([[1.5]], np.float32),
               "c": np.array(["text", "more"])}  # a unicode array goes as BYTES
    body, header = encode_response("m", None, None, outputs, {"b", "c"})
    assert header is not None
    meta = json.loads(body[:header])
    assert "model_version" not in meta and "id" not in meta
    assert [o["name"] for o in meta["outputs"]] == ["a", "b", "c"]
    assert meta["outputs"][0]["data"] == [0, 1, 2]
    back = response_as_request(body, header).inputs
    assert_same(back["c"], np.array([b"text", b"more"], dtype=object))
    assert_same(back["b"], outputs["b"])


def test_all_json_response_has_no_header_length_and_is_plain_json() -> None:
    body, header = encode_response("m", "1", "id-7", {"y": np.array([1.0, 2.0])}, False)
    assert header is None
    assert json.loads(body) == {"model_name": "m", "model_version": "1", "id": "id-7",
                                "outputs": [{"name": "y", "datatype": "FP64", "shape": [2],
                                             "data": [1.0, 2.0]}]}


def test_outputs_the_protocol_cannot_carry() -> None:
    with pytest.raises(OutputNotEncodable, match=r"dtype complex64 has no KServe v2 datatype"):
        encode_response("m", "1", None, {"y": np.zeros(2, np.complex64)}, False)
    with pytest.raises(OutputNotEncodable, match=r"output 'y': BYTES elements that are not UTF-8"):
        encode_response("m", "1", None, {"y": np.array([b"\xff"], dtype=object)}, False)
    with pytest.raises(OutputNotEncodable, match=r"BYTES output holds a int, expected bytes or str"):
        encode_response("m", "1", None, {"y": np.array([3], dtype=object)}, True)
    # but non-UTF-8 bytes are fine in binary
    body, header = encode_response("m", "1", None, {"y": np.array([b"\xff"], dtype=object)}, True)
    assert response_as_request(body, header).inputs["y"][0] == b"\xff"
    assert issubclass(OutputNotEncodable, DeployKitError)
    assert not issubclass(OutputNotEncodable, InvalidArgument)  # the server's fault: not a 400


def test_error_body() -> None:
    assert json.loads(v2codec.error_body('input "x": bad \u00e9')) == {"error": 'input "x": bad \u00e9'}


def test_header_length_from_the_http_header() -> None:
    assert v2codec.parse_header_length(None) is None
    assert v2codec.parse_header_length(" 42 ") == 42
    for bad in ("", "-1", "4.0", "abc", "9" * 40):
        with pytest.raises(BadRequest, match="Inference-Header-Content-Length: got"):
            v2codec.parse_header_length(bad)


def test_huge_declared_shapes_are_refused_before_allocating() -> None:
    for shape in ([2**62, 2**62], [0, 2**62], [10**6, 10**6]):
        entry = {"name": "x", "shape": shape, "datatype": "FP64", "data": []}
        with pytest.raises(BadRequest, match=r"input 'x': shape .* declares \d+ elements, over the limit"):
            decode_request(request_body({"inputs": [entry]})[0], None, max_elements=LIMIT)


def test_the_element_limit_counts_all_inputs_together() -> None:
    entries = [{"name": n, "shape": [3], "datatype": "INT8", "data": [1, 2, 3]} for n in "abc"]
    body = request_body({"inputs": entries})[0]
    assert len(decode_request(body, None, max_elements=9).inputs) == 3
    with pytest.raises(BadRequest, match=r"input 'c': .* over the limit of 8 per request \(6 taken"):
        decode_request(body, None, max_elements=8)


# ------------------------------------------------------------------------------------- tritonclient

def _client() -> Any:
    return pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_requests_decode(binary: bool) -> None:
    th = _client()
    inputs = []
    for datatype, array in SAMPLES.items():
        tensor = th.InferInput(datatype.lower(), list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    outputs = [th.InferRequestedOutput("y", binary_data=False), th.InferRequestedOutput("z")]
    body, header = th.InferenceServerClient.generate_request_body(inputs, outputs=outputs, request_id="abc")
    assert (header is not None) == binary
    request = decode_request(body, header, max_elements=LIMIT)
    assert request.id == "abc" and request.outputs == ["y", "z"]
    assert request.binary_outputs == {"z"}  # tritonclient's default: binary_data=True
    for datatype, array in SAMPLES.items():
        assert_same(request.inputs[datatype.lower()], array)


def test_tritonclient_default_request_asks_for_binary_outputs() -> None:
    th = _client()
    tensor = th.InferInput("x", [2], "FP32")
    tensor.set_data_from_numpy(np.array([1.0, 2.0], np.float32))  # default: binary
    body, header = th.InferenceServerClient.generate_request_body([tensor])
    request = decode_request(body, header, max_elements=LIMIT)
    assert request.id is None and request.outputs is None and request.binary_outputs is True


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_reads_responses(binary: bool) -> None:
    th = _client()
    outputs = {d.lower(): a for d, a in SAMPLES.items()}
    body, header = encode_response("model", "3", "req", outputs, binary)
    result = th.InferenceServerClient.parse_response_body(body, header_length=header)
    response = result.get_response()
    assert response["model_name"] == "model" and response["id"] == "req"
    for name, array in outputs.items():
        got = result.as_numpy(name)
        if array.dtype == object and not binary:  # the client reads JSON BYTES as str
            got = np.array([x.encode() for x in got.ravel()], dtype=object).reshape(got.shape)
        assert_same(got, array)


def test_tritonclient_reads_error_bodies() -> None:
    th = _client()
    body = v2codec.error_body("input 'x': bad")
    assert json.loads(body)["error"] == "input 'x': bad"
    assert th.InferenceServerClient.parse_response_body(body).get_response() == {"error": "input 'x': bad"}


# ------------------------------------------------------------------------------------------ malformed

def _inp(**fields: Any) -> dict[str, Any]:
    """A request with one input, valid except for ``fields`` (a value of None removes the field)."""
    entry = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0], **fields}
    return {"inputs": [{k: v for k, v in entry.items() if v is not None}]}


def _j(request: Any) -> bytes:
    return json.dumps(request).encode()


def _bin(size: int, tail: bytes, datatype: str = "FP32", shape: list[int] | None = None,
         extra: bytes = b"") -> tuple[bytes, int]:
    header = _j({"inputs": [{"name": "x", "shape": shape or [2], "datatype": datatype,
                             "parameters": {"binary_data_size": size}}]})
    return header + tail + extra, len(header)


def _nest(depth: int) -> Any:
    data: Any = [1]
    for _ in range(depth - 1):
        data = [data]
    return data


def _item(raw: bytes) -> bytes:
    return struct.pack("<I", len(raw)) + raw


B8 = b"\0" * 8
MALFORMED: list[tuple[str, bytes, int | None, str]] = [
    ("empty body", b"", None, r"request: invalid JSON"),
    ("not JSON", b"{inputs:", None, r"request: invalid JSON"),
    ("not UTF-8", b'{"inputs": "\xff\xfe"}', None, r"request: invalid JSON"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, None, r"request: JSON nested too deeply"),
    ("a JSON array", b"[1, 2]", None, r"request: got a JSON array, expected an object"),
    ("a JSON string", b'"hi"', None, r"request: got a JSON string"),
    ("no inputs", _j({"id": "1"}), None, r"request: missing field 'inputs'"),
    ("inputs an object", _j({"inputs": {}}), None,
     r"request: field 'inputs' is a JSON object, expected a JSON array"),
    ("id a number", _j({"id": 3, "inputs": []}), None,
     r"request: field 'id' is a JSON number, expected a JSON string"),
    ("parameters a list", _j({"parameters": [], "inputs": []}), None, r"field 'parameters' is a JSON array"),
    ("binary_data_output a string", _j({"parameters": {"binary_data_output": "yes"}, "inputs": []}), None,
     r"request: parameter 'binary_data_output' is a JSON string, expected a JSON boolean"),
    ("input not an object", _j({"inputs": [3]}), None, r"inputs\[0\]: got a JSON number, expected an object"),
    ("input without name", _j(_inp(name=None)), None,
     r"inputs\[0\]: field 'name' is nothing, expected a non-empty"),
    ("input name a number", _j(_inp(name=5)), None, r"inputs\[0\]: field 'name' is a JSON number"),
    ("long name cut short", _j(_inp(name="n" * 10_000, data=[1.0])), None,
     r"^input 'n{77}\.\.\.': 'data' has 1"),
    ("input name empty", _j(_inp(name="")), None,
     r"inputs\[0\]: field 'name' is a JSON string, expected a non-empty"),
    ("duplicate input", _j({"inputs": _inp()["inputs"] * 2}), None, r"inputs\[1\]: name 'x' appears twice"),
    ("no datatype", _j(_inp(datatype=None)), None,
     r"input 'x': datatype missing, expected one of BOOL, UINT8"),
    ("unknown datatype", _j(_inp(datatype="FLOAT32")), None,
     r"input 'x': datatype 'FLOAT32', expected one of"),
    ("lower-case datatype", _j(_inp(datatype="fp32")), None, r"input 'x': datatype 'fp32'"),
    ("datatype a number", _j(_inp(datatype=1)), None, r"input 'x': datatype 1, expected"),
    ("datatype a list", _j(_inp(datatype=["FP32"])), None, r"input 'x': datatype \['FP32'\], expected"),
    ("binary size missing its header", *_bin(8, b""),
     r"only 0 bytes .* \(is the Inference-Header-Content-Length"),
    ("no shape", _j(_inp(shape=None)), None, r"input 'x': shape missing, expected a list"),
    ("shape a number", _j(_inp(shape=2)), None,
     r"input 'x': shape 2, expected a list of at most 32 non-negative"),
    ("negative dim", _j(_inp(shape=[-1, 2])), None, r"input 'x': shape \[-1, 2\], expected"),
    ("float dim", _j(_inp(shape=[2.0])), None, r"input 'x': shape \[2.0\], expected"),
    ("bool dim", _j(_inp(shape=[True, 2])), None, r"input 'x': shape \[true, 2\], expected"),
    ("string dim", _j(_inp(shape=["2"])), None, r"input 'x': shape \[\"2\"\]"),
    ("rank 33", _j(_inp(shape=[1] * 33)), None,
     r"input 'x': shape \[1, 1, .*\.\.\., expected a list of at most 32"),
    ("huge shape", _j(_inp(shape=[2**40, 2**40])), None,
     r"input 'x': shape .* declares 1208925819614629174706176 elements, over the limit of 1000000"),
    ("parameters a string", _j(_inp(parameters="p")), None,
     r"input 'x': field 'parameters' is a JSON string"),
    ("no data", _j(_inp(data=None)), None, r"input 'x': missing field 'data'"),
    ("data a number", _j(_inp(data=1.0)), None, r"input 'x': 'data' is a JSON number, expected an array"),
    ("data a string", _j(_inp(data="1,2")), None, r"input 'x': 'data' is a JSON string, expected an array"),
    ("too few", _j(_inp(data=[1.0])), None, r"input 'x': 'data' has 1 elements, expected 2"),
    ("too many", _j(_inp(data=[1.0, 2.0, 3.0])), None, r"'data' has 3 elements, expected 2"),
    ("ragged", _j(_inp(shape=[2, 2], data=[[1.0, 2.0], 3.0, 4.0])), None, r"'data' mixes arrays and values"),
    ("nested too deep", _j(_inp(shape=[1], data=_nest(33))), None, r"'data' is nested deeper than 32 levels"),
    ("string in FP32", _j(_inp(data=[1.0, "2"])), None,
     r"'data' holds number, string values, expected numbers"),
    ("null in FP32", _j(_inp(data=[1.0, None])), None, r"'data' holds null, number values, expected numbers"),
    ("bool in FP32", _j(_inp(data=[1.0, True])), None, r"'data' holds boolean, number values"),
    ("NaN in INT32", b'{"inputs":[{"name":"x","shape":[2],"datatype":"INT32","data":[1,NaN]}]}', None,
     r"'data' holds number values, expected integers for INT32"),
    ("float in INT64", _j(_inp(datatype="INT64", data=[1, 2.5])), None, r"expected integers for INT64"),
    ("int past INT8", _j(_inp(datatype="INT8", data=[1, 128])), None,
     r"value 128 does not fit INT8 \(from -128 to 127\)"),
    ("negative UINT16", _j(_inp(datatype="UINT16", data=[-1, 0])), None, r"value -1 does not fit UINT16"),
    ("past UINT64", _j(_inp(datatype="UINT64", data=[2**64, 0])), None,
     r"value 18446744073709551616 does not fit"),
    ("past FP16", _j(_inp(datatype="FP16", data=[1.0, 70000.0])), None, r"value 70000 does not fit FP16"),
    ("past FP32", _j(_inp(data=[1e39, 0])), None, r"value 1e\+39 does not fit FP32"),
    ("int past FP64", _j(_inp(datatype="FP64", data=[10**400, 0])), None, r"a value does not fit FP64"),
    ("int in BOOL", _j(_inp(datatype="BOOL", data=[1, 0])), None,
     r"holds number values, expected true/false for BOOL"),
    ("number in BYTES", _j(_inp(datatype="BYTES", data=["a", 1])), None,
     r"holds number, string values, expected strings"),
    ("data and binary", _j(_inp(parameters={"binary_data_size": 8})), None,
     r"has both 'data' and parameters.binary_data_size"),
    ("binary size a string", _j(_inp(data=None, parameters={"binary_data_size": "8"})), None,
     r"input 'x': parameter 'binary_data_size' is a JSON string, expected a JSON number"),
    ("binary size a float", _j(_inp(data=None, parameters={"binary_data_size": 8.0})), None,
     r"'binary_data_size' is a JSON number"),
    ("binary without header length", _j(_inp(data=None, parameters={"binary_data_size": 8})), None,
     r"binary_data_size is 8 but only 0 bytes of binary data are left"),
    ("binary after JSON without header length", _j(_inp(data=None, parameters={"binary_data_size": 8})) + B8,
     None, r"request: invalid JSON"),
    ("header length past body", b"{}", 3,
     r"Inference-Header-Content-Length: says the JSON part has 3 bytes but the body has only 2"),
    ("header length negative", b"{}", -1, r"Inference-Header-Content-Length: got -1"),
    ("header length cuts JSON", _j(_inp()), 5, r"request: invalid JSON"),
    ("empty JSON part", B8, 0, r"request: invalid JSON"),
    ("binary size past body", *_bin(16, B8),
     "binary_data_size is 16 but only 8 bytes of binary data are left"),
    ("binary size negative", *_bin(-8, B8), "binary_data_size is -8 but only 8"),
    ("binary size not shape x itemsize", *_bin(4, b"\0" * 4),
     r"binary_data_size is 4 bytes, expected 8 \(2 FP32 elements of 4 bytes\)"),
    ("bytes left after binary", *_bin(8, B8, extra=b"\0"),
     r"the body has 1 bytes after the JSON part that no"),
    ("BOOL byte 2", *_bin(2, b"\x00\x02", "BOOL"), "BOOL binary data holds bytes other than 0 and 1"),
    ("BYTES too few items", *_bin(9, _item(b"a") + b"\0\0\0\0", "BYTES", [3]),
     r"BYTES binary data ends after 2 of 3"),
    ("BYTES item past size", *_bin(5, struct.pack("<I", 9) + b"a", "BYTES", [1]),
     r"BYTES element 0 says 9 bytes but only 1 are left"),
    ("BYTES bytes after items", *_bin(6, _item(b"a") + b"b", "BYTES", [1]),
     r"BYTES binary data has 1 bytes after its 1 elements"),
    ("outputs an object", _j(dict(_inp(), outputs={})), None, r"field 'outputs' is a JSON object"),
    ("output not an object", _j(dict(_inp(), outputs=["y"])), None,
     r"outputs\[0\]: got a JSON string, expected an object"),
    ("output without name", _j(dict(_inp(), outputs=[{}])), None, r"outputs\[0\]: field 'name' is nothing"),
    ("duplicate output", _j(dict(_inp(), outputs=[{"name": "y"}, {"name": "y"}])), None,
     r"outputs\[1\]: name 'y' appears twice"),
    ("binary_data a number", _j(dict(_inp(), outputs=[{"name": "y", "parameters": {"binary_data": 1}}])),
     None, r"requested output 'y': parameter 'binary_data' is a JSON number, expected a JSON boolean"),
    ("output parameters a list", _j(dict(_inp(), outputs=[{"name": "y", "parameters": []}])), None,
     r"requested output 'y': field 'parameters' is a JSON array"),
]


def test_at_least_forty_malformed_cases() -> None:
    assert len(MALFORMED) >= 40
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("what, body, header, match", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_request_is_refused_with_its_reason(what: str, body: bytes, header: int | None,
                                                      match: str) -> None:
    with pytest.raises(BadRequest, match=match) as info:
        decode_request(body, header, max_elements=LIMIT)
    assert isinstance(info.value, InvalidArgument) and isinstance(info.value, ValueError)
    assert info.value.__cause__ is None  # raised with a message of its own, not chained


def test_random_damage_gives_bad_request_or_a_request_never_another_error() -> None:
    """2,000 valid requests with bytes flipped, cut short, fields replaced or header lengths that lie."""
    rng = random.Random(13)
    values: list[Any] = [None, True, 0, -1, 2**70, 1.5, "", "FP32", [], {}, [[1]], [-1], [2**62], 8, -8]
    for _ in range(2000):
        datatype = rng.choice(["BOOL", "UINT8", "INT64", "FP16", "BYTES"])
        entry, _ = tensor_entry("a", SAMPLES[datatype], False)
        binary, tail = tensor_entry("b", np.arange(3, dtype=np.int32), True)
        request: dict[str, Any] = {"id": "r", "inputs": [entry, binary], "outputs": [{"name": "y"}]}
        targets = [request, entry, binary, binary["parameters"], request["outputs"][0]]
        for _ in range(rng.randint(0, 3)):
            target = rng.choice(targets)
            target[rng.choice(list(target) or ["name"])] = json.loads(json.dumps(rng.choice(values)))
        body, header = request_body(request, tail)
        damaged = bytearray(body)
        for _ in range(rng.choice([0, 0, 1, 3])):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.2:
            damaged = damaged[:rng.randrange(len(damaged) + 1)]
        if rng.random() < 0.2:
            header = rng.choice([None, 0, -3, len(damaged) + 1, (header or 0) + 1, (header or 0) - 1])
        try:
            decoded = decode_request(bytes(damaged), header, max_elements=LIMIT)
        except BadRequest:
            continue
        assert all(isinstance(a, np.ndarray) for a in decoded.inputs.values())


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_outputs_in_any_layout_go_row_major_little_endian(binary: bool) -> None:
    outputs = {"scalar": np.array(2.5, np.float32),
               "transposed": np.arange(6, dtype=np.int16).reshape(2, 3).T,
               "big_endian": np.arange(4, dtype=">i4"), "strided": np.arange(10.0)[::3]}
    body, header = encode_response("m", "1", None, outputs, binary)
    back = response_as_request(body, header).inputs
    for name, array in outputs.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].shape == array.shape
