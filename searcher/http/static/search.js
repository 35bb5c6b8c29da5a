// The search page: plain browser JavaScript against this server's own HTTP API (no build step,
// nothing loaded from elsewhere). Requests and answers are the proto3 JSON of albatross.v1.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "albatross.token";
const STOP_WORDS = new Set(["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "how", "in",
  "is", "it", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who", "why", "with"]);
const OPERATORS = [
  ["equals", "="], ["oneOf", "is one of"], ["gte", "≥"], ["gt", ">"], ["lte", "≤"], ["lt", "<"],
];

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) showTokenBox();
  if (!response.ok) {
    const error = new Error((data.error && data.error.message) || response.statusText);
    error.status = response.status;
    throw error;
  }
  return { data, serverMs: serverTime(response.headers.get("Server-Timing")) };
}

function serverTime(header) {
  const match = /dur=([0-9.]+)/.exec(header || "");
  return match ? Number(match[1]) : null;
}

function showTokenBox() {
  $("token-box").hidden = false;
  if (!token()) $("token").focus();
}

function setStatus(text, isError) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}

// --- modes: whatever SearchRequest.mode offers in this server's OpenAPI document ----------------

function enumOf(schema, components) {
  if (!schema) return null;
  if (schema.$ref) return enumOf(components[schema.$ref.split("/").pop()], components);
  return Array.isArray(schema.enum) ? schema.enum : null;
}

function modeLabel(value, values) {
  // SEARCH_MODE_HYBRID -> hybrid: drop the prefix all values share.
  let prefix = values.reduce((a, b) => { let i = 0; while (i < a.length && a[i] === b[i]) i++; return a.slice(0, i); });
  prefix = prefix.slice(0, prefix.lastIndexOf("_") + 1);
  return value.slice(prefix.length).toLowerCase().replace(/_/g, " ");
}

async function loadModes() {
  const select = $("mode");
  let values = null;
  try {
    const doc = await (await fetch("/openapi.json")).json();
    const components = doc.components.schemas;
    const request = components["albatross.v1.SearchRequest"];
    values = enumOf(request && request.properties.mode, components);
  } catch (error) { values = null; }
  select.replaceChildren();
  const offered = (values || []).filter((v) => !/_UNSPECIFIED$/.test(v));
  if (offered.length === 0) {
    // One choice, still focusable: a person tabbing through learns how this server searches.
    select.append(new Option("dense", ""));
    select.title = "This server searches by meaning (dense vectors) only.";
    return;
  }
  for (const value of offered) select.append(new Option(modeLabel(value, values), value));
  const dense = offered.find((v) => /DENSE$/.test(v));
  if (dense) select.value = dense;
}

// --- collections ---------------------------------------------------------------------------------

async function loadCollections(wanted) {
  const select = $("collection");
  try {
    const { data } = await api("GET", "/v1/collections");
    const names = (data.collections || []).map((c) => c.name).sort();
    select.replaceChildren(...names.map((name) => new Option(name, name)));
    if (names.length === 0) setStatus("This server has no collections yet: ingest some documents first.");
    if (wanted && names.includes(wanted)) select.value = wanted;
    return names.length > 0;
  } catch (error) {
    setStatus(error.status === 401 ? "Enter the bearer token, then search." : "Cannot list collections: " + error.message, true);
    return false;
  }
}

// --- filters -------------------------------------------------------------------------------------

function addFilter(field = "", op = "equals", value = "") {
  $("filters").hidden = false;
  const row = document.createElement("div");
  row.className = "filter";
  const name = Object.assign(document.createElement("input"), { value: field, placeholder: "field" });
  name.setAttribute("aria-label", "Metadata field");
  const operator = document.createElement("select");
  operator.setAttribute("aria-label", "Condition");
  for (const [key, label] of OPERATORS) operator.append(new Option(label, key));
  operator.value = op;
  const input = Object.assign(document.createElement("input"), { value, placeholder: "value" });
  input.setAttribute("aria-label", "Value (a list: comma-separated)");
  const remove = Object.assign(document.createElement("button"), { type: "button", className: "icon", textContent: "✕" });
  remove.setAttribute("aria-label", "Remove this filter");
  remove.addEventListener("click", () => {
    row.remove();
    if (!$("filter-rows").children.length) $("filters").hidden = true;
    $("add-filter").focus();
  });
  row.append(name, operator, input, remove);
  $("filter-rows").append(row);
  name.focus();
}

function scalar(text) {
  const trimmed = text.trim();
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(trimmed)) return { numberValue: Number(trimmed) };
  if (trimmed === "true" || trimmed === "false") return { boolValue: trimmed === "true" };
  return { stringValue: trimmed };
}

function filterConditions() {
  const conditions = [];
  [...$("filter-rows").children].forEach((row, i) => {
    const [name, operator, input] = row.querySelectorAll("input, select");
    const field = name.value.trim();
    if (!field && !input.value.trim()) return;
    if (!field) throw new Error(`filter ${i + 1}: name a metadata field`);
    const op = operator.value;
    if (op === "equals") conditions.push({ field, equals: scalar(input.value) });
    else if (op === "oneOf") {
      conditions.push({ field, oneOf: { values: input.value.split(",").filter((v) => v.trim()).map(scalar) } });
    } else {
      const number = Number(input.value);
      if (input.value.trim() === "" || !Number.isFinite(number)) throw new Error(`filter ${i + 1}: ${field} needs a number`);
      conditions.push({ field, range: { [op]: number } });
    }
  });
  return conditions;
}

// --- results -------------------------------------------------------------------------------------

function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOP_WORDS.has(w)))];
}

function escapeRegExp(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

// The chunk's text with the words it shares with the query marked (text nodes only, never HTML).
function markedText(text, terms) {
  const fragment = document.createDocumentFragment();
  if (!terms.length) { fragment.append(text); return fragment; }
  const pattern = new RegExp(`(?<![\\p{L}\\p{N}])(${terms.map(escapeRegExp).join("|")})[\\p{L}\\p{N}]*`, "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    fragment.append(text.slice(last, match.index));
    fragment.append(Object.assign(document.createElement("mark"), { textContent: match[0] }));
    last = match.index + match[0].length;
  }
  fragment.append(text.slice(last));
  return fragment;
}

function metadataValue(value) {
  if (Array.isArray(value)) return value.map(metadataValue).join(", ");
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function renderHit(hit, terms) {
  const item = Object.assign(document.createElement("li"), { className: "hit", tabIndex: 0 });
  const head = Object.assign(document.createElement("div"), { className: "hit-head" });
  const title = Object.assign(document.createElement("h2"), { className: "hit-title", textContent: hit.title || hit.id });
  const score = Object.assign(document.createElement("span"), { className: "score", textContent: Number(hit.score).toFixed(4) });
  score.title = "similarity score";
  head.append(title, score);
  const where = `${hit.id} · characters ${hit.start}–${hit.end}`;
  const id = Object.assign(document.createElement("div"), { className: "hit-id", textContent: where });
  const chunk = Object.assign(document.createElement("p"), { className: "chunk" });
  chunk.append(markedText(hit.text, terms));
  item.append(head, id, chunk);
  // Sorted: a Struct keeps no order, and one order is easier to scan down a list of hits.
  const entries = Object.entries(hit.metadata || {})
    .filter(([, v]) => !(Array.isArray(v) && v.length === 0))
    .sort(([a], [b]) => a.localeCompare(b));
  if (entries.length) {
    const meta = Object.assign(document.createElement("ul"), { className: "meta" });
    meta.setAttribute("aria-label", "metadata");
    for (const [key, value] of entries) {
      const chip = document.createElement("li");
      chip.append(Object.assign(document.createElement("b"), { textContent: key + ": " }), metadataValue(value));
      meta.append(chip);
    }
    item.append(meta);
  }
  item.setAttribute("aria-label", `${hit.title || hit.id}, score ${Number(hit.score).toFixed(3)}`);
  return item;
}

async function search(event) {
  if (event) event.preventDefault();
  const query = $("query").value.trim();
  const collection = $("collection").value;
  if (!query) { setStatus("Type a query first.", true); $("query").focus(); return; }
  if (!collection) { if (!(await loadCollections())) return; }
  const body = { query, k: Number($("k").value) || 10 };
  try {
    const conditions = filterConditions();
    if (conditions.length) body.filter = { conditions };
  } catch (error) { setStatus(error.message, true); return; }
  if ($("mode").value) body.mode = $("mode").value;
  const params = new URLSearchParams({ collection: $("collection").value, q: query, k: body.k });
  history.replaceState(null, "", "?" + params);
  setStatus("Searching…");
  $("go").disabled = true;
  try {
    const { data, serverMs } = await api("POST", `/v1/collections/${encodeURIComponent($("collection").value)}/search`, body);
    const hits = data.hits || [];
    const terms = queryTerms(query);
    $("hits").replaceChildren(...hits.map((hit) => renderHit(hit, terms)));
    const time = serverMs === null ? "" : ` in ${serverMs.toFixed(1)} ms on the server`;
    setStatus(`${hits.length} result${hits.length === 1 ? "" : "s"}${time}.`);
  } catch (error) {
    $("hits").replaceChildren();
    setStatus(error.message, true);
  } finally {
    $("go").disabled = false;
  }
}

// --- keyboard ------------------------------------------------------------------------------------

function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

function moveFocus(step) {
  const hits = [...$("hits").children];
  if (!hits.length) return;
  const index = hits.indexOf(document.activeElement);
  const next = index < 0 ? (step > 0 ? 0 : hits.length - 1) : Math.min(hits.length - 1, Math.max(0, index + step));
  hits[next].focus();
  hits[next].scrollIntoView({ block: "nearest" });
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const inHits = $("hits").contains(document.activeElement);
  if (event.key === "/" && !typing(event.target)) { event.preventDefault(); $("query").focus(); $("query").select(); }
  else if (event.key === "Escape") { $("query").focus(); }
  else if ((event.key === "ArrowDown" && (inHits || event.target === $("query"))) || (event.key === "j" && inHits)) {
    event.preventDefault(); moveFocus(1);
  } else if ((event.key === "ArrowUp" || event.key === "k") && inHits) { event.preventDefault(); moveFocus(-1); }
}

async function start() {
  const params = new URLSearchParams(location.search);
  $("search").addEventListener("submit", search);
  $("add-filter").addEventListener("click", () => addFilter());
  document.addEventListener("keydown", onKey);
  $("token").value = token();
  $("token").addEventListener("change", async () => {
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    if (await loadCollections(params.get("collection"))) { setStatus(""); $("token-box").hidden = true; }
  });
  if (params.get("q")) $("query").value = params.get("q");
  if (params.get("k")) $("k").value = params.get("k");
  await loadModes();
  const ready = await loadCollections(params.get("collection"));
  $("query").focus();
  if (ready && params.get("q")) search();
}

start();
