// synthloop studio: the page. Plain JavaScript, no framework, no build step; every number it shows
// comes from the server (the API in synthloop/studio/app.py), which calls the library.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));

function h(tag, attrs, ...kids) {
  const el = tag === "svg" ? document.createElementNS("http://www.w3.org/2000/svg", "svg") : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.setAttribute("class", v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined && kid !== false)
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

// ---- API ----------------------------------------------------------------------------------------
const token = () => sessionStorage.getItem("studio-token") || "";
const withToken = (url) => token() ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token()) : url;

async function api(method, url, body, isForm) {
  const opts = { method, headers: {} };
  if (token()) opts.headers["X-Studio-Token"] = token();
  if (body !== undefined) {
    if (isForm) opts.body = body;
    else { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  }
  const res = await fetch(url, opts);
  if (res.status === 401) { askToken(); throw { error: "token needed", field: "" }; }
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw data;
  return data;
}

function askToken() {
  $("#token-dialog").classList.remove("hidden");
  $("#token-input").focus();
}

function status(text, bad) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("bad", !!bad);
}

// field errors: an element with data-path shows the error next to it; the longest matching prefix wins
function clearErrors(scope) {
  $$(".invalid", scope).forEach((el) => el.classList.remove("invalid"));
  $$(".has-error", scope).forEach((el) => el.classList.remove("has-error"));
  $$(".field-error", scope).forEach((el) => { el.textContent = ""; });
}

function showError(scope, path, message, fallback) {
  const all = $$("[data-path]", scope);
  let p = path || "";
  let el = null;
  while (p) {
    el = all.find((e) => e.dataset.path === p);
    if (el) break;
    const q = p.replace(/(\.[^.[\]]*|\[\d+\])$/, "");
    if (q === p) break;
    p = q;
  }
  if (el) {
    el.classList.add("invalid");
    const card = el.closest(".col-card");
    if (card) card.classList.add("has-error");
    let slot = $$(`[data-error-for]`, scope).find((e) => e.dataset.errorFor === el.dataset.path);
    if (!slot) {
      slot = el.parentElement.querySelector(":scope > .field-error.auto") || h("span", { class: "field-error auto" });
      el.insertAdjacentElement("afterend", slot);
    }
    slot.textContent = message;
    return el;
  }
  if (fallback) fallback.textContent = (path ? path + ": " : "") + message;
  return null;
}

// ---- tabs ---------------------------------------------------------------------------------------
function showTab(name) {
  $$("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $$(".tab").forEach((t) => t.classList.toggle("active", t.id === "tab-" + name));
  if (name === "runs") loadRuns();
  if (name === "refine" || name === "learn") loadFiles();
}

// ---- the spec designer ---------------------------------------------------------------------------
const S = { spec: null, info: null, seq: 0, applied: 0, inflight: false, dirty: false, editAt: 0, timings: [], hist: {} };
window.studio = S;

const NEW_SPEC = () => ({ name: "my_data", rows: 100, seed: 0, columns: [] });
const DEFAULTS = {
  categorical: () => ({ a: 0.5, b: 0.5 }), uniform: () => ({ min: 0, max: 100 }), normal: () => ({ mean: 0, std: 1 }),
  lognormal: () => ({ mean: 3, sigma: 1 }), poisson: () => ({ lam: 3 }),
  datetime: () => ({ start: { __date__: "2024-01-01" }, end: { __date__: "2024-12-31" } }),
  faker: () => ({ provider: "name" }), sequence: () => ({ prefix: "ID", digits: 5 }),
};
const PARAMS = {
  uniform: ["min", "max", "decimals"], normal: ["mean", "std", "min", "max", "decimals"],
  lognormal: ["mean", "sigma", "min", "max", "decimals"], poisson: ["lam", "min", "max"],
  datetime: ["start", "end", "format"], faker: ["locale"], sequence: ["prefix", "digits", "start"],
};
const NUMERIC = new Set(["min", "max", "decimals", "mean", "std", "sigma", "lam", "digits", "start"]);

// a typed value: numbers become numbers, the rest stays text (so the server can name what does not parse)
function typed(text, numeric) {
  const t = String(text).trim();
  if (!numeric) return t;
  if (t === "") return undefined;
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t) ? Number(t) : t;
}
const plain = (v) => (v && typeof v === "object" && ("__date__" in v || "__datetime__" in v)) ? (v.__date__ || v.__datetime__) : v;
const dateValue = (t) => /^\d{4}-\d{2}-\d{2}$/.test(t) ? { __date__: t } : t;

function pairsOf(obj) {
  if (!obj) return [];
  if (Array.isArray(obj.__pairs__)) return obj.__pairs__.map((p) => [p[0], p[1]]);
  return Object.entries(obj);
}
function fromPairs(pairs) {
  if (pairs.every(([k]) => typeof k === "string")) return Object.fromEntries(pairs);
  return { __pairs__: pairs };
}

function distKind(sampler) { return S.info.kinds.find((k) => sampler && sampler[k] !== undefined) || "categorical"; }
function sourceOf(col) { return col.llm !== undefined ? "llm" : col.expression !== undefined ? "expression" : "sampler"; }
function outputNames(col) {
  const props = col.llm && col.llm.schema && col.llm.schema.properties;
  return props && col.llm.flatten !== false ? Object.keys(props) : [col.name];
}

function changed() {  // a value changed: new preview (no re-render, so the focused input keeps focus)
  S.editAt = performance.now();
  S.version = (S.version || 0) + 1;
  requestPreview(false);
}
function restructured() { renderColumns(); changed(); }

function renderSpecHeader() {
  $("#spec-name").value = S.spec.name ?? "";
  $("#spec-rows").value = S.spec.rows ?? "";
  $("#spec-seed").value = S.spec.seed ?? "";
}

function renderColumns() {
  const box = $("#columns");
  box.replaceChildren(...S.spec.columns.map((col, i) => columnCard(col, i)));
  drawHistograms();
}

function columnCard(col, i) {
  const src = sourceOf(col);
  const base = `columns[${i}]`;
  const card = h("div", { class: `card col-card src-${src}`, "data-path": base, "data-col": i });
  const move = (d) => { const j = i + d; if (j < 0 || j >= S.spec.columns.length) return;
    const c = S.spec.columns; [c[i], c[j]] = [c[j], c[i]]; restructured(); };
  const head = h("div", { class: "col-head" },
    h("input", { class: "name", value: col.name ?? "", "aria-label": "column name", "data-path": `${base}.name`,
      oninput: (e) => { col.name = e.target.value; changed(); } }),
    h("select", { "aria-label": "source", class: "source", onchange: (e) => setSource(col, e.target.value, i) },
      ["sampler", "expression", "llm"].map((s) => h("option", { value: s, selected: s === src }, s === "llm" ? "LLM" : s))),
    h("span", { class: "spacer" }),
    h("button", { class: "icon up", title: "move up", "aria-label": "move up", onclick: () => move(-1) }, "↑"),
    h("button", { class: "icon down", title: "move down", "aria-label": "move down", onclick: () => move(1) }, "↓"),
    h("button", { class: "icon delete", title: "delete column", "aria-label": "delete column",
      onclick: () => { S.spec.columns.splice(i, 1); restructured(); } }, "✕"));
  card.append(head);
  if (src === "sampler") card.append(samplerEditor(col, base));
  else if (src === "expression") card.append(h("div", {},
    h("input", { class: "expr", style: "width:100%", value: col.expression ?? "", placeholder: "e.g. round(amount * 0.02, 2)",
      "aria-label": "expression", "data-path": `${base}.expression`, oninput: (e) => { col.expression = e.target.value; changed(); } })));
  else card.append(llmEditor(col, base, i));
  return card;
}

function setSource(col, src, i) {
  delete col.sampler; delete col.expression; delete col.llm;
  const others = S.spec.columns.filter((c, j) => j !== i).flatMap(outputNames);
  if (src === "sampler") col.sampler = { categorical: DEFAULTS.categorical() };
  else if (src === "expression") col.expression = others.length ? others[0] : "0";
  else col.llm = { prompt: others.length ? `Describe a record with ${others[0]} {{ ${others[0]} }}.` : "Describe a record." };
  restructured();
}

function samplerEditor(col, base) {
  const s = col.sampler;
  const kind = distKind(s);
  const wrap = h("div", {});
  const kindSel = h("select", { class: "kind", "aria-label": "distribution", onchange: (e) => {
    for (const k of S.info.kinds) delete s[k];
    s[e.target.value] = DEFAULTS[e.target.value]();
    restructured();
  } }, S.info.kinds.map((k) => h("option", { value: k, selected: k === kind }, k)));
  wrap.append(h("div", { class: "params" }, h("label", {}, "distribution ", kindSel),
    s.by ? h("span", { class: "muted" }, `switched by ${s.by} (cases kept as written)`) : null));
  const p = `${base}.sampler.${kind}`;
  if (kind === "categorical") {
    let pairs = pairsOf(s.categorical);
    const write = () => { s.categorical = fromPairs(pairs); };
    const rows = h("div", { class: "cats" });
    const draw = () => rows.replaceChildren(...pairs.map((pair, j) => {
      const w = h("input", { class: "w", value: pair[1], "aria-label": `weight of ${pair[0]}`, "data-path": `${p}.${pair[0]}`,
        oninput: (e) => { pair[1] = typed(e.target.value, true) ?? ""; const n = Number(pair[1]);
          if (!Number.isNaN(n) && e.target.value.trim() !== "") slider.value = n; write(); changed(); } });
      const slider = h("input", { type: "range", min: 0, max: 1, step: 0.01, value: Number(pair[1]) || 0,
        "aria-label": `weight slider of ${pair[0]}`,
        oninput: (e) => { pair[1] = Number(e.target.value); w.value = pair[1]; write(); changed(); } });
      return h("div", { class: "cat-row" },
        h("input", { class: "val", value: pair[0], "aria-label": "value",
          onchange: (e) => { pair[0] = e.target.value; write(); draw(); changed(); } }),
        slider, w,
        h("button", { class: "icon", title: "remove value", onclick: () => { pairs.splice(j, 1); write(); draw(); changed(); } }, "−"));
    }));
    draw();
    wrap.append(rows, h("button", { class: "add-value", onclick: () => {
      let n = pairs.length + 1; while (pairs.some(([k]) => k === `v${n}`)) n++;
      pairs.push([`v${n}`, 0.1]); write(); draw(); changed(); } }, "+ value"));
  } else if (kind === "faker") {
    wrap.append(h("div", { class: "params" },
      h("label", {}, "provider ", h("select", { "aria-label": "faker provider", "data-path": `${p}.provider`,
        onchange: (e) => { s.faker.provider = e.target.value; changed(); } },
        S.info.faker.map((f) => h("option", { value: f, selected: f === s.faker.provider }, f)))),
      paramInput(s.faker, "locale", p)));
  } else {
    wrap.append(h("div", { class: "params" }, PARAMS[kind].map((k) => paramInput(s[kind], k, p, kind === "datetime"))));
    wrap.append(h("svg", { class: "hist", width: 300, height: 56, "data-hist": col.name ?? "" }));
  }
  return wrap;
}

function paramInput(obj, key, p, isDate) {
  const numeric = NUMERIC.has(key) && !isDate;
  return h("label", {}, key + " ", h("input", { value: plain(obj[key]) ?? "", "data-path": `${p}.${key}`, "aria-label": key,
    oninput: (e) => {
      let v = typed(e.target.value, numeric);
      if (isDate && (key === "start" || key === "end")) v = dateValue(e.target.value.trim());
      if (v === undefined || v === "") delete obj[key]; else obj[key] = v;
      changed();
    } }));
}

function llmEditor(col, base, i) {
  const l = col.llm;
  const p = `${base}.llm`;
  const wrap = h("div", {});
  const prompt = h("textarea", { rows: 2, class: "prompt", "aria-label": "prompt", "data-path": `${p}.prompt`,
    oninput: (e) => { l.prompt = e.target.value; changed(); } });
  prompt.value = l.prompt ?? "";
  const others = S.spec.columns.filter((c, j) => j !== i).flatMap(outputNames);
  wrap.append(h("label", {}, "prompt (Jinja2; click a column to insert it)"), prompt,
    h("div", { class: "chips" }, others.map((n) => h("span", { class: "chip", onclick: () => {
      const at = prompt.selectionStart ?? prompt.value.length;
      prompt.value = prompt.value.slice(0, at) + `{{ ${n} }}` + prompt.value.slice(prompt.selectionEnd ?? at);
      l.prompt = prompt.value; changed(); } }, n))));
  // JSON schema from a form: one row per field
  const props = (l.schema && l.schema.properties) || {};
  const fields = Object.entries(props).map(([name, prop]) => ({ name, prop: { ...prop } }));
  const writeSchema = () => {
    if (!fields.length) { delete l.schema; return; }
    const properties = {};
    for (const f of fields) properties[f.name] = f.prop;
    l.schema = { ...(l.schema || {}), type: "object", properties };
  };
  const fieldBox = h("div", {});
  const drawFields = () => fieldBox.replaceChildren(...fields.map((f, j) => {
    const type = f.prop.enum ? "enum" : (f.prop.type || "string");
    const fp = `${p}.schema`;
    const row = h("div", { class: "params" },
      h("input", { value: f.name, "aria-label": "field name", "data-path": `${fp}.${f.name}`,
        onchange: (e) => { f.name = e.target.value; writeSchema(); restructured(); } }),
      h("select", { "aria-label": "field type", onchange: (e) => {
        const t = e.target.value; delete f.prop.enum; delete f.prop.minimum; delete f.prop.maximum;
        if (t === "enum") { delete f.prop.type; f.prop.enum = ["a", "b"]; } else f.prop.type = t;
        writeSchema(); drawFields(); changed(); } },
        ["string", "integer", "number", "boolean", "enum"].map((t) => h("option", { value: t, selected: t === type }, t))));
    if (type === "enum") row.append(h("input", { style: "width:220px", value: (f.prop.enum || []).join(", "), "aria-label": "enum values",
      oninput: (e) => { f.prop.enum = e.target.value.split(",").map((x) => x.trim()).filter(Boolean); writeSchema(); changed(); } }));
    if (type === "integer" || type === "number") for (const k of ["minimum", "maximum"])
      row.append(h("label", {}, k.slice(0, 3) + " ", h("input", { value: f.prop[k] ?? "", "aria-label": k,
        oninput: (e) => { const v = typed(e.target.value, true); if (v === undefined) delete f.prop[k]; else f.prop[k] = v; writeSchema(); changed(); } })));
    row.append(h("button", { class: "icon", onclick: () => { fields.splice(j, 1); writeSchema(); restructured(); } }, "−"));
    return row;
  }));
  drawFields();
  wrap.append(h("label", {}, "structured output (JSON schema fields; empty = free text)"), fieldBox,
    h("button", { onclick: () => { let n = fields.length + 1; while (fields.some((f) => f.name === `field${n}`)) n++;
      fields.push({ name: `field${n}`, prop: { type: "string" } }); writeSchema(); restructured(); } }, "+ field"));
  const fs = l.few_shot || {};
  wrap.append(h("div", { class: "params" },
    h("label", {}, "few-shot file ", h("input", { style: "width:170px", value: fs.file ?? "", "data-path": `${p}.few_shot.file`,
      "aria-label": "few-shot file", oninput: (e) => { const v = e.target.value.trim();
        if (!v) delete l.few_shot; else l.few_shot = { ...(l.few_shot || {}), file: v }; changed(); } })),
    h("label", {}, "k ", h("input", { style: "width:50px", value: fs.k ?? "", "data-path": `${p}.few_shot.k`, "aria-label": "few-shot k",
      oninput: (e) => { if (!l.few_shot) return; const v = typed(e.target.value, true);
        if (v === undefined) delete l.few_shot.k; else l.few_shot.k = v; changed(); } }))));
  for (const key of ["avoid", "constraints"]) {
    const ta = h("textarea", { rows: 2, "aria-label": key, "data-path": `${p}.${key}`,
      placeholder: key === "avoid" ? "one thing to avoid per line" : "one rule per line",
      oninput: (e) => { const v = e.target.value.split("\n").map((x) => x.trim()).filter(Boolean);
        if (v.length) l[key] = v; else delete l[key]; changed(); } });
    ta.value = (l[key] || []).join("\n");
    wrap.append(h("label", {}, key), ta);
  }
  return wrap;
}

// preview: at most one request in flight; an edit during it asks for one more when it returns.
// The LLM preview (seconds with the embedded model) runs beside it and is shown only if nothing changed meanwhile.
async function requestPreview(withLlm) {
  if (withLlm) return requestLlmPreview();
  if (S.inflight) { S.dirty = true; return; }
  S.inflight = true; S.dirty = false;
  const seq = ++S.seq;
  const editAt = S.editAt;
  try {
    const res = await api("POST", "/api/spec/preview", { spec: S.spec, path: $("#spec-path").value });
    applyPreview(res, seq, editAt, false);
  } catch (err) {
    const field = err.field === "path" ? "file" : (err.field || "");  // the spec file name is the page's "file" field
    applyPreview({ ok: false, error: { path: field, message: err.error || String(err) } }, seq, editAt, false);
  } finally {
    S.inflight = false;
    if (S.dirty) requestPreview(false);
  }
}

async function requestLlmPreview() {
  const btn = $("#preview-llm");
  const version = S.version;
  const editAt = S.editAt;
  btn.disabled = true; btn.textContent = "LLM running…";
  try {
    const res = await api("POST", "/api/spec/preview", { spec: S.spec, path: $("#spec-path").value, llm: true });
    if (S.version !== version) status("the spec changed while the LLM ran; run the LLM columns again");
    else applyPreview(res, ++S.seq, editAt, true);
  } catch (err) {
    status("LLM preview failed: " + (err.error || err), true);
  } finally {
    btn.disabled = false; btn.textContent = "Run LLM columns";
    document.body.dataset.llmDone = String(Number(document.body.dataset.llmDone || 0) + 1);
  }
}

function applyPreview(res, seq, editAt, withLlm) {
  const scope = $("#tab-design");
  clearErrors(scope);
  if (res.yaml !== undefined) $("#yaml").textContent = res.yaml;
  if (!res.ok) {
    showError(scope, res.error.path, res.error.message, $("#global-error"));
    $("#preview-info").textContent = "fix the error to see rows";
  } else {
    renderPreview(res);
    S.hist = res.hist || {};
    drawHistograms();
    drawDag(res.dag);
    $("#preview-info").textContent = `${res.rows.length} rows` + (res.pending.length ? `; LLM columns on demand` : "");
  }
  S.applied = seq;
  document.body.dataset.previewSeq = String(seq);
  document.body.dataset.previewOk = res.ok ? "1" : "0";
  if (editAt) requestAnimationFrame(() => S.timings.push({ ms: performance.now() - editAt, llm: !!withLlm, seq }));
}

function renderPreview(res) {
  const pending = new Set(res.pending);
  const table = h("table", { id: "preview-table" },
    h("thead", {}, h("tr", {}, res.columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, res.rows.map((r) => h("tr", {}, res.columns.map((c) => pending.has(c)
      ? h("td", { class: "pending" }, "LLM") : h("td", { title: r[c] ?? "" }, r[c] === null ? "" : String(r[c])))))));
  $("#preview").replaceChildren(table);
}

function drawHistograms() {
  for (const svg of $$("svg[data-hist]")) {
    const hist = S.hist[svg.dataset.hist];
    svg.replaceChildren();
    if (!hist) continue;
    const W = 300, H = 56, max = Math.max(...hist.counts, 1), bw = W / hist.counts.length;
    const ns = "http://www.w3.org/2000/svg";
    hist.counts.forEach((c, k) => {
      const r = document.createElementNS(ns, "rect");
      const bh = (H - 12) * c / max;
      r.setAttribute("x", k * bw + 0.5); r.setAttribute("width", Math.max(bw - 1, 1));
      r.setAttribute("y", H - 12 - bh); r.setAttribute("height", bh);
      svg.append(r);
    });
    const fmt = (v) => hist.format === "datetime" ? new Date(v * 1000).toISOString().slice(0, 10) : (+v.toPrecision(4)).toString();
    for (const [x, v, anchor] of [[0, hist.edges[0], "start"], [W, hist.edges[hist.edges.length - 1], "end"]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", H - 1); t.setAttribute("font-size", 10); t.setAttribute("text-anchor", anchor);
      t.setAttribute("fill", "#6b7385"); t.textContent = fmt(v);
      svg.append(t);
    }
  }
}

function drawDag(dag) {
  const svg = $("#dag");
  svg.replaceChildren();
  if (!dag) return;
  const level = {};
  const deps = {};
  dag.nodes.forEach((n) => { deps[n.name] = []; });
  dag.edges.forEach(([src, dst]) => deps[dst] && deps[dst].push(src));
  const lv = (n, seen = new Set()) => {
    if (level[n] !== undefined) return level[n];
    if (seen.has(n)) return 0;
    seen.add(n);
    return (level[n] = deps[n].length ? 1 + Math.max(...deps[n].map((d) => lv(d, seen))) : 0);
  };
  dag.nodes.forEach((n) => lv(n.name));
  const byLevel = {};
  dag.nodes.forEach((n) => (byLevel[level[n.name]] ||= []).push(n));
  const pos = {};
  const ns = "http://www.w3.org/2000/svg";
  const W = 118, Hh = 24, gx = 40, gy = 8;
  let maxRows = 1;
  Object.entries(byLevel).forEach(([l, nodes]) => {
    maxRows = Math.max(maxRows, nodes.length);
    nodes.forEach((n, k) => { pos[n.name] = { x: 8 + l * (W + gx), y: 8 + k * (Hh + gy), n }; });
  });
  svg.setAttribute("height", Math.max(60, 16 + maxRows * (Hh + gy)));
  const colors = { sampler: "#2f6fde", expression: "#d9822b", llm: "#8e44ad" };
  for (const [src, dst] of dag.edges) {
    const a = pos[src], b = pos[dst];
    if (!a || !b) continue;
    const line = document.createElementNS(ns, "line");
    line.setAttribute("x1", a.x + W); line.setAttribute("y1", a.y + Hh / 2);
    line.setAttribute("x2", b.x); line.setAttribute("y2", b.y + Hh / 2);
    line.setAttribute("data-edge", `${src}->${dst}`);
    svg.append(line);
  }
  for (const { x, y, n } of Object.values(pos)) {
    const g = document.createElementNS(ns, "g");
    g.setAttribute("class", "node"); g.setAttribute("data-node", n.name);
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", x); r.setAttribute("y", y); r.setAttribute("width", W); r.setAttribute("height", Hh);
    r.setAttribute("fill", colors[n.source]);
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x + 6); t.setAttribute("y", y + 16); t.textContent = n.name.length > 16 ? n.name.slice(0, 15) + "…" : n.name;
    g.append(r, t);
    svg.append(g);
  }
}

async function saveSpec() {
  const scope = $("#tab-design");
  clearErrors(scope);
  try {
    const res = await api("POST", "/api/spec/save", { path: $("#spec-path").value, spec: S.spec });
    $("#yaml").textContent = res.yaml;
    status(`saved ${res.path}`);
    document.body.dataset.saved = res.path;
    loadFiles();
  } catch (err) {
    const field = err.field === "path" ? "file" : err.field;
    showError(scope, field, err.error, $("#global-error"));
    status("not saved: " + err.error, true);
    document.body.dataset.saved = "";
  }
}

async function openSpec(path) {
  try {
    const res = await api("GET", "/api/spec?path=" + encodeURIComponent(path));
    S.spec = res.spec;
    $("#spec-path").value = res.path;
    renderSpecHeader(); renderColumns(); changed();
    status(`opened ${res.path}`);
  } catch (err) { status("cannot open: " + err.error, true); }
}

// ---- files --------------------------------------------------------------------------------------
let FILES = { specs: [], targets: [], tables: [], models: [] };
async function loadFiles() {
  try { FILES = await api("GET", "/api/files"); } catch (err) { return; }
  const fill = (sel, items, keep) => {
    const el = $(sel), cur = el.value;
    el.replaceChildren(...items.map((f) => h("option", { value: f, selected: f === cur }, f)));
    if (keep && items.includes(cur)) el.value = cur;
  };
  fill("#spec-open-list", FILES.specs, true);
  fill("#table-list", FILES.tables, true);
  fill("#targets-list", FILES.targets, true);
  fill("#refine-source", [...FILES.specs, ...FILES.tables], true);
}

// ---- jobs ---------------------------------------------------------------------------------------
const JOB_HOOKS = {};
let polling = null;
function watchJob(job, hook) { JOB_HOOKS[job.id] = { hook, since: 0 }; pollJobs(); }

async function pollJobs() {
  clearTimeout(polling);
  let jobs;
  try { jobs = await api("GET", "/api/jobs"); } catch (err) { polling = setTimeout(pollJobs, 2000); return; }
  renderJobs(jobs);
  for (const j of jobs) {
    const w = JOB_HOOKS[j.id];
    if (!w) continue;
    const full = await api("GET", `/api/jobs/${j.id}?since=${w.since}`);
    w.since += full.events.length;
    w.hook(full);
    if (!["queued", "running"].includes(full.status)) delete JOB_HOOKS[j.id];
  }
  const active = jobs.some((j) => ["queued", "running"].includes(j.status));
  polling = setTimeout(pollJobs, active ? 400 : 3000);
}

function renderJobs(jobs) {
  const box = $("#job-list");
  if (!jobs.length) return;
  box.replaceChildren(...jobs.map((j) => h("div", { class: "job", "data-job": j.id, "data-status": j.status },
    h("div", {}, h("b", {}, j.kind), " ", h("span", { class: `st ${j.status}` }, j.status),
      ["queued", "running"].includes(j.status)
        ? h("button", { class: "icon cancel", style: "float:right", title: "cancel", onclick: async () => {
            await api("POST", `/api/jobs/${j.id}/cancel`); pollJobs(); } }, "cancel") : null),
    h("div", { class: "bar" }, h("div", { style: `width:${Math.round(j.progress * 100)}%` })),
    h("div", { class: "muted" }, j.error || j.message))));
}

function barHook(barSel, msgSel, then) {
  return (job) => {
    $(barSel).style.width = `${Math.round(job.progress * 100)}%`;
    $(msgSel).textContent = job.status === "failed" ? job.error : job.message;
    $(msgSel).classList.toggle("field-error", job.status === "failed");
    if (then) then(job);
  };
}

// ---- learn from a table -------------------------------------------------------------------------
const L = { table: null, overrides: {}, model: null, schema: null, conditions: [] };
const KINDS = ["numerical", "categorical", "boolean", "datetime", "id", "text", "pii"];

function renderSchema(view) {
  L.table = view.path; L.overrides = {}; L.schema = view.columns;
  const bound = (c, key) => h("input", { size: 8, value: c[key] ?? "", "aria-label": `${key} of ${c.name}`, "data-path": `${c.name}.${key}`,
    oninput: (e) => { const v = typed(e.target.value, true); const o = (L.overrides[c.name] ||= {});
      if (v === undefined || v === c[key]) delete o[key]; else o[key] = v;
      if (!Object.keys(o).length) delete L.overrides[c.name]; } });
  const rows = view.columns.map((c) => {
    const range = c.kind === "numerical" ? h("span", {}, bound(c, "min"), " … ", bound(c, "max"))
      : c.kind === "datetime" ? `${c.min ?? ""} … ${c.max ?? ""}`
      : c.categories ? `${c.categories.length} values: ${c.categories.slice(0, 4).join(", ")}${c.categories.length > 4 ? ", …" : ""}` : "";
    return h("tr", { "data-column": c.name },
      h("td", {}, c.name),
      h("td", {}, h("select", { "aria-label": `kind of ${c.name}`, onchange: (e) => {
        const o = (L.overrides[c.name] ||= {});
        if (e.target.value === c.kind) delete o.kind; else o.kind = e.target.value;
        if (!Object.keys(o).length) delete L.overrides[c.name]; } },
        KINDS.map((k) => h("option", { value: k, selected: k === c.kind }, k)))),
      h("td", {}, c.dtype), h("td", {}, range), h("td", {}, `${(100 * c.missing_share).toFixed(1)} %`),
      h("td", {}, c.pii_type ? h("span", { class: "unmet" }, `PII: ${c.pii_type}`) : ""));
  });
  $("#schema").replaceChildren(h("div", { class: "card" },
    h("h2", {}, `${view.path} `, h("small", {}, `${view.rows.toLocaleString()} rows, ${view.columns.length} columns`)),
    h("div", { class: "table-wrap" }, h("table", { id: "schema-table" },
      h("thead", {}, h("tr", {}, ["column", "kind", "dtype", "range / values", "missing", "PII"].map((x) => h("th", {}, x)))),
      h("tbody", {}, rows))),
    view.notes.length ? h("p", { class: "muted" }, view.notes.slice(0, 3).join(" ")) : null));
  $("#fit-form").classList.remove("hidden");
}

async function upload() {
  const scope = $("#tab-learn");
  clearErrors(scope);
  const f = $("#upload-file").files[0];
  if (!f) { showError(scope, "file", "choose a file first"); return; }
  const form = new FormData();
  form.append("file", f, f.name);
  status(`uploading ${f.name}…`);
  try {
    renderSchema(await api("POST", "/api/tables", form, true));
    status(`uploaded ${f.name}`); loadFiles();
  } catch (err) { $("[data-error-for=file]").textContent = err.error; status("upload refused", true); }
}

async function fit() {
  const scope = $("#tab-learn");
  clearErrors(scope);
  const budget = typed($("#fit-budget").value, true);
  try {
    const job = await api("POST", "/api/jobs", { kind: "fit", params: {
      table: L.table, model: $("#fit-model").value, budget_s: budget ?? null, seed: Number($("#fit-seed").value) || 0,
      overrides: L.overrides } });
    watchJob(job, barHook("#fit-bar", "#fit-msg", (j) => {
      if (j.status === "done") { L.model = j.result.model; L.schema = j.result.schema.columns;
        $("#sample-model").textContent = `${j.result.name} model ${j.result.model} (fitted in ${j.result.seconds} s)`;
        $("#sample-form").classList.remove("hidden"); renderConditions(); }
    }));
  } catch (err) { showError(scope, err.field, err.error, $("#fit-msg")); }
}

function renderConditions() {
  $("#conditions").replaceChildren(...L.conditions.map((c, j) => h("div", { class: "params cond" },
    h("select", { "aria-label": "condition column", onchange: (e) => { c.column = e.target.value; } },
      L.schema.filter((s) => ["numerical", "categorical", "boolean"].includes(s.kind))
        .map((s) => h("option", { value: s.name, selected: s.name === c.column }, s.name))),
    h("span", {}, "="),
    h("input", { "aria-label": "condition value", value: c.value, placeholder: "value or LOW..HIGH", oninput: (e) => { c.value = e.target.value; } }),
    h("button", { class: "icon", onclick: () => { L.conditions.splice(j, 1); renderConditions(); } }, "−"))));
}

async function sample() {
  const scope = $("#tab-learn");
  clearErrors(scope);
  try {
    const job = await api("POST", "/api/jobs", { kind: "sample", params: {
      model: L.model, table: L.table, rows: typed($("#sample-rows").value, true), seed: typed($("#sample-seed").value, true),
      conditions: L.conditions } });
    $("#sample-result").replaceChildren();
    watchJob(job, barHook("#sample-bar", "#sample-msg", (j) => {
      if (j.status === "done") $("#sample-result").replaceChildren(runLinks(j.result));
    }));
  } catch (err) { showError(scope, err.field, err.error, $("#sample-msg")); }
}

function runLinks(run) {
  return h("div", { class: "toolbar run-links" }, h("b", {}, run.id), `${run.rows.toLocaleString()} rows`,
    h("a", { href: withToken(`/api/runs/${run.id}/download?format=csv`), download: `${run.id}.csv`, class: "dl-csv" }, "Download CSV"),
    h("a", { href: withToken(`/api/runs/${run.id}/download?format=parquet`), download: `${run.id}.parquet`, class: "dl-parquet" }, "Download Parquet"),
    h("a", { href: "#", onclick: (e) => { e.preventDefault(); showTab("runs"); openRun(run.id); } }, "Open report"));
}

// ---- targets and refine -------------------------------------------------------------------------
const T = { shares: [], ranges: [], metrics: [], history: [] };

function rowEditor(boxSel, list, fields, redraw) {
  $(boxSel).replaceChildren(...list.map((r, j) => h("div", { class: "params" },
    fields.map(([key, label, opts]) => opts
      ? h("select", { "aria-label": label, "data-path": `${boxSel.slice(3)}[${j}].${key}`, onchange: (e) => { r[key] = e.target.value; } },
          opts.map((o) => h("option", { value: o, selected: o === r[key] }, o)))
      : h("input", { "aria-label": label, placeholder: label, value: r[key] ?? "", "data-path": `${boxSel.slice(3)}[${j}].${key}`,
          oninput: (e) => { r[key] = e.target.value; } })),
    h("button", { class: "icon", onclick: () => { list.splice(j, 1); redraw(); } }, "−"))));
}
function drawTargets() {
  rowEditor("#t-shares", T.shares, [["column", "column"], ["value", "value"], ["share", "share"]], drawTargets);
  rowEditor("#t-ranges", T.ranges, [["column", "column"], ["min", "min"], ["max", "max"]], drawTargets);
  rowEditor("#t-metrics", T.metrics, [["metric", "metric", Object.keys(S.info.metrics)], ["min", "min"], ["max", "max"]], drawTargets);
}

function targetsData() {
  const out = {};
  const num = (v) => typed(v ?? "", true);
  if (T.shares.length) {
    const shares = {};
    for (const r of T.shares) { (shares[r.column] ||= []).push([typedKey(r.value), num(r.share)]); }
    out.shares = Object.fromEntries(Object.entries(shares).map(([k, pairs]) => [k, fromPairs(pairs)]));
  }
  const parity = $("#t-parity").value.split(",").map((x) => x.trim()).filter(Boolean);
  if (parity.length) out.parity = parity;
  if (T.ranges.length) out.ranges = Object.fromEntries(T.ranges.map((r) => [r.column,
    Object.fromEntries([["min", num(r.min)], ["max", num(r.max)]].filter(([, v]) => v !== undefined))]));
  if (T.metrics.length) out.metrics = Object.fromEntries(T.metrics.map((r) => [r.metric,
    Object.fromEntries([["min", num(r.min)], ["max", num(r.max)]].filter(([, v]) => v !== undefined))]));
  const tol = num($("#t-tolerance").value);
  if (tol !== undefined) out.tolerance = tol;
  out.budget = { iterations: num($("#t-iterations").value) ?? 3 };
  return out;
}
function typedKey(v) { const t = String(v ?? "").trim(); return /^-?\d+$/.test(t) ? Number(t) : t; }

function loadTargetsForm(t) {
  const shares = t.shares || {};
  T.shares = Object.entries(shares).flatMap(([col, m]) => pairsOf(m).map(([v, s]) => ({ column: col, value: String(v), share: String(s) })));
  T.ranges = Object.entries(t.ranges || {}).map(([col, r]) => ({ column: col, min: r.min ?? "", max: r.max ?? "" }));
  T.metrics = Object.entries(t.metrics || {}).map(([m, r]) => ({ metric: m, min: r.min ?? "", max: r.max ?? "" }));
  $("#t-parity").value = (t.parity || []).join(", ");
  $("#t-tolerance").value = t.tolerance ?? 0.01;
  $("#t-iterations").value = (t.budget && t.budget.iterations) || 3;
  drawTargets();
}

async function saveTargets() {
  const scope = $("#tab-refine");
  clearErrors(scope);
  try {
    const res = await api("POST", "/api/targets/save", { path: $("#targets-path").value, targets: targetsData() });
    status(`saved ${res.path}`); loadFiles();
    return res.path;
  } catch (err) {
    $("#targets-error").textContent = err.error;
    status("targets not saved", true);
    return null;
  }
}

async function runRefine() {
  const path = await saveTargets();
  if (!path) return;
  T.history = [];
  $("#iterations").replaceChildren(); $("#compare").replaceChildren();
  try {
    const job = await api("POST", "/api/jobs", { kind: "refine", params: { source: $("#refine-source").value, targets: path } });
    watchJob(job, barHook("#refine-bar", "#refine-msg", (j) => {
      for (const rec of j.events) addIteration(rec);
      if (j.status === "done") $("#refine-msg").replaceChildren(
        `stopped: ${j.result.stop_reason}; kept iteration ${j.result.best_iteration} `, runLinks(j.result));
    }));
  } catch (err) { $("#targets-error").textContent = err.error; }
}

function fmtv(v) { return v === null || v === undefined ? "n/a" : typeof v === "number" ? (+v.toPrecision(4)).toString() : String(v); }

function addIteration(rec) {
  T.history.push(rec);
  $("#iterations").append(h("div", { class: "card iter", "data-iteration": rec.iteration },
    h("h2", {}, `Iteration ${rec.iteration} `, h("small", {}, `${rec.rows} rows, ${rec.n_unmet} missed, ${rec.seconds.total} s`)),
    h("table", {}, h("thead", {}, h("tr", {}, ["metric", "target", "value", "met"].map((x) => h("th", {}, x)))),
      h("tbody", {}, rec.checks.map((c) => h("tr", {}, h("td", {}, c.metric), h("td", {}, String(c.target)), h("td", {}, fmtv(c.value)),
        h("td", { class: c.met ? "met" : "unmet" }, c.met ? "yes" : "no"))))),
    rec.actions.length ? h("ul", {}, rec.actions.map((a) => h("li", {}, a.summary))) : h("p", { class: "muted" }, "no actions")));
  const metrics = [...new Set(T.history.flatMap((r) => r.checks.map((c) => c.metric)))];
  $("#compare").replaceChildren(h("table", { id: "compare-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "metric"), T.history.map((r) => h("th", {}, `it ${r.iteration}`)))),
    h("tbody", {}, metrics.map((m) => h("tr", {}, h("td", {}, m), T.history.map((r) => {
      const c = r.checks.find((x) => x.metric === m);
      return h("td", { class: c ? (c.met ? "met" : "unmet") : "" }, c ? fmtv(c.value) : "");
    }))))));
}

// ---- runs -----------------------------------------------------------------------------------------
async function loadRuns() {
  let runs;
  try { runs = await api("GET", "/api/runs"); } catch (err) { return; }
  $("#runs").replaceChildren(h("table", { id: "runs-table" },
    h("thead", {}, h("tr", {}, ["run", "kind", "source", "seed", "rows", "figures", "files"].map((x) => h("th", {}, x)))),
    h("tbody", {}, runs.map((r) => h("tr", { class: "clickable", "data-run": r.id, onclick: () => openRun(r.id) },
      h("td", {}, r.id), h("td", {}, r.kind), h("td", {}, r.source), h("td", {}, r.seed ?? ""), h("td", {}, r.rows),
      h("td", {}, Object.entries(r.figures || {}).slice(0, 3).map(([k, v]) => `${k} ${fmtv(v)}`).join(", ")),
      h("td", {}, (r.files || []).join(", ")))))));
  if (!runs.length) $("#runs").append(h("p", { class: "muted", style: "padding:8px" }, "No runs yet: sample, generate or refine first."));
}

async function openRun(id) {
  const r = await api("GET", `/api/runs/${id}`);
  $("#run-detail").replaceChildren(h("div", { class: "card" },
    h("h2", {}, r.id), runLinks(r),
    h("div", { class: "kv" }, Object.entries(r.figures || {}).flatMap(([k, v]) => [h("span", { class: "muted" }, k), h("span", {}, fmtv(v))])),
    h("iframe", { class: "report", src: withToken(`/runs/${id}/report`), title: "run report" })));
}

// ---- start ---------------------------------------------------------------------------------------
async function start() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { sessionStorage.setItem("studio-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
  try { S.info = await api("GET", "/api/info"); } catch (err) { return; }
  $$("#tabs button").forEach((b) => { b.onclick = () => showTab(b.dataset.tab); });
  S.spec = S.spec || NEW_SPEC();
  $("#spec-name").oninput = (e) => { S.spec.name = e.target.value; changed(); };
  $("#spec-rows").oninput = (e) => { S.spec.rows = typed(e.target.value, true); changed(); };
  $("#spec-seed").oninput = (e) => { S.spec.seed = typed(e.target.value, true); changed(); };
  $("#add-column").onclick = () => {
    let n = S.spec.columns.length + 1;
    while (S.spec.columns.some((c) => c.name === `column_${n}`)) n++;
    S.spec.columns.push({ name: `column_${n}`, sampler: { categorical: DEFAULTS.categorical() } });
    restructured();
    const names = $$("#columns input.name");
    names[names.length - 1].focus(); names[names.length - 1].select();
  };
  $("#spec-save").onclick = saveSpec;
  $("#spec-open").onclick = () => $("#spec-open-list").value && openSpec($("#spec-open-list").value);
  $("#spec-new").onclick = () => { S.spec = NEW_SPEC(); renderSpecHeader(); renderColumns(); changed(); };
  $("#preview-llm").onclick = () => { S.editAt = performance.now(); requestPreview(true); };
  $("#spec-generate").onclick = async () => {
    try {
      const job = await api("POST", "/api/jobs", { kind: "generate", params: { spec: $("#spec-path").value } });
      watchJob(job, (j) => { if (j.status === "done") status(`generated ${j.result.rows} rows: run ${j.result.id}`); });
    } catch (err) { status(err.error, true); }
  };
  $("#upload").onclick = upload;
  $("#table-open").onclick = async () => {
    try { renderSchema(await api("GET", "/api/tables/schema?path=" + encodeURIComponent($("#table-list").value))); }
    catch (err) { status(err.error, true); }
  };
  $("#fit-model").replaceChildren(...S.info.models.map((m) => h("option", { value: m }, m)));
  $("#fit").onclick = fit;
  $("#add-condition").onclick = () => {
    const first = (L.schema || []).find((s) => ["numerical", "categorical", "boolean"].includes(s.kind));
    L.conditions.push({ column: first ? first.name : "", value: "" }); renderConditions(); };
  $("#sample").onclick = sample;
  $("#t-add-share").onclick = () => { T.shares.push({ column: "", value: "", share: "" }); drawTargets(); };
  $("#t-add-range").onclick = () => { T.ranges.push({ column: "", min: "", max: "" }); drawTargets(); };
  $("#t-add-metric").onclick = () => { T.metrics.push({ metric: "quality_score", min: "", max: "" }); drawTargets(); };
  $("#targets-save").onclick = saveTargets;
  $("#targets-open").onclick = async () => {
    try { const res = await api("GET", "/api/targets?path=" + encodeURIComponent($("#targets-list").value));
      $("#targets-path").value = res.path; loadTargetsForm(res.targets); } catch (err) { status(err.error, true); }
  };
  $("#refine-run").onclick = runRefine;
  renderSpecHeader(); renderColumns(); drawTargets();
  await loadFiles();
  pollJobs();
  document.body.dataset.ready = "1";
  S.readyAt = performance.now();
  if (S.spec.columns.length) changed();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault(); sessionStorage.setItem("studio-token", $("#token-input").value.trim());
    $("#token-dialog").classList.add("hidden"); start(); });
  start();
});
