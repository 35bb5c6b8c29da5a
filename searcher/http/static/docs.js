// Renders this server's /openapi.json as a page: routes, their parameters and the JSON schemas
// of their requests and answers (derived by the server from the albatross.v1 descriptors).
"use strict";

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

function refName(ref) { return ref.split("/").pop(); }
function anchor(name) { return "schema-" + name.replace(/[^A-Za-z0-9]/g, "-"); }

function typeOf(schema) {
  if (!schema || Object.keys(schema).length === 0) return el("span", {}, "any JSON value");
  if (schema.$ref) {
    const name = refName(schema.$ref);
    return el("a", { href: "#" + anchor(name) }, name.replace(/^albatross\.v1\./, ""));
  }
  if (schema.type === "array") return el("span", {}, "array of ", schema.items ? typeOf(schema.items) : "anything");
  if (schema.enum) return el("span", {}, "one of ", el("code", {}, schema.enum.join(" | ")));
  const type = Array.isArray(schema.type) ? schema.type.join(" or ") : schema.type;
  return el("span", {}, type + (schema.format ? ` (${schema.format})` : ""));
}

function schemaTable(schema) {
  const rows = Object.entries(schema.properties || {}).map(([name, field]) =>
    el("tr", {}, el("td", {}, el("code", {}, name)), el("td", {}, typeOf(field), field.description ? " — " + field.description : "")));
  if (!rows.length) return el("p", {}, "no fields");
  return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"))), el("tbody", {}, ...rows));
}

function curl(path, method, operation) {
  const body = operation.requestBody;
  const type = body ? Object.keys(body.content)[0] : null;
  const data = type === "application/x-ndjson" ? " --data-binary @documents.jsonl"
    : body ? " -d '{...}'" : "";
  const verb = method === "get" ? "" : ` -X ${method.toUpperCase()}`;
  return `curl -s${verb} ${location.origin}${path.replace("{name}", "demo")}${data}`;
}

function operationBlock(path, method, operation) {
  const block = el("section", { className: "op" },
    el("h3", {}, el("span", { className: "verb" }, method.toUpperCase()), " ", path),
    el("p", {}, operation.summary || ""));
  const query = (operation.parameters || []).filter((p) => p.in === "query");
  if (query.length) {
    block.append(el("p", {}, "Query parameters: ", ...query.flatMap((p, i) => [i ? ", " : "", el("code", {}, p.name), " (", typeOf(p.schema), ")"])));
  }
  if (operation.requestBody) {
    const [type, content] = Object.entries(operation.requestBody.content)[0];
    block.append(el("p", {}, "Body ", el("code", {}, type), ": ", typeOf(content.schema), ` — ${operation.requestBody.description || ""}`));
  }
  for (const [status, answer] of Object.entries(operation.responses || {})) {
    const content = answer.content ? Object.entries(answer.content)[0] : null;
    block.append(el("p", {}, el("code", {}, status === "default" ? "error" : status), ": ",
      content && content[1].schema ? typeOf(content[1].schema) : answer.description || ""));
  }
  block.append(el("pre", {}, curl(path, method, operation)));
  return block;
}

async function render() {
  const root = document.getElementById("doc");
  let doc;
  try {
    doc = await (await fetch("/openapi.json")).json();
  } catch (error) {
    document.getElementById("status").textContent = "Cannot read /openapi.json: " + error.message;
    return;
  }
  const children = [
    el("h1", {}, `${doc.info.title} HTTP API `, el("small", {}, doc.info.version)),
    el("p", {}, doc.info.description),
  ];
  if (doc.components.securitySchemes) {
    children.push(el("p", {}, "This server needs ", el("code", {}, "Authorization: Bearer <token>"), " on every /v1 route."));
  }
  children.push(el("h2", {}, "Routes"));
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(methods)) children.push(operationBlock(path, method, operation));
  }
  children.push(el("h2", {}, "Messages"));
  for (const [name, schema] of Object.entries(doc.components.schemas)) {
    children.push(el("section", { className: "op", id: anchor(name) },
      el("h3", {}, name.replace(/^albatross\.v1\./, "")),
      schema.description ? el("p", {}, schema.description) : "",
      schemaTable(schema.properties ? schema : { properties: schema.properties || {} })));
  }
  root.replaceChildren(...children);
}

render();
