import pickle

from vocabulary.errors import (
    InvalidRequest,
    ModelError,
    SwitchboardError,
    UpstreamError,
    as_switchboard_error,
    error_body,
)


def test_error_body_is_openai_shaped():
    body = error_body(InvalidRequest("messages: too short", param="messages"))
    assert body == {"error": {"message": "messages: too short", "type": "invalid_request_error",
                              "param": "messages", "code": "invalid_request"}}


def test_upstream_error_keeps_status_and_code_through_pickle():
    err = pickle.loads(pickle.dumps(UpstreamError("upstream returned 400: too long", http_status=400,
                                                  code="context_length_exceeded")))
    assert (err.http_status, err.code, err.retryable) == (400, "context_length_exceeded", False)
    assert err.error_type == "invalid_request_error"
    assert UpstreamError("boom", http_status=503).retryable


class FakeRayTaskError(Exception):
    """Shaped like ray.exceptions.RayTaskError: the original is in `cause`."""

    def __init__(self, cause):
        super().__init__("wrapped")
        self.cause = cause


def test_unwraps_task_errors_to_the_original():
    original = ModelError("model x failed", code="engine_dead")
    found = as_switchboard_error(FakeRayTaskError(original))
    assert found is original and found.code == "engine_dead"
    assert as_switchboard_error(RuntimeError("plain")) is None
    assert isinstance(as_switchboard_error(SwitchboardError("x")), SwitchboardError)
