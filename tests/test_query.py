"""query_params must read a device query exactly as aiohttp's request.query would."""
import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.http.query import query_params

CASES = [
    "",
    "?",
    "?device_serial=D1&hardware_version=mp&software_type=main&current_version=2.0.0",
    "?device_serial=D1&device_serial=D2",  # the first value wins, as MultiDict.get gives it
    "?a",
    "?a=&b=1",
    "?=x&a=1",
    "?a=1&&b=2&",
    "?a=b=c",
    "?current_version=1.0.0-rc.1%2Bbuild.5",  # decoded by yarl
    "?current_version=1.0.0+build",  # '+' is a space to yarl
    "?device_serial=D%C3%A9",
    "?v=%FF",
    "?k=v;x=y",
]


@pytest.mark.parametrize("qs", CASES)
def test_query_params_matches_aiohttp(qs):
    request = make_mocked_request("GET", "/api/v0/releases/latest" + qs)
    expected = {k: request.query.get(k) for k in request.query}
    got = query_params(request)
    assert dict(got) == expected
