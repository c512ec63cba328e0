"""Teachers (scripted, local HF, OpenAI-compatible over loopback HTTP), the cache, and trace validation."""
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ivt_lib.core import boxes as bx
from ivt_lib.training import teacher as tch
from ivt_lib.core.parsing import format_box, parse_box


def _req(sample, prev, frac=0.5, step=1, T=2):
    return tch.TeacherRequest(sample["id"], sample["image"], sample["expression"], tuple(prev),
                              bx.lerp(prev, sample["bbox"], frac), step, T, sample["objects"], sample["target"])


def test_scripted_teacher_direction_size_and_wrong_object(test_samples):
    s = test_samples[0]
    x1, y1, x2, y2 = s["bbox"]
    t = tch.ScriptedTeacher()
    left = t.write([_req(s, (x1 - 20, y1, x2 - 20, y2), 1.0, 2, 2)])[0]  # box left of target -> move right
    assert "left" in left and "right" not in left  # "too far left" / "left of the target"
    small = t.reason(_req(s, ((x1 + x2) / 2 - 3, (y1 + y2) / 2 - 3, (x1 + x2) / 2 + 3, (y1 + y2) / 2 + 3), 1.0, 2, 2))
    assert "small" in small or "missing part" in small
    keep = t.reason(_req(s, s["bbox"], 1.0, 2, 2))
    assert "keep" in keep
    multi = next(x for x in test_samples if len(x["objects"]) > 1)
    other = next(o for i, o in enumerate(multi["objects"]) if i != multi["target"])
    wrong = t.reason(_req(multi, other["box"], 1.0, 2, 2))
    assert f"covers the {other['colour']} {other['shape']}" in wrong


def test_scripted_trace_ends_with_the_step_target_and_validates(test_samples):
    s = test_samples[1]
    prev = bx.jitter(__import__("random").Random(1), s["bbox"], 128, 128, 0.4)
    r = _req(s, prev, 0.5, 1, 2)
    text = tch.ScriptedTeacher().write([r])[0]
    assert parse_box(text).box == tuple(float(v) for v in r.target_model())
    assert tch.validate_trace(text, r) is None
    assert "Partway" in text  # step 1 of 2 says it only moves part of the way
    assert tch.validate_trace("no box here", r) == "parse:no_box"
    assert tch.validate_trace("Off. " + format_box((0, 0, 1000, 1000)), r) == "box_off_target"
    assert tch.validate_trace(format_box(r.target_model()), r) == "no_reasoning"


def test_box_only_traces(test_samples):
    s = test_samples[1]
    r = _req(s, s["bbox"], 1.0, 2, 2)
    text = tch.ScriptedTeacher(reasoning=False).write([r])[0]
    assert text == format_box(r.target_model())
    assert tch.validate_trace(text, r, need_reasoning=False) is None and tch.validate_trace(text, r) == "no_reasoning"
    assert tch.ScriptedTeacher(reasoning=False).teacher_id != tch.ScriptedTeacher().teacher_id  # separate caches


def test_cache_resumes_without_repeating_calls(tmp_path, test_samples):
    class Counting(tch.ScriptedTeacher):
        calls = 0

        def write(self, requests):
            Counting.calls += len(requests)
            return super().write(requests)

    reqs = [_req(s, bx.jitter(__import__("random").Random(i), s["bbox"], 128, 128, 0.3)) for i, s in
            enumerate(test_samples[:6])]
    a = tch.CachedTeacher(Counting(), tmp_path).write(reqs[:4])
    assert Counting.calls == 4
    cached = tch.CachedTeacher(Counting(), tmp_path)
    b = cached.write(reqs)  # "resumed": only the two new requests reach the teacher
    assert Counting.calls == 6 and cached.hits == 4 and cached.misses == 2
    assert b[:4] == a


def test_hf_teacher_mechanics_with_tiny_model(tiny, test_samples):
    model, proc = tiny
    t = tch.HFTeacher(model, proc, "tiny", max_new_tokens=6, batch_size=3)
    reqs = [_req(s, s["bbox"]) for s in test_samples[:3]]
    out = t.write(reqs)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    assert all(tch.validate_trace(x, r) is not None for x, r in zip(out, reqs))  # untrained: rejected, not crashed
    assert "refinement step 1 of 2" in tch.teacher_messages(reqs[0])[0]["content"][1]["text"]


class _Handler(BaseHTTPRequestHandler):
    """Speaks the chat-completions protocol: answers with the target box quoted in the prompt."""

    state = {"inflight": 0, "max_inflight": 0, "requests": 0, "fail_first": 0}
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        st = self.state
        with self.lock:
            st["requests"] += 1
            if st["fail_first"] > 0:
                st["fail_first"] -= 1
                self.send_response(500)
                self.end_headers()
                return
            st["inflight"] += 1
            st["max_inflight"] = max(st["max_inflight"], st["inflight"])
        time.sleep(0.05)
        content = body["messages"][0]["content"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        target = re.findall(r"\{\"bbox_2d\": \[[^\]]*\]\}", content[1]["text"])[-1]
        out = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": f"It is off, so I fix it. {target}"}}],
               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(out).encode()
        with self.lock:
            st["inflight"] -= 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    _Handler.state.update(inflight=0, max_inflight=0, requests=0, fail_first=0)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_openai_teacher_over_loopback(server, test_samples):
    t = tch.OpenAITeacher(server, "teacher-vlm", max_workers=2, timeout_s=5, max_retries=2)
    reqs = [_req(s, bx.jitter(__import__("random").Random(i), s["bbox"], 128, 128, 0.3)) for i, s in
            enumerate(test_samples[:6])]
    out = t.write(reqs)
    assert all(tch.validate_trace(x, r) is None for x, r in zip(out, reqs))
    assert _Handler.state["max_inflight"] <= 2 and _Handler.state["requests"] == 6


def test_openai_teacher_retries_server_errors(server, test_samples):
    _Handler.state["fail_first"] = 1
    t = tch.OpenAITeacher(server, "teacher-vlm", max_workers=1, timeout_s=5, max_retries=2)
    r = _req(test_samples[0], test_samples[0]["bbox"])
    assert tch.validate_trace(t.write([r])[0], r) is None
    assert _Handler.state["requests"] == 2  # one failure, one retry


def test_openai_teacher_unreachable_is_a_clear_error(test_samples):
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = tch.OpenAITeacher(f"http://127.0.0.1:{port}/v1", "m", timeout_s=1, max_retries=0)
    with pytest.raises(tch.TeacherUnreachable, match=f"127.0.0.1:{port}"):
        t.write([_req(test_samples[0], test_samples[0]["bbox"])])
