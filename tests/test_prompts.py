"""Step-0 and refinement messages."""
from ivt_lib.core.parsing import parse_box
from ivt_lib.core.prompts import refine_messages, step0_messages, with_answer


def test_step0_has_one_image_and_the_expression():
    m = step0_messages("the blue circle")
    assert m[0]["role"] == "user" and m[0]["content"][0] == {"type": "image"}
    assert '"the blue circle"' in m[0]["content"][1]["text"] and "bbox_2d" in m[0]["content"][1]["text"]


def test_refine_states_step_and_previous_box():
    text = refine_messages("the red", (10, 20, 30, 40), step=2, T=3)[0]["content"][1]["text"]
    assert "step 2 of 3" in text and parse_box(text).box == (10, 20, 30, 40)
    none = refine_messages("x", None)[0]["content"][1]["text"]
    assert "could not be parsed" in none and not parse_box(none).ok


def test_with_answer_appends_assistant_turn():
    m = with_answer(step0_messages("x"), "ans")
    assert len(m) == 2 and m[1] == {"role": "assistant", "content": [{"type": "text", "text": "ans"}]}


def test_quotes_in_the_expression_are_escaped_not_pasted():
    """Issue 33: an expression with `"}` was pasted unescaped and closed the template's quotes early. The quoted part
    is now a JSON string body: the prompt quotes it whole and gives back exactly the expression."""
    import json

    import pytest

    for expr in ('the "} one', 'a \\"tricky\\" one', "two\nlines", 'ends with a quote"'):
        for text in (step0_messages(expr)[0]["content"][1]["text"],
                     refine_messages(expr, (1, 2, 3, 4))[0]["content"][1]["text"]):
            assert text.startswith('Locate "') and '" in the image.' in text
            body = text[len('Locate "'):text.index('" in the image.')]
            assert json.loads(f'"{body}"') == expr, text
            assert '"}' not in body.replace('\\"', "")
    assert step0_messages("the blue circle")[0]["content"][1]["text"] == \
        'Locate "the blue circle" in the image. Output its bbox_2d in JSON.'  # plain expressions: unchanged
    with pytest.raises(ValueError, match="expression is empty"):
        step0_messages("")
    with pytest.raises(ValueError, match="over the limit"):
        refine_messages("x" * 1001, None)
