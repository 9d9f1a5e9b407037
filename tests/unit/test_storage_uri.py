"""Model URIs: which ones `slipway fetch` downloads, and what a bad one is told."""

from __future__ import annotations

import pytest

from slipway.storage import ExitCode, FetchError, needs_fetch, parse_model_uri
from slipway.storage.uri import HttpUri, HubUri, ObjectStoreUri


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        (
            "s3://models/fraud/2.1.0",
            ObjectStoreUri("s3://models/fraud/2.1.0", "s3", "models", "fraud/2.1.0"),
        ),
        (
            "s3://models/fraud/2.1.0/",
            ObjectStoreUri("s3://models/fraud/2.1.0/", "s3", "models", "fraud/2.1.0"),
        ),
        ("s3://models", ObjectStoreUri("s3://models", "s3", "models", "")),
        (
            "gs://bucket/m/model.onnx",
            ObjectStoreUri("gs://bucket/m/model.onnx", "gs", "bucket", "m/model.onnx"),
        ),
        ("hf://acme/tiny", HubUri("hf://acme/tiny", "acme/tiny", None)),
        ("hf://acme/tiny@v1.2", HubUri("hf://acme/tiny@v1.2", "acme/tiny", "v1.2")),
        ("hf://gpt2", HubUri("hf://gpt2", "gpt2", None)),
        ("https://host/a/model.onnx", HttpUri("https://host/a/model.onnx", "model.onnx")),
        (
            "http://host:8000/m%20x.bin?sig=1",
            HttpUri("http://host:8000/m%20x.bin?sig=1", "m x.bin"),
        ),
    ],
)
def test_fetchable_uris_parse_into_their_parts(uri: str, parsed: object) -> None:
    assert parse_model_uri(uri) == parsed
    assert needs_fetch(uri)


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("pvc://claim/models/fraud", "mounted directly from its claim"),
        ("oci://registry/models/fraud:2", "mounted directly as an image volume"),
    ],
)
def test_mounted_uris_are_a_usage_error_saying_nothing_is_fetched(uri: str, says: str) -> None:
    with pytest.raises(FetchError) as raised:
        parse_model_uri(uri)
    assert raised.value.code == ExitCode.USAGE
    assert says in raised.value.message
    assert not needs_fetch(uri)


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("models/fraud", "expected s3://bucket/key"),
        ("ftp://host/model", "expected s3://bucket/key"),
        ("s3://", "expected s3://bucket/key"),
        ("s3:///key", "the bucket name is empty"),
        ("hf://a/b/c", "expected hf://org/model"),
        ("hf://acme/tiny@", "the revision after @ is empty"),
        ("hf://../x", "expected hf://org/model"),
        ("https:///model.bin", "the host name is empty"),
        ("https://host/", "the path must end in a file name"),
    ],
)
def test_bad_uris_are_a_usage_error_that_names_the_problem(uri: str, says: str) -> None:
    with pytest.raises(FetchError) as raised:
        parse_model_uri(uri)
    assert raised.value.code == ExitCode.USAGE
    assert says in raised.value.message
