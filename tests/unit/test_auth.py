import pytest

from serve_app.auth import ADMIN_TOKEN_ENV, bearer, check_admin
from vocabulary.errors import Forbidden, Unauthorized


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER  abc ", "abc"), ("  Bearer abc", "abc"),
    (None, None), ("", None), ("Bearer", None), ("Bearer   ", None), ("Basic abc", None), ("abc", None),
])
def test_the_bearer_scheme_is_read_in_any_case(header, token):
    assert bearer(header) == token


def test_admin_is_401_without_a_token_and_403_with_a_wrong_one(monkeypatch):
    monkeypatch.delenv(ADMIN_TOKEN_ENV, raising=False)
    with pytest.raises(Unauthorized, match="off"):
        check_admin("Bearer anything")
    monkeypatch.setenv(ADMIN_TOKEN_ENV, "s3cret")
    for missing in (None, "", "Basic s3cret", "Bearer "):
        with pytest.raises(Unauthorized):
            check_admin(missing)
    for wrong in ("Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET", "Bearer \udcff"):
        with pytest.raises(Forbidden):
            check_admin(wrong)
    check_admin("bearer s3cret")
