"""Generate `orchestrio_client/_generated.py` from Orchestrio's OpenAPI schema.

    python client/generate.py                      # the schema of the checkout (Django, tests.settings)
    python client/generate.py --schema schema.json # a saved schema (JSON)
    python client/generate.py --url http://127.0.0.1:8000/api/schema?format=json

The output is committed; tests/client/test_coverage.py regenerates it from the live schema and
fails when it differs, so a new or changed endpoint cannot land without its SDK method. What is
generated: a TypedDict per component schema (the records the API returns and takes), a Literal
per enum, `OPERATIONS` (operationId → method, path) and one method per operation on
`GeneratedOperations`, named after its operationId, whose arguments are the operation's path
parameters (positional), query parameters and body fields (keyword-only). The hand-written
layer (`orchestrio_client.client`) supplies the HTTP, pagination, errors and helpers such as
`wait`.

Only the standard library: the generator runs without the client's dependencies.
"""

from __future__ import annotations

import argparse
import json
import keyword
import pprint
import sys
from pathlib import Path

OUTPUT = Path(__file__).parent / "orchestrio_client" / "_generated.py"
METHODS = ("get", "post", "put", "patch", "delete")
# Arguments every generated method takes besides the operation's own; a body field of the same
# name (a task's `idempotency_key`) is also sent in the body when given.
RESERVED = ("body", "idempotency_key", "request_timeout")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _is_paginated(schema: dict) -> bool:
    props = schema.get("properties", {})
    return set(props) >= {"count", "results"} and props["results"].get("type") == "array"


class Generator:
    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.components: dict = schema.get("components", {}).get("schemas", {})
        self.input_schemas: dict[str, dict] = {}

    # JSON Schema keywords kept when an OpenAPI schema becomes a tool's input schema (MCP).
    KEEP = ("type", "enum", "format", "description", "default", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "maxItems")

    def json_schema(self, s: dict, depth: int = 0) -> dict:
        """An OpenAPI 3.0 schema as plain JSON Schema: references inlined, `nullable` as a
        `null` alternative, read-only properties dropped."""
        if depth > 8:
            return {}
        if "$ref" in s:
            return self.json_schema(self.components.get(_ref_name(s["$ref"]), {}), depth + 1)
        if "allOf" in s and len(s["allOf"]) == 1:
            merged = {**self.json_schema(s["allOf"][0], depth + 1), **{k: v for k, v in s.items() if k != "allOf"}}
            return self.json_schema(merged, depth + 1) if "allOf" in merged else merged
        out: dict = {}
        for key in ("oneOf", "anyOf"):
            if key in s:
                out["anyOf"] = [self.json_schema(part, depth + 1) for part in s[key]]
        for key in self.KEEP:
            if key in s:
                out[key] = s[key]
        if "enum" in out and None in out["enum"]:
            out["enum"] = [v for v in out["enum"] if v is not None]
            nullable = True
        else:
            nullable = bool(s.get("nullable"))
        if "items" in s:
            out["items"] = self.json_schema(s["items"], depth + 1)
        if "properties" in s:
            out["properties"] = {k: self.json_schema(v, depth + 1) for k, v in s["properties"].items() if not v.get("readOnly")}
            required = [k for k in s.get("required", []) if k in out["properties"]]
            if required:
                out["required"] = required
        if isinstance(s.get("additionalProperties"), dict):
            out["additionalProperties"] = self.json_schema(s["additionalProperties"], depth + 1)
        if not out.get("enum", True):
            out.pop("enum")
            out["type"] = "null"
            return out
        if nullable:
            return {"anyOf": [out, {"type": "null"}]} if out else {}
        return out

    # -- types ---------------------------------------------------------------------------------

    def py_type(self, s: dict | None) -> str:
        if not s:
            return "Any"
        nullable = s.get("nullable", False)
        base = self._py_type(s)
        if nullable and base not in ("Any", "None") and not base.endswith("| None"):
            return f"{base} | None"
        return base

    def _py_type(self, s: dict) -> str:
        if "$ref" in s:
            return _ref_name(s["$ref"])
        for key in ("allOf", "oneOf", "anyOf"):
            if key in s:
                parts = []
                for part in s[key]:
                    t = self.py_type(part)
                    if t not in parts:
                        parts.append(t)
                if key == "allOf" and len(parts) > 1:
                    return "dict[str, Any]"
                return " | ".join(parts) if parts else "Any"
        if "enum" in s:
            values = [v for v in s["enum"]]
            if values == [None]:
                return "None"
            return "Literal[" + ", ".join(repr(v) for v in values if v is not None) + "]"
        t = s.get("type")
        if t == "string":
            return "str"
        if t == "integer":
            return "int"
        if t == "number":
            return "float"
        if t == "boolean":
            return "bool"
        if t == "array":
            return f"list[{self.py_type(s.get('items'))}]"
        if t == "object" or "properties" in s or "additionalProperties" in s:
            extra = s.get("additionalProperties")
            if isinstance(extra, dict) and extra:
                return f"dict[str, {self.py_type(extra)}]"
            return "dict[str, Any]"
        return "Any"

    def render_component(self, name: str, s: dict) -> str:
        doc = s.get("description")
        if "enum" in s and s.get("type") != "object":
            values = [v for v in s["enum"] if v is not None]
            if not values:
                return f"{name} = None"
            return f"{name} = Literal[" + ", ".join(repr(v) for v in values) + "]"
        props = s.get("properties")
        if s.get("type") == "object" and props is not None:
            required = set(s.get("required", []))
            lines = [f"class {name}(TypedDict, total=False):" if not required else f"class {name}(TypedDict):"]
            if doc:
                lines.append(_docstring(doc, indent=4))
            if not props:
                lines.append("    pass")
            for prop, ps in props.items():
                t = self.py_type(ps)
                if required and prop not in required:
                    t = f"NotRequired[{t}]"
                lines.append(f"    {prop}: {t}")
            return "\n".join(lines)
        return f"{name} = {self.py_type(s)}"

    # -- operations ----------------------------------------------------------------------------

    def operations(self) -> list[tuple[str, str, dict]]:
        ops = []
        for path, item in self.schema.get("paths", {}).items():
            for method in METHODS:
                if method in item:
                    ops.append((method, path, item[method]))
        return sorted(ops, key=lambda op: op[2]["operationId"])

    def response(self, op: dict) -> tuple[str, bool, str | None]:
        """(return annotation, paginated?, item type) of the operation's first 2xx answer."""
        for status in sorted(op.get("responses", {})):
            if not status.startswith("2"):
                continue
            content = op["responses"][status].get("content", {}).get("application/json")
            if not content:
                return "None", False, None
            s = content.get("schema", {})
            resolved = self.components.get(_ref_name(s["$ref"]), {}) if "$ref" in s else s
            if _is_paginated(resolved):
                item = self.py_type(resolved["properties"]["results"].get("items"))
                return f"Page[{item}]", True, item
            return self.py_type(s), False, None
        return "Any", False, None

    def body_fields(self, op: dict) -> tuple[list[tuple[str, str, bool, dict]], bool]:
        """[(name, type, required, schema)], and whether the body is free-form."""
        content = op.get("requestBody", {}).get("content", {})
        s = content.get("application/json") or next(iter(content.values()), None)
        if not s:
            return [], False
        s = s.get("schema", {})
        if "$ref" in s:
            s = self.components.get(_ref_name(s["$ref"]), {})
        props = s.get("properties")
        if not props:
            return [], True
        required = set(s.get("required", []))
        fields = []
        for name, ps in props.items():
            if ps.get("readOnly"):
                continue
            fields.append((name, self.py_type(ps), name in required, ps))
        return fields, bool(s.get("additionalProperties"))

    def render_operation(self, method: str, path: str, op: dict) -> str:
        op_id = op["operationId"]
        params = [p for p in op.get("parameters", []) if p.get("in") in ("path", "query")]
        path_params = [p for p in params if p["in"] == "path"]
        path_params.sort(key=lambda p: path.index("{" + p["name"] + "}"))
        query_params = [p for p in params if p["in"] == "query"]
        fields, free_form = self.body_fields(op)
        returns, paginated, _ = self.response(op)
        mutating = method != "get"

        taken: set[str] = set()

        def arg(name: str, *, field: bool = False) -> str:
            py = name + "_" if keyword.iskeyword(name) or name in ("self",) else name
            if py in taken and py not in RESERVED:
                if not field:
                    raise SystemExit(f"{op_id}: parameter {name!r} twice")
                py = f"new_{py}"  # a body field named like a path parameter: the new value (a rename)
                if py in taken:
                    raise SystemExit(f"{op_id}: body field {name!r} clashes twice")
            taken.add(py)
            return py

        inputs: dict[str, dict] = {}
        needed: list[str] = []

        def describe(py: str, schema: dict | None, description: str | None, required: bool) -> None:
            js = self.json_schema(schema or {})
            if description and "description" not in js:
                js["description"] = description
            inputs[py] = js
            if required:
                needed.append(py)

        sig = ["self"]
        for p in path_params:
            py = arg(p["name"])
            sig.append(f"{py}: str | int")
            describe(py, p.get("schema"), p.get("description"), True)
        kw: list[str] = []
        query_map = []
        for p in query_params:
            py = arg(p["name"])
            query_map.append((p["name"], py))
            kw.append(f"{py}: {self.py_type(p.get('schema'))} | None = None")
            describe(py, p.get("schema"), p.get("description"), False)
        body_map = []
        for name, t, required, ps in fields:
            py = arg(name, field=True)
            body_map.append((name, py))
            describe(py, ps, None, required and py not in RESERVED)
            if py in RESERVED:
                continue  # the reserved argument below stands for it
            kw.append(f"{py}: {t}" if required else f"{py}: {t} | Unset = UNSET")
        if fields or free_form or "requestBody" in op:
            kw.append("body: Mapping[str, Any] | None = None")
            if not fields:
                inputs["body"] = {"type": "object", "description": "The request body (a JSON object)."}
        if mutating:
            kw.append("idempotency_key: str | None = None")
            inputs.setdefault("idempotency_key", {"type": "string", "minLength": 1, "maxLength": 255, "description": "Idempotency-Key: the same key and body within 24 h replays the first answer."})
        self.input_schemas[op_id] = {"type": "object", "properties": inputs, "required": needed, "additionalProperties": False}
        kw.append("request_timeout: float | None = None")
        sig.append("*")
        sig.extend(kw)

        doc = [f"{method.upper()} {path}"]
        summary = op.get("summary") or ""
        description = op.get("description") or ""
        if summary:
            doc += ["", summary]
        if description and description != summary:
            doc += ["", description]
        doc_text = "\n".join(doc)

        lines = [f"    def {op_id}({', '.join(sig)}) -> {returns}:", _docstring(doc_text, indent=8)]
        fmt = path
        for p in path_params:
            fmt = fmt.replace("{" + p["name"] + "}", "{_q(" + arg_name(p["name"]) + ")}")
        lines.append(f'        path = f"{fmt}"')
        if query_map:
            items = ", ".join(f"{name!r}: {py}" for name, py in query_map)
            lines.append(f"        params = {{{items}}}")
        else:
            lines.append("        params: dict[str, Any] = {}")
        call_body = "None"
        if fields or free_form or "requestBody" in op:
            items = ", ".join(f"{name!r}: {py}" for name, py in body_map)
            lines.append(f"        payload = _body({{{items}}}, body)")
            call_body = "payload"
        kwargs = f"params=params, json={call_body}, request_timeout=request_timeout"
        if mutating:
            kwargs += ", idempotency_key=idempotency_key"
        keyed = any(p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key" for p in op.get("parameters", []))
        if method == "post" and keyed:
            kwargs += ", replay_safe=True"  # the schema says it honours Idempotency-Key
        if paginated:
            lines.append(f'        return self._page("{method.upper()}", path, {kwargs})')
        else:
            lines.append(f'        return self._call("{method.upper()}", path, {kwargs})')
        return "\n".join(lines)

    def render(self) -> str:
        info = self.schema.get("info", {})
        out = [
            f'"""Generated by client/generate.py from the OpenAPI schema of {info.get("title", "the API")} '
            f'{info.get("version", "")}: do not edit by hand."""',
            "",
            "# ruff: noqa",
            "from __future__ import annotations",
            "",
            "from typing import TYPE_CHECKING, Any, Literal, Mapping, NotRequired, TypedDict",
            "",
            "from ._base import UNSET, Unset, _body, _q",
            "",
            "if TYPE_CHECKING:",
            "    from ._base import Page",
            "",
        ]
        for name in sorted(self.components):
            out += ["", self.render_component(name, self.components[name]), ""]
        exported = [*sorted(self.components), "OPERATIONS", "INPUT_SCHEMAS", "GeneratedOperations"]
        out += ["", "__all__ = [" + ", ".join(repr(name) for name in exported) + "]", ""]
        ops = self.operations()
        out += ["", "# operationId → (HTTP method, path)", "OPERATIONS: dict[str, tuple[str, str]] = {"]
        for method, path, op in ops:
            out.append(f"    {op['operationId']!r}: ({method.upper()!r}, {path!r}),")
        out += ["}", "", ""]
        out.append("class GeneratedOperations:")
        out.append('    """One method per API operation, named after its operationId (see `OPERATIONS`)."""')
        out.append("")
        for method, path, op in ops:
            out.append(self.render_operation(method, path, op))
            out.append("")
        out += [
            "",
            "# operationId → the JSON Schema of its method's arguments (the MCP tools' input schemas)",
            "INPUT_SCHEMAS: dict[str, dict[str, Any]] = " + pprint.pformat(self.input_schemas, width=120, sort_dicts=False),
        ]
        return "\n".join(out).rstrip() + "\n"


def arg_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


def _docstring(text: str, *, indent: int) -> str:
    pad = " " * indent
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    body = "\n".join((pad + line) if line.strip() else "" for line in text.splitlines())
    return f'{pad}"""{body.lstrip()}\n{pad}"""' if "\n" in text else f'{pad}"""{text}"""'


def render(schema: dict) -> str:
    return Generator(schema).render()


def _load_schema(args: argparse.Namespace) -> dict:
    if args.schema:
        text = Path(args.schema).read_text()
    elif args.url:
        import urllib.request

        with urllib.request.urlopen(args.url) as response:  # noqa: S310 (an operator's own URL)
            text = response.read().decode()
    else:
        import os
        import subprocess

        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings")}
        text = subprocess.run(
            [sys.executable, "manage.py", "spectacular", "--format", "openapi-json"],
            cwd=root, env=env, check=True, capture_output=True, text=True,
        ).stdout
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schema", help="a saved OpenAPI schema (JSON: manage.py spectacular --format openapi-json)")
    parser.add_argument("--url", help="the schema's URL (…/api/schema?format=json)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file differs")
    args = parser.parse_args(argv)
    text = render(_load_schema(args))
    if args.check:
        same = OUTPUT.exists() and OUTPUT.read_text() == text
        print("up to date" if same else f"{OUTPUT} is out of date: run python client/generate.py")
        return 0 if same else 1
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
