"""Unknown fields in a manifest, found against the server's own OpenAPI (``/openapi/v2``) before anything is sent.

A v1.20 API server drops fields it does not know without a word (``fieldValidation`` came later), so a
misspelt probe or a field of a newer version would be applied as if it were not there. This walks each
manifest along the schema of its group/version/kind and names every path the schema does not define.
Pure over a loaded document: :mod:`.provider` fetches the document once per cluster and calls
:func:`unknown_fields` for every manifest it is about to dry-run or apply.
"""

from __future__ import annotations

from typing import Any


class Schema:
    """The definitions of one server's OpenAPI v2 document, indexed by group/version/kind."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.definitions: dict[str, Any] = document.get("definitions", {})
        self.kinds: dict[tuple[str, str], str] = {}
        for name, definition in self.definitions.items():
            for gvk in definition.get("x-kubernetes-group-version-kind", []):
                group, version = gvk.get("group", ""), gvk.get("version", "")
                api_version = f"{group}/{version}" if group else version
                self.kinds[(api_version, gvk.get("kind", ""))] = name

    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.kinds

    def unknown_fields(self, manifest: dict[str, Any]) -> list[str]:
        """Dotted paths of ``manifest`` its kind's schema does not define (``spec.template.spec.containers[0].x``);
        a kind the server does not serve at all is reported as its ``apiVersion``."""
        key = (str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        name = self.kinds.get(key)
        if name is None:
            return [f"apiVersion/kind {key[0]}/{key[1]}"]
        found: list[str] = []
        self._walk(manifest, self.definitions[name], "", found)
        return found

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in schema and seen < 32:
            schema = self.definitions.get(schema["$ref"].rsplit("/", 1)[-1], {})
            seen += 1
        return schema

    def _walk(self, value: Any, schema: dict[str, Any], path: str, found: list[str]) -> None:
        schema = self._resolve(schema)
        if isinstance(value, dict):
            properties = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                where = f"{path}.{key}" if path else str(key)
                if properties is not None and key in properties:
                    self._walk(item, properties[key], where, found)
                elif isinstance(extra, dict):
                    self._walk(item, extra, where, found)
                elif properties is not None or extra is False:
                    found.append(where)
                # A schema with neither (an opaque object such as RawExtension) takes anything.
        elif isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                for i, item in enumerate(value):
                    self._walk(item, items, f"{path}[{i}]", found)


def unknown_fields(schema: Schema, manifest: dict[str, Any]) -> list[str]:
    return schema.unknown_fields(manifest)
