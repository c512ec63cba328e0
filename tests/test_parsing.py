"""Tests for ivt_lib.core.parsing: model text -> box in the model's frame, or a failure reason; never raises."""
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivt_lib.core.parsing import (FAIL_EMPTY, FAIL_NO_BOX, FAIL_NON_FINITE, FAIL_NOT_TEXT, ParsedBox, format_box,
                             parse_box)

REASONS = {FAIL_EMPTY, FAIL_NO_BOX, FAIL_NON_FINITE, FAIL_NOT_TEXT}


def _ok(text, want):
    p = parse_box(text)
    assert p.ok, (text, p)
    assert p.reason is None
    assert p.box == tuple(float(v) for v in want)
    assert all(type(v) is float for v in p.box)
    return p


def _fail(text, reason):
    p = parse_box(text)
    assert not p.ok, (text, p)
    assert p.box is None
    assert p.reason == reason
    return p


# ---------------------------------------------------------------------------------------------------------------
# accepted forms
# ---------------------------------------------------------------------------------------------------------------


def test_plain_json():
    _ok('{"bbox_2d": [10, 20, 300, 400]}', (10, 20, 300, 400))


def test_json_compact_and_spacious():
    _ok('{"bbox_2d":[1,2,3,4]}', (1, 2, 3, 4))
    _ok('{ "bbox_2d" :  [ 1 ,\t2 , 3 ,  4 ] }', (1, 2, 3, 4))


def test_json_single_quotes_and_unquoted_key():
    _ok("{'bbox_2d': [5, 6, 7, 8]}", (5, 6, 7, 8))
    _ok("bbox_2d: [5, 6, 7, 8]", (5, 6, 7, 8))


def test_json_inside_list_with_label():
    _ok('[{"bbox_2d": [12, 34, 56, 78], "label": "red circle"}]', (12, 34, 56, 78))
    _ok('[{"label": "x", "bbox_2d": [12, 34, 56, 78]}]', (12, 34, 56, 78))


def test_json_in_code_fence():
    text = '```json\n[\n  {"bbox_2d": [100, 200, 300, 400], "label": "cat"}\n]\n```'
    _ok(text, (100, 200, 300, 400))


def test_json_pretty_printed_multiline():
    text = '```json\n[\n  {\n    "bbox_2d": [\n      7,\n      8,\n      9,\n      10\n    ]\n  }\n]\n```'
    _ok(text, (7, 8, 9, 10))


def test_json_with_surrounding_reasoning():
    text = ("The user wants the small blue square. Looking at the image, it is in the upper left. "
            'So the answer is {"bbox_2d": [15, 25, 120, 130]}. I am confident.')
    _ok(text, (15, 25, 120, 130))


def test_last_box_wins_json():
    text = ('The previous box {"bbox_2d": [1, 2, 3, 4]} was too small; '
            'corrected: {"bbox_2d": [10, 20, 30, 40]}')
    _ok(text, (10, 20, 30, 40))


def test_last_box_wins_three_boxes_in_list():
    text = '[{"bbox_2d": [1, 1, 2, 2]}, {"bbox_2d": [3, 3, 4, 4]}, {"bbox_2d": [5, 5, 6, 6]}]'
    _ok(text, (5, 5, 6, 6))


def test_last_box_wins_across_formats():
    _ok('<|box_start|>(1,2),(3,4)<|box_end|> then {"bbox_2d": [5, 6, 7, 8]}', (5, 6, 7, 8))
    _ok('{"bbox_2d": [5, 6, 7, 8]} then <|box_start|>(1,2),(3,4)<|box_end|>', (1, 2, 3, 4))


def test_box_tokens():
    _ok("<|box_start|>(10,20),(30,40)<|box_end|>", (10, 20, 30, 40))
    _ok("<|box_start|>( 10 , 20 ) , ( 30 , 40 )<|box_end|>", (10, 20, 30, 40))
    _ok("<|object_ref_start|>the dog<|object_ref_end|><|box_start|>(101,202),(303,404)<|box_end|><|im_end|>",
        (101, 202, 303, 404))


def test_incomplete_box_tokens_are_not_a_box():
    _fail("<|box_start|>(10,20),(30,40)", FAIL_NO_BOX)
    _fail("<|box_start|>(10,20)<|box_end|>", FAIL_NO_BOX)


@pytest.mark.parametrize("text,want", [
    ('{"bbox_2d": [10.5, 20.25, 30.0, 40.]}', (10.5, 20.25, 30.0, 40.0)),
    ('{"bbox_2d": [.5, 0.5, 1e2, 1.5E+1]}', (0.5, 0.5, 100.0, 15.0)),
    ('{"bbox_2d": [+1, +2, 3, 4]}', (1, 2, 3, 4)),
    ("<|box_start|>(1.5,2.5),(3.25,4.75)<|box_end|>", (1.5, 2.5, 3.25, 4.75)),
])
def test_floats(text, want):
    _ok(text, want)


@pytest.mark.parametrize("text,want", [
    ('{"bbox_2d": [-10, -20, 30, 40]}', (-10, -20, 30, 40)),
    ('{"bbox_2d": [-1.5, 2, -0.5, -3e1]}', (-1.5, 2, -0.5, -30)),
    ("<|box_start|>(-5,-6),(7,8)<|box_end|>", (-5, -6, 7, 8)),
])
def test_negative_numbers(text, want):
    # the parser reports what the model wrote; the validity rule (boxes.sanitize) deals with it later
    _ok(text, want)


def test_inverted_box_is_reported_as_written():
    _ok('{"bbox_2d": [300, 400, 10, 20]}', (300, 400, 10, 20))


# ---------------------------------------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\t  \n"])
def test_empty(text):
    _fail(text, FAIL_EMPTY)


@pytest.mark.parametrize("text", [
    "I cannot find the object.",
    "[10, 20, 30, 40]",  # bare list without the key
    '{"bbox_2d": [10, 20, 30]}',  # three numbers
    '{"bbox_2d": [10, 20, 30, 40, 50]}',  # five numbers
    '{"bbox_2d": ["10", "20", "30", "40"]}',  # strings
    '{"bbox_2d": [a, b, c, d]}',
    '{"bbox": [10, 20, 30, 40]}',  # wrong key
    '{"bbox_2d": [10, 20, 30, 40}',  # unclosed
])
def test_no_box(text):
    _fail(text, FAIL_NO_BOX)


@pytest.mark.parametrize("text", [
    '{"bbox_2d": [NaN, 20, 30, 40]}',
    '{"bbox_2d": [nan, 20, 30, 40]}',
    '{"bbox_2d": [10, inf, 30, 40]}',
    '{"bbox_2d": [10, 20, -inf, 40]}',
    '{"bbox_2d": [10, 20, 30, Infinity]}',
    '{"bbox_2d": [10, 20, 30, -Infinity]}',
    '{"bbox_2d": [1e999, 20, 30, 40]}',  # overflows to inf
    "<|box_start|>(nan,1),(2,3)<|box_end|>",
])
def test_non_finite(text):
    _fail(text, FAIL_NON_FINITE)


def test_last_box_non_finite_is_a_failure():
    # the last box wins, even when it is the bad one: the answer the model ended with is not a box
    _fail('{"bbox_2d": [1, 2, 3, 4]} no wait {"bbox_2d": [NaN, 2, 3, 4]}', FAIL_NON_FINITE)


@pytest.mark.parametrize("obj", [None, 123, 1.5, b'{"bbox_2d": [1, 2, 3, 4]}', ["{\"bbox_2d\": [1, 2, 3, 4]}"],
                                 {"bbox_2d": [1, 2, 3, 4]}, (1, 2, 3, 4)])
def test_not_text(obj):
    _fail(obj, FAIL_NOT_TEXT)


def test_parsed_box_ok_property_and_frozen():
    assert ParsedBox((1.0, 2.0, 3.0, 4.0)).ok
    assert not ParsedBox(None, FAIL_NO_BOX).ok
    p = parse_box('{"bbox_2d": [1, 2, 3, 4]}')
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.box = None  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------------------
# format_box
# ---------------------------------------------------------------------------------------------------------------


def test_format_box_canonical_string():
    assert format_box((1, 2, 3, 4)) == '{"bbox_2d": [1, 2, 3, 4]}'
    assert format_box([0, 0, 1000, 1000]) == '{"bbox_2d": [0, 0, 1000, 1000]}'
    assert format_box((-5, 6, 7, 8)) == '{"bbox_2d": [-5, 6, 7, 8]}'
    # non-integers are written as integers (truncated by int())
    assert format_box((1.9, 2.0, 3.2, 4.7)) == '{"bbox_2d": [1, 2, 3, 4]}'


# ---------------------------------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------------------------------

ints = st.integers(min_value=-10**6, max_value=10**6)
int_boxes = st.tuples(ints, ints, ints, ints)


@settings(max_examples=300, deadline=None)
@given(int_boxes)
def test_round_trip_integer_boxes(b):
    p = parse_box(format_box(b))
    assert p.ok and p.reason is None
    assert p.box == b


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(text):
    p = parse_box(text)
    assert isinstance(p, ParsedBox)
    if p.ok:
        assert p.reason is None and len(p.box) == 4
    else:
        assert p.reason in REASONS
        if not text.strip():
            assert p.reason == FAIL_EMPTY


@settings(max_examples=300, deadline=None)
@given(st.text(), int_boxes, st.text())
def test_finds_embedded_json_box(prefix, b, suffix):
    p = parse_box(prefix + format_box(b) + suffix)
    assert p.ok
    assert p.box == b


@settings(max_examples=200, deadline=None)
@given(st.text(), int_boxes, st.text())
def test_finds_embedded_token_box(prefix, b, suffix):
    text = prefix + f"<|box_start|>({b[0]},{b[1]}),({b[2]},{b[3]})<|box_end|>" + suffix
    p = parse_box(text)
    assert p.ok
    assert p.box == b


finite_floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@settings(max_examples=200, deadline=None)
@given(st.tuples(finite_floats, finite_floats, finite_floats, finite_floats))
def test_float_boxes_round_trip_through_repr(b):
    text = '{"bbox_2d": [' + ", ".join(repr(v) for v in b) + "]}"
    p = parse_box(text)
    assert p.ok
    assert p.box == b
