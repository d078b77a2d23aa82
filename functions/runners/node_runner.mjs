// The Node.js runtime of a function: imports the tenant's handler, then serves it over HTTP.
//
// Runs inside the function's sandbox (instances/providers/sandbox.py) on the unix socket the
// control plane bound and passed as `--listen-fd`. GET /health answers once the handler is
// imported; POST /invoke takes the request envelope (JSON) and answers the response envelope
// (docs/functions.md). An import error or a module without a default export function exits 1
// before serving: the deploy that started it fails.
import http from "node:http";
import { pathToFileURL } from "node:url";

const MAX_ENVELOPE = 16 * 1024 * 1024;
const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2) args[process.argv[i]] = process.argv[i + 1];

function envelope(result) {
  if (result === undefined || result === null) return { status: 204, headers: {}, body: "", body_encoding: "text" };
  if (typeof result === "string") return { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: result, body_encoding: "text" };
  if (result instanceof Uint8Array) return { status: 200, headers: { "content-type": "application/octet-stream" }, body: Buffer.from(result).toString("base64"), body_encoding: "base64" };
  if (typeof result === "object" && !Array.isArray(result) && ("status" in result || "body" in result || "headers" in result)) {
    const headers = {};
    for (const [k, v] of Object.entries(result.headers || {})) headers[String(k)] = String(v);
    let body = result.body ?? "";
    let encoding = result.body_encoding || "text";
    if (body instanceof Uint8Array) { body = Buffer.from(body).toString("base64"); encoding = "base64"; }
    else if (typeof body !== "string") { body = JSON.stringify(body); if (!("content-type" in headers)) headers["content-type"] = "application/json"; }
    return { status: Number(result.status ?? 200), headers, body, body_encoding: encoding };
  }
  return { status: 200, headers: { "content-type": "application/json" }, body: JSON.stringify(result), body_encoding: "text" };
}

function send(res, status, payload) {
  const data = Buffer.from(JSON.stringify(payload));
  res.writeHead(status, { "content-type": "application/json", "content-length": data.length });
  res.end(data);
}

let handler;
try {
  const module = await import(pathToFileURL(args["--handler"]).href);
  handler = module.default;
  if (typeof handler !== "function") throw new TypeError(`${args["--handler"]} has no default export function (export default async (request) => response)`);
} catch (err) {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/health") return send(res, 200, { ok: true });
  if (req.method !== "POST" || req.url !== "/invoke") return send(res, 404, { error: "not found" });
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => { size += chunk.length; if (size <= MAX_ENVELOPE) chunks.push(chunk); });
  req.on("end", async () => {
    if (size > MAX_ENVELOPE) return send(res, 413, { error: "request too large" });
    let request;
    try { request = JSON.parse(Buffer.concat(chunks).toString("utf8")); } catch { return send(res, 400, { error: "bad envelope" }); }
    try {
      send(res, 200, envelope(await handler(request)));
    } catch (err) {
      console.error(err && err.stack ? err.stack : String(err));
      send(res, 500, { error: `the handler raised ${(err && err.name) || "an error"}` });
    }
  });
});
server.listen({ fd: Number(args["--listen-fd"]) });
