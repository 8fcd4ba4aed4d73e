#!/usr/bin/env python3
"""A small OTLP/HTTP profiles receiver for lowprof's end-to-end tests.

It decodes requests with the `opentelemetry-proto` package (generated from
the official .proto files, v1.10.0 layout since 1.43.0), so it checks
lowprof's hand-written field numbers independently.

Server:

    python3 tests/receiver/otlp_receiver.py --port 0 --out DIR [--script FAULTS]

- binds 127.0.0.1, prints ``LISTENING <port>`` on stdout once bound;
- ``POST /v1development/profiles`` only (other paths: 404; other methods on
  that path: 405); ``Content-Type: application/x-protobuf`` required (else
  415); ``Content-Encoding: gzip`` honoured; a body that does not gunzip or
  decode gets 400;
- appends one JSON line per request, failed ones included, to
  ``DIR/requests.jsonl`` (see ``summarize`` for the fields);
- ``--script FAULTS``: a JSON list with one entry per request to the profiles
  path, in arrival order; the last entry repeats. Entries:
  ``{"status": 503, "retry_after": "1"}``, ``{"status": 400}``,
  ``{"status": 200, "partial_success": {"rejected_profiles": 1,
  "error_message": "x"}}``, ``{"delay": 3.0}`` (sleep before answering;
  combines with the others), ``{"status": 200}``. Protocol errors (415, an
  undecodable body) take precedence over the entry.
- 200 replies carry a protobuf ``ExportProfilesServiceResponse``; error
  replies a protobuf ``google.rpc.Status`` (code, message), as the OTLP/HTTP
  spec and the Collector do; both with ``Content-Type:
  application/x-protobuf``.

One-off decoding (no server):

    python3 tests/receiver/otlp_receiver.py --decode FILE

prints the JSON summary of a request body (raw or gzip) and exits 0, or 1
if the summary has errors, 2 if the file does not decode.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

PATH = "/v1development/profiles"
CONTENT_TYPE = "application/x-protobuf"
GZIP_MAGIC = b"\x1f\x8b"

# google.rpc.Code values for error bodies.
RPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 413: 8, 415: 3, 429: 8, 500: 13, 502: 14, 503: 14, 504: 4}


# ---------------------------------------------------------------- decoding


def gunzip_if_needed(body: bytes, gzipped: bool | None = None) -> tuple[bytes, bool]:
    """Returns the raw body and whether it was gzip (sniffed if `gzipped` is None)."""
    if gzipped is None:
        gzipped = body.startswith(GZIP_MAGIC)
    return (gzip.decompress(body) if gzipped else body), gzipped


def decode_request(raw: bytes) -> profiles_service_pb2.ExportProfilesServiceRequest:
    request = profiles_service_pb2.ExportProfilesServiceRequest()
    request.ParseFromString(raw)
    return request


def any_value(value: Any, strings: list[str] | None = None) -> Any:
    """An AnyValue as plain JSON (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v, strings) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value, strings) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "string_value_strindex":
        i = value.string_value_strindex
        return strings[i] if strings is not None and 0 <= i < len(strings) else None
    return getattr(value, kind)


class Checker:
    """Resolves dictionary references and collects what is wrong with them."""

    def __init__(self, dictionary: profiles_pb2.ProfilesDictionary) -> None:
        self.d = dictionary
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(message)
        elif len(self.errors) == 50:
            self.errors.append("… more errors left out")

    def get(self, table: str, index: int, where: str) -> Any:
        rows = getattr(self.d, table)
        if 0 <= index < len(rows):
            return rows[index]
        self.error(f"{where}: index {index} outside {table} (length {len(rows)})")
        return None

    def string(self, index: int, where: str) -> str:
        s = self.get("string_table", index, where)
        return s if s is not None else f"<bad strindex {index}>"

    def value_type(self, vt: Any, where: str) -> dict[str, str] | None:
        if vt is None:
            return None
        return {"type": self.string(vt.type_strindex, where), "unit": self.string(vt.unit_strindex, where)}

    def attributes(self, indices: Any, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in indices:
            kv = self.get("attribute_table", i, where)
            if kv is None:
                continue
            key = self.string(kv.key_strindex, where)
            if key in out:
                self.error(f"{where}: attribute key {key!r} repeated")
            if key == "":
                self.error(f"{where}: attribute {i} has an empty key")
            value = any_value(kv.value, list(self.d.string_table))
            if kv.unit_strindex:
                value = {"value": value, "unit": self.string(kv.unit_strindex, where)}
            out[key] = value
        return out

    def check_zero_entries(self) -> None:
        d = self.d
        if not d.string_table:
            self.error("string_table is empty (index 0 must be \"\")")
        elif d.string_table[0] != "":
            self.error(f"string_table[0] is {d.string_table[0]!r}, not \"\"")
        zero = {
            "mapping_table": profiles_pb2.Mapping(),
            "location_table": profiles_pb2.Location(),
            "function_table": profiles_pb2.Function(),
            "attribute_table": profiles_pb2.KeyValueAndUnit(),
            "stack_table": profiles_pb2.Stack(),
        }
        for table, empty in zero.items():
            rows = getattr(d, table)
            if not rows:
                self.error(f"{table} is empty (index 0 must be the zero value)")
            elif rows[0] != empty:
                self.error(f"{table}[0] is not the zero value: {rows[0]}")
        if not d.link_table:
            self.error("link_table is empty (index 0 must be the zero value)")
        else:
            link = d.link_table[0]
            if link.trace_id.strip(b"\0") or link.span_id.strip(b"\0") or len(link.trace_id) not in (0, 16) \
                    or len(link.span_id) not in (0, 8):
                self.error(f"link_table[0] is not the zero value: {link}")

    def check_tables(self) -> None:
        """Every reference inside the dictionary resolves."""
        d = self.d
        for i, m in enumerate(d.mapping_table):
            self.string(m.filename_strindex, f"mapping_table[{i}]")
            self.attributes(m.attribute_indices, f"mapping_table[{i}]")
        for i, loc in enumerate(d.location_table):
            self.get("mapping_table", loc.mapping_index, f"location_table[{i}]")
            for line in loc.lines:
                self.get("function_table", line.function_index, f"location_table[{i}]")
            self.attributes(loc.attribute_indices, f"location_table[{i}]")
        for i, f in enumerate(d.function_table):
            for field in ("name_strindex", "system_name_strindex", "filename_strindex"):
                self.string(getattr(f, field), f"function_table[{i}]")
        for i, s in enumerate(d.stack_table):
            for loc in s.location_indices:
                self.get("location_table", loc, f"stack_table[{i}]")
        for i, kv in enumerate(d.attribute_table):
            self.string(kv.key_strindex, f"attribute_table[{i}]")
            self.string(kv.unit_strindex, f"attribute_table[{i}]")

    def functions_of_stack(self, stack_index: int, where: str) -> list[str]:
        stack = self.get("stack_table", stack_index, where)
        names: list[str] = []
        if stack is None:
            return names
        for li in stack.location_indices:
            loc = self.get("location_table", li, where)
            if loc is None:
                continue
            for line in loc.lines:
                f = self.get("function_table", line.function_index, where)
                if f is not None:
                    names.append(self.string(f.name_strindex, where))
        return names


def summarize_profile(c: Checker, p: Any, where: str) -> dict[str, Any]:
    functions: set[str] = set()
    total = 0
    sample_attribute_keys: set[str] = set()
    shapes: set[str] = set()
    links: dict[str, int] = {}
    for i, s in enumerate(p.samples):
        sw = f"{where}.samples[{i}]"
        functions.update(c.functions_of_stack(s.stack_index, sw))
        sample_attribute_keys.update(c.attributes(s.attribute_indices, sw))
        if s.link_index:
            link = c.get("link_table", s.link_index, sw)
            if link is not None:
                if len(link.trace_id) != 16 or len(link.span_id) != 8:
                    c.error(f"{sw}: link {s.link_index} ids are not 16 and 8 bytes")
                key = f"{link.trace_id.hex()}:{link.span_id.hex()}"
                links[key] = links.get(key, 0) + (sum(s.values) if s.values else len(s.timestamps_unix_nano))
        if s.values and s.timestamps_unix_nano and len(s.values) != len(s.timestamps_unix_nano):
            c.error(f"{sw}: {len(s.values)} values but {len(s.timestamps_unix_nano)} timestamps")
        if not s.values and not s.timestamps_unix_nano:
            c.error(f"{sw}: neither values nor timestamps")
        total += sum(s.values) if s.values else len(s.timestamps_unix_nano)
        shapes.add("values" if not s.timestamps_unix_nano else "timestamps" if not s.values else "both")
    if len(shapes) > 1:
        c.error(f"{where}: samples mix shapes {sorted(shapes)}")
    if p.profile_id and (len(p.profile_id) != 16 or not p.profile_id.strip(b"\0")):
        c.error(f"{where}: profile_id {p.profile_id.hex()} is not 16 bytes, not all zero")
    return {
        "sample_type": c.value_type(p.sample_type if p.HasField("sample_type") else None, where),
        "period_type": c.value_type(p.period_type if p.HasField("period_type") else None, where),
        "period": p.period,
        "samples": len(p.samples),
        "total": total,
        "functions": sorted(functions),
        "sample_attribute_keys": sorted(sample_attribute_keys),
        "links": links,
        "attributes": c.attributes(p.attribute_indices, where),
        "time_unix_nano": p.time_unix_nano,
        "duration_nano": p.duration_nano,
        "profile_id": p.profile_id.hex(),
    }


def htlhash(path: str) -> str | None:
    """The OTel profiles htlhash of a file, or None if it cannot be read:
    sha256(first 4096 bytes + last 4096 bytes + big-endian u64 length)[:16],
    in hex (opentelemetry.io/docs/specs/otel/profiles/mappings)."""
    try:
        with open(path, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            head = f.read(4096)
            f.seek(max(0, length - 4096))
            tail = f.read(4096)
    except OSError:
        return None
    return hashlib.sha256(head + tail + struct.pack(">Q", length)).hexdigest()[:32]


def summarize_mappings(c: "Checker") -> list[dict[str, Any]]:
    """Every mapping after entry 0: filename and attributes, with its
    htlhash recomputed here from the file when it is readable (a mismatch
    is an error)."""
    out = []
    for i, m in enumerate(c.d.mapping_table):
        if i == 0:
            continue
        where = f"mapping_table[{i}]"
        filename = c.string(m.filename_strindex, where)
        attrs = c.attributes(m.attribute_indices, where)
        sent = attrs.get("process.executable.build_id.htlhash")
        checked = False
        if sent is not None and filename.startswith("/"):
            here = htlhash(filename)
            if here is not None:
                checked = True
                if here != sent:
                    c.error(f"{where}: htlhash {sent} but {filename} hashes to {here}")
        out.append({"filename": filename, "attributes": attrs, "htlhash_checked": checked})
    return out


def summarize(request: profiles_service_pb2.ExportProfilesServiceRequest) -> dict[str, Any]:
    """The JSON summary of a decoded request.

    Keys: ``resource`` (attributes of the first ResourceProfiles as a dict),
    ``scope`` ({name, version} of its first ScopeProfiles), ``resources`` and
    ``scopes`` (counts), ``mappings`` (filename, attributes, and whether
    the htlhash was recomputed from the file and matched), ``profiles``
    (every Profile of every scope, in
    order: sample_type {type, unit}, period_type, period, samples (count),
    total (sum of values), functions (sorted names reachable from the
    samples' stacks), sample_attribute_keys, attributes, time_unix_nano,
    duration_nano, profile_id (hex), links ({"<trace hex>:<span hex>": total of
    the samples linked to it})), ``dictionary`` (table lengths) and
    ``errors`` (empty when every table's entry 0 is its zero value and every
    reference resolves).
    """
    c = Checker(request.dictionary)
    c.check_zero_entries()
    c.check_tables()
    strings = list(request.dictionary.string_table)
    resource: dict[str, Any] = {}
    scope: dict[str, str] | None = None
    profiles: list[dict[str, Any]] = []
    scopes = 0
    for ri, rp in enumerate(request.resource_profiles):
        attrs: dict[str, Any] = {}
        for kv in rp.resource.attributes:
            key = kv.key or (strings[kv.key_strindex] if 0 < kv.key_strindex < len(strings) else "")
            if not kv.key:
                c.error(f"resource_profiles[{ri}]: resource attribute without a plain key")
            if key in attrs:
                c.error(f"resource_profiles[{ri}]: resource attribute {key!r} repeated")
            attrs[key] = any_value(kv.value, strings)
        if ri == 0:
            resource = attrs
        for si, sp in enumerate(rp.scope_profiles):
            scopes += 1
            if scope is None:
                scope = {"name": sp.scope.name, "version": sp.scope.version}
            for pi, p in enumerate(sp.profiles):
                profiles.append(summarize_profile(c, p, f"resource_profiles[{ri}].scope_profiles[{si}].profiles[{pi}]"))
    d = request.dictionary
    return {
        "resource": resource,
        "scope": scope,
        "resources": len(request.resource_profiles),
        "scopes": scopes,
        "profiles": profiles,
        "mappings": summarize_mappings(c),
        "dictionary": {
            table: len(getattr(d, table))
            for table in ("mapping_table", "location_table", "function_table", "link_table", "string_table",
                          "attribute_table", "stack_table")
        },
        "errors": c.errors,
    }


# ------------------------------------------------------------------ server


def response_body(status: int, entry: dict[str, Any], message: str) -> bytes:
    if status == 200:
        response = profiles_service_pb2.ExportProfilesServiceResponse()
        partial = entry.get("partial_success")
        if partial is not None:
            response.partial_success.rejected_profiles = int(partial.get("rejected_profiles", 0))
            response.partial_success.error_message = str(partial.get("error_message", ""))
        return response.SerializeToString()
    return rpc_status(RPC_CODES.get(status, 2), message or f"lowprof test receiver: status {status}")


def rpc_status(code: int, message: str) -> bytes:
    """A `google.rpc.Status {1: int32 code, 2: string message}`, hand-encoded."""
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    text = message.encode()
    return b"\x08" + varint(code) + b"\x12" + varint(len(text)) + text


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, port: int, out_dir: str, script: list[dict[str, Any]], fd: int | None = None
    ) -> None:
        if fd is None:
            super().__init__(("127.0.0.1", port), Handler)
        else:
            # A socket the parent bound (and kept from other processes):
            # listen on it as it is.
            super().__init__(("127.0.0.1", 0), Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = socket.socket(fileno=fd)
            self.server_address = self.socket.getsockname()
            self.server_activate()
        self.out_path = os.path.join(out_dir, "requests.jsonl")
        self.script = script
        self.lock = threading.Lock()
        self.requests = 0
        self.scripted = 0

    def next_numbers(self, scripted: bool) -> tuple[int, dict[str, Any]]:
        """The request's number (1-based, all requests) and its script entry."""
        with self.lock:
            self.requests += 1
            entry: dict[str, Any] = {}
            if scripted:
                if self.script:
                    entry = self.script[min(self.scripted, len(self.script) - 1)]
                self.scripted += 1
            return self.requests, entry

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        with self.lock:
            with open(self.out_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    server: Receiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler's name)
        sys.stderr.write("otlp_receiver: " + (format % args) + "\n")

    def headers_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def reply(self, status: int, body: bytes, extra_headers: dict[str, str] | None = None) -> str:
        try:
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra_headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return "sent"
        except (BrokenPipeError, ConnectionResetError, OSError) as e:
            self.close_connection = True
            return f"client gone: {e.__class__.__name__}"

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.handle_request("POST")

    def do_GET(self) -> None:  # noqa: N802
        self.handle_request("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self.handle_request("PUT")

    def handle_request(self, method: str) -> None:
        received = time.time()
        body = self.read_body()
        path = self.path.split("?", 1)[0]
        on_path = path == PATH
        number, entry = self.server.next_numbers(on_path and method == "POST")
        headers = self.headers_dict()
        encoding = headers.get("content-encoding", "").strip().lower()
        record: dict[str, Any] = {
            "request": number,
            "time": received,
            "method": method,
            "path": self.path,
            "headers": headers,
            "gzip": encoding == "gzip",
            "body_bytes": len(body),
            "script": entry,
            "errors": [],
        }
        status, message, reply_headers = 200, "", {}
        if not on_path:
            status, message = 404, f"no such path {path}; profiles go to {PATH}"
        elif method != "POST":
            status, message = 405, "POST only"
            reply_headers["Allow"] = "POST"
        else:
            content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if content_type != CONTENT_TYPE:
                status, message = 415, f"Content-Type must be {CONTENT_TYPE}, not {content_type!r}"
            elif encoding not in ("", "identity", "gzip"):
                status, message = 415, f"unsupported Content-Encoding {encoding!r}"
            else:
                try:
                    raw, _ = gunzip_if_needed(body, encoding == "gzip")
                    request = decode_request(raw)
                except Exception as e:  # noqa: BLE001 (any decode failure is a 400)
                    status, message = 400, f"cannot decode body: {e.__class__.__name__}: {e}"
                else:
                    record.update(summarize(request))
                    status = int(entry.get("status", 200))
                    if entry.get("retry_after") is not None:
                        reply_headers["Retry-After"] = str(entry["retry_after"])
        if status >= 400 and message:
            record["errors"].append(message)
        record["status"] = status
        record["outcome"] = self.outcome(status, entry, message)
        # Logged before the reply (and before a scripted delay): once the
        # client has its answer, the request is in requests.jsonl, so a test
        # reading the file right after the client exits sees every request
        # that was answered; lines follow the arrival order.
        self.server.log(record)
        delay = float(entry.get("delay", 0) or 0)
        if delay > 0:
            time.sleep(delay)
        sent = self.reply(status, response_body(status, entry, message), reply_headers)
        if sent != "sent":
            self.log_message("reply to request %d not delivered: %s", number, sent)

    @staticmethod
    def outcome(status: int, entry: dict[str, Any], message: str) -> str:
        if status == 200:
            return "partial_success" if entry.get("partial_success") is not None else "ok"
        if entry.get("status") == status and not message:
            return f"fault {status}"
        return f"error {status}: {message}"


def load_script(path: str | None) -> list[dict[str, Any]]:
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        script = json.load(f)
    if not isinstance(script, list) or not all(isinstance(e, dict) for e in script):
        raise SystemExit(f"{path}: the script must be a JSON list of objects")
    known = {"status", "retry_after", "partial_success", "delay"}
    for i, e in enumerate(script):
        unknown = set(e) - known
        if unknown:
            raise SystemExit(f"{path}: entry {i} has unknown keys {sorted(unknown)}")
    return script


def serve(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)
    server = Receiver(args.port, args.out, load_script(args.script), args.fd)

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


def decode_file(path: str) -> int:
    with open(path, "rb") as f:
        body = f.read()
    try:
        raw, gzipped = gunzip_if_needed(body)
        summary = summarize(decode_request(raw))
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"errors": [f"cannot decode {path}: {e.__class__.__name__}: {e}"]}))
        return 2
    summary["gzip"] = gzipped
    print(json.dumps(summary, sort_keys=True))
    return 1 if summary["errors"] else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--fd", type=int, help="listen on this inherited, bound socket instead of --port")
    parser.add_argument("--out", help="directory for requests.jsonl")
    parser.add_argument("--script", help="JSON fault script (see the module docs)")
    parser.add_argument("--decode", "--check", metavar="FILE", help="summarize a request body file and exit")
    args = parser.parse_args()
    if args.decode:
        return decode_file(args.decode)
    if not args.out:
        parser.error("--out is required unless --decode is given")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
