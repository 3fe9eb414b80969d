"""docs/api-reference.md is what ``python -m api reference`` renders from the OpenAPI document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from api import endpoints
from api.reference import api_reference, render_reference

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "api-reference.md"


def test_committed_reference_is_current() -> None:
    assert REFERENCE.read_text() == api_reference(), (
        "docs/api-reference.md is stale: run `python -m api reference > docs/api-reference.md`"
    )


def test_reference_names_every_endpoint_and_schema() -> None:
    text = api_reference()
    for endpoint in endpoints():
        assert f"\n### {endpoint.method} {endpoint.path}\n" in text
    assert "\n### DeviceCreated\n" in text
    assert "[DeviceCreated](#devicecreated)" in text


def test_render_of_a_small_document() -> None:
    doc = {
        "info": {"title": "T", "version": "1", "description": "D."},
        "paths": {
            "/v1/things/{id}": {
                "get": {
                    "summary": "Get a thing.",
                    "tags": ["things"],
                    "security": [],
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "default": 10},
                            "description": "per page",
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "the thing",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Thing"}
                                }
                            },
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {
                    "description": "A thing.",
                    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
                    "required": ["tags"],
                }
            }
        },
    }
    text = render_reference(doc)
    assert "## Things\n\n### GET /v1/things/{id}\n\nGet a thing.\n\nNo API key needed." in text
    assert "| `limit` | query | integer | no | per page; >= 1; default `10` |" in text
    assert "| 200 | the thing | `application/json` [Thing](#thing) |" in text
    assert "| `tags` | array of string | yes |  |" in text


def test_cli_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "api", "reference"], capture_output=True, text=True, check=True
    )
    assert done.stdout == api_reference()
